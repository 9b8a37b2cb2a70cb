"""Aggregator baselines (SPEC §4): CLS, MeanTok, LastTok, RandTok, MaxTok.

Each reduces a sample to one score per (layer, column) and predicts the
concept iff that score exceeds ``theta``. Layer and ``theta`` are tuned per
concept on cal exactly as for the SuperActivator detector: every cut between
distinct cal sample aggregates is a candidate threshold and the one with the
best cal F1 wins (ties: higher threshold, then earlier layer, then lower
column index).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Bool
from torch import Tensor

from superact_lens.errors import InputError

from .base import BaseDetector, is_summary
from .segments import segment_last, segment_max, segment_mean, segment_random

if TYPE_CHECKING:
    from .base import Scores

__all__ = ["AggregatorDetector", "AGGREGATORS", "aggregate"]

AGGREGATORS = ("cls", "mean", "last", "random", "max")


def aggregate(scores: Scores, method: str, seed: int = 0) -> Tensor:
    """Sample aggregates ``[layers, n_samples, columns]`` by ``method``.

    ``cls`` reads ``scores.cls``; token methods give ``-inf`` for samples
    without content tokens. ``random`` picks one token per sample, the same at
    every layer and column, deterministically from ``seed``. A
    :class:`~superact_lens.stats.summary.SplitSummary` returns the aggregates it
    kept (the same values).
    """
    if is_summary(scores):
        if method not in AGGREGATORS:
            raise InputError(f"method must be one of {AGGREGATORS}, got {method!r}")
        return scores.aggregate(method, seed)  # type: ignore[attr-defined]
    if method == "cls":
        if scores.cls is None:
            raise InputError("method 'cls' needs scores.cls (sample-embedding scores), got None")
        return scores.cls
    if method == "mean":
        return segment_mean(scores.tokens, scores.offsets, dim=1)
    if method == "last":
        return segment_last(scores.tokens, scores.offsets, dim=1)
    if method == "random":
        return segment_random(scores.tokens, scores.offsets, dim=1, seed=seed)
    if method == "max":
        return segment_max(scores.tokens, scores.offsets, dim=1)
    raise InputError(f"method must be one of {AGGREGATORS}, got {method!r}")


class AggregatorDetector(BaseDetector):
    """Threshold on a per-sample aggregate, layer and threshold tuned on cal.

    Fitted state beyond :class:`BaseDetector`: ``cal_f1_layers_`` ``[C, L]``
    (best cal F1 per layer at the chosen column) and ``cal_threshold_layers_``
    ``[C, L]`` (the threshold achieving it); ``n_`` is NaN.
    """

    _params = ("method", "seed", "match_columns")
    _tensor_attrs = ("cal_f1_layers_", "cal_threshold_layers_")

    def __init__(self, method: str = "max", seed: int = 0, match_columns: bool = False):
        if method not in AGGREGATORS:
            raise InputError(f"method must be one of {AGGREGATORS}, got {method!r}")
        self.method = method  # type: ignore[misc]
        self.seed = int(seed)
        self.match_columns = bool(match_columns)

    def _aggregate(self, scores: Scores) -> Tensor:
        return aggregate(scores, self.method, self.seed)

    def fit(self, cal: Scores, labels: Bool[Tensor, "n C"]) -> AggregatorDetector:
        labels = self._check_fit_inputs(cal, labels)
        n_c = labels.shape[1]
        agg = self._aggregate(cal)  # [L, n, K]
        thr, f1 = self._rowwise_best(agg.permute(2, 0, 1), labels)  # [C, K', L]
        self._store_best_per_layer(cal, thr, f1, torch.full((n_c,), float("nan")))
        return self

    def layer_thresholds(self) -> Tensor:
        """Best-F1 cal threshold at every layer (chosen column), ``[C, L]``."""
        self._check_fitted()
        return self.cal_threshold_layers_
