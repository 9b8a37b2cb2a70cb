"""Sparsity sweep, best-N and best-layer statistics (SPEC §5, paper Fig. 5, App. H, I, L).

All read a fitted :class:`~superact_lens.detection.SuperActivatorDetector`
(its cal F1 grid ``cal_f1_grid_`` ``[C, L, N]``); :func:`f1_vs_n` can also
evaluate the cal thresholds of every N on another split (e.g. test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from superact_lens.detection import SuperActivatorDetector, detection_metrics
from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores

__all__ = ["f1_vs_n", "best_n_histogram", "best_layer_histogram"]


def _check(detector: Any) -> SuperActivatorDetector:
    if not isinstance(detector, SuperActivatorDetector):
        raise InputTypeError(
            f"detector must be a SuperActivatorDetector, got {type(detector).__name__}"
        )
    detector._check_fitted()
    return detector


def f1_vs_n(
    detector: SuperActivatorDetector,
    scores: TokenScores | None = None,
    labels: Bool[Tensor, "n C"] | None = None,
) -> dict[str, Any]:
    """F1 as a function of N at each concept's chosen layer (and column).

    Without ``scores``: the cal F1 grid. With ``scores``/``labels`` (e.g.
    test): F1 of ``max > tau_c(N)`` using the cal thresholds of every N.
    Returns ``{"n_grid", "f1" [C, N], "weighted" [N], "support" [C]}`` where
    ``weighted`` is the support-weighted mean over concepts.
    """
    det = _check(detector)
    cs = torch.arange(len(det.threshold_))
    li = det.layer_index_
    if scores is None:
        f1 = det.cal_f1_grid_[cs, li].double().numpy()  # [C, N]
        support = np.ones(len(cs))
        if labels is not None:
            support = torch.as_tensor(labels).sum(0).double().numpy()
    else:
        if labels is None:
            raise InputError("labels is required when scores is given")
        maxima = det._selected(scores)  # [n, C] at chosen layer/column
        taus = det.cal_threshold_grid_[cs, li]  # [C, N]
        f1 = np.zeros(tuple(taus.shape))
        for j in range(taus.shape[1]):
            m = detection_metrics(maxima > taus[:, j], labels)
            f1[:, j] = m["f1"]
        support = torch.as_tensor(labels).sum(0).double().numpy()
    w = support if support.sum() > 0 else np.ones_like(support)
    return {
        "n_grid": list(det.n_grid),
        "f1": f1,
        "weighted": (f1 * w[:, None]).sum(0) / w.sum(),
        "support": support,
    }


def best_n_histogram(detector: SuperActivatorDetector) -> dict[str, Any]:
    """How often each N is best: overall (chosen N per concept) and per layer
    (best cal N at each layer; ties to smaller N). Returns ``{"n_grid",
    "overall" [N], "per_layer" [L, N], "layers"}`` (counts of concepts)."""
    det = _check(detector)
    n_n = len(det.n_grid)
    grid = torch.nan_to_num(det.cal_f1_grid_, nan=-1.0)  # [C, L, N]
    per_layer = np.zeros((grid.shape[1], n_n), dtype=int)
    best = grid.argmax(dim=2)  # [C, L]
    for layer in range(grid.shape[1]):
        per_layer[layer] = np.bincount(best[:, layer].numpy(), minlength=n_n)
    overall = np.zeros(n_n, dtype=int)
    for c, n in enumerate(det.n_.tolist()):
        if not np.isnan(n) and not bool(det.fallback_[c]):
            overall[det.n_grid.index(n)] += 1
    return {
        "n_grid": list(det.n_grid),
        "overall": overall,
        "per_layer": per_layer,
        "layers": list(det.layers_),
    }


def best_layer_histogram(detector: Any) -> dict[str, Any]:
    """How many concepts chose each layer (any fitted detector):
    ``{"layers", "counts" [L]}``."""
    detector._check_fitted()
    layers = list(detector.layers_)
    counts = np.bincount(detector.layer_index_.numpy(), minlength=len(layers))
    return {"layers": layers, "counts": counts}
