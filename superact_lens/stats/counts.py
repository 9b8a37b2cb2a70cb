"""Threshold-grid counts: TP and predicted positives at fixed thresholds, summed over shards.

Once thresholds are fixed (SuperActivator: quantiles of the merged in-concept
store; a baseline: a grid of candidate thresholds), every count is a sum over
samples, so shards add up exactly (int64) and the F1 of every grid cell is the
one-pass F1. The kernel is the pipeline's own
:func:`~superact_lens.detection.calibration.count_above_native`.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.detection.calibration import count_above_native, f1_from_counts
from superact_lens.errors import InputError
from superact_lens.stats.state import check_same

__all__ = ["GridCounts"]


class GridCounts:
    """Counts of ``aggregate > tau`` for every (concept, candidate column, layer, threshold).

    Args:
        tau: ``[C, K', L, N]`` thresholds (NaN: never exceeded), as
            :func:`~superact_lens.detection.superact.superact_grid` builds them.
        match_columns: row ``(c, k')`` reads column ``k'`` (else column ``c``).

    State: ``tp``, ``pp`` ``[C, K', L, N]``, ``n_pos`` ``[C]`` and ``n`` (int64).
    """

    def __init__(self, tau: Float[Tensor, "C K2 L N"], match_columns: bool = False) -> None:
        if not isinstance(tau, Tensor) or tau.ndim != 4:
            raise InputError(
                f"tau: expected a [C, K', L, N] tensor, got {getattr(tau, 'shape', tau)}"
            )
        self.tau, self.match_columns = tau.detach().cpu(), bool(match_columns)
        n_c = tau.shape[0]
        self.tp = torch.zeros(tau.shape, dtype=torch.int64)
        self.pp = torch.zeros(tau.shape, dtype=torch.int64)
        self.n_pos = torch.zeros(n_c, dtype=torch.int64)
        self.n = 0

    def update(self, aggregates: Float[Tensor, "L b K"], labels: Bool[Tensor, "b C"]) -> None:
        """Add a batch of samples: their aggregates (e.g. per-sample max) and labels."""
        labels = torch.as_tensor(labels).bool()
        n_c, _, n_layers, _ = self.tau.shape
        if aggregates.ndim != 3 or aggregates.shape[0] != n_layers:
            raise InputError(
                f"aggregates: expected [{n_layers}, b, K], got {tuple(aggregates.shape)}"
            )
        if labels.shape != (aggregates.shape[1], n_c):
            raise InputError(
                f"labels: expected [{aggregates.shape[1]}, {n_c}], got {tuple(labels.shape)}"
            )
        if aggregates.shape[1] == 0:
            return
        tp, pp = count_above_native(aggregates, self.tau, labels, self.match_columns)
        self.tp += tp.round().long()
        self.pp += pp.round().long()
        self.n_pos += labels.sum(0)
        self.n += int(aggregates.shape[1])

    def f1(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(precision, recall, f1)``, each ``[C, K', L, N]`` float64."""
        return f1_from_counts(self.tp, self.pp, self.n_pos.view(-1, 1, 1, 1))

    def merge(self, other: GridCounts) -> GridCounts:
        check_same("tau", self.tau, other.tau)
        check_same("match_columns", self.match_columns, other.match_columns)
        self.tp += other.tp
        self.pp += other.pp
        self.n_pos += other.n_pos
        self.n += other.n
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "tau": self.tau,
            "match_columns": self.match_columns,
            "tp": self.tp,
            "pp": self.pp,
            "n_pos": self.n_pos,
            "n": self.n,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GridCounts:
        counts = cls(state["tau"], state["match_columns"])
        counts.tp, counts.pp = state["tp"].clone(), state["pp"].clone()
        counts.n_pos, counts.n = state["n_pos"].clone(), int(state["n"])
        return counts
