"""How good an attribution map is: accuracy against the token mask, and faithfulness.

* Accuracy (per sample): the AUROC of the attribution scores against the
  in-concept token mask (ties count one half, Mann-Whitney), and the best F1
  over every threshold on the scores. Undefined (NaN) when the mask is all in or
  all out of the concept.
* Faithfulness (RISE style): tokens are inserted into the baseline input, or
  deleted from the text, in decreasing attribution order (ties by position),
  and ``f`` is tracked: after every token (``n + 1`` points at fractions
  ``0, 1/n, ..., 1``) or, to bound the cost on long texts, at a fixed number
  of evenly spaced fractions. The areas (trapezoid rule over the fraction)
  summarise them: higher insertion and lower deletion are better.
* Aggregation: means over samples with percentile bootstrap intervals
  (resampling samples; NaN samples are left out).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.errors import InputError

__all__ = [
    "auroc",
    "best_f1",
    "bootstrap_mean",
    "curve_area",
    "curve_masks",
    "curve_steps",
    "insertion_deletion",
    "ranking_masks",
]


def _check(scores: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    scores, mask = torch.as_tensor(scores).double().flatten(), torch.as_tensor(mask).bool()
    if scores.shape != mask.flatten().shape:
        raise InputError(f"scores and mask differ in length ({len(scores)} vs {mask.numel()})")
    return scores, mask.flatten()


def auroc(scores: Float[Tensor, " n"], mask: Bool[Tensor, " n"]) -> float:
    """P(score of an in-concept token > score of an out-of-concept one), ties 1/2."""
    scores, mask = _check(scores, mask)
    n_pos, n_neg = int(mask.sum()), int((~mask).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    pos, neg = scores[mask], scores[~mask]
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (n_pos * n_neg))


def best_f1(scores: Float[Tensor, " n"], mask: Bool[Tensor, " n"]) -> float:
    """Best token F1 of ``scores >= t`` against ``mask`` over every threshold ``t``."""
    scores, mask = _check(scores, mask)
    n_pos = int(mask.sum())
    if n_pos == 0 or n_pos == len(mask):
        return float("nan")
    thresholds = torch.unique(scores)
    predicted = scores[None, :] >= thresholds[:, None]
    tp = (predicted & mask[None, :]).sum(1).double()
    f1 = 2 * tp / (predicted.sum(1).double() + n_pos)
    return float(f1.max())


def ranking_masks(scores: Float[Tensor, " n"]) -> Float[Tensor, "n_plus_1 n"]:
    """Row ``k``: keep-mask of the ``k`` top-scored tokens (ties by position)."""
    scores = torch.as_tensor(scores).flatten()
    n = len(scores)
    order = torch.sort(-scores.double(), stable=True).indices
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return (rank[None, :] < torch.arange(n + 1)[:, None]).float()


def curve_area(values: Float[Tensor, " m"], fractions: Any = None) -> float:
    """Trapezoid area of a curve at ``fractions`` of ``[0, 1]`` (evenly spaced when None)."""
    values = torch.as_tensor(values).double().flatten()
    if len(values) < 2:
        raise InputError("curve_area: need at least two points")
    if fractions is None:
        return float(torch.trapezoid(values, dx=1.0 / (len(values) - 1)))
    x = torch.as_tensor(fractions).double().flatten()
    if x.shape != values.shape:
        raise InputError(f"fractions: expected {len(values)} points, got {len(x)}")
    return float(torch.trapezoid(values, x))


def curve_steps(n_tokens: int, n_points: int | None = None) -> list[int]:
    """Token counts at which a curve is evaluated: every count ``0..n`` when ``n_points``
    is None, else ``n_points`` evenly spaced fractions rounded to counts (duplicates dropped)."""
    if n_points is None or n_points > n_tokens:
        return list(range(n_tokens + 1))
    if n_points < 2:
        raise InputError(f"n_points: expected at least 2, got {n_points}")
    return sorted({round(j * n_tokens / (n_points - 1)) for j in range(n_points)})


def curve_masks(
    scores: Float[Tensor, " n"], n_points: int | None = None
) -> tuple[list[int], Float[Tensor, "2m n"]]:
    """The token counts of the curves and their keep-masks: the ``m`` insertion masks
    (top-k tokens kept) followed by the ``m`` deletion masks (top-k tokens removed)."""
    steps = curve_steps(len(scores), n_points)
    inserted = ranking_masks(scores)[steps]
    return steps, torch.cat([inserted, 1 - inserted])


def insertion_deletion(
    problem: Any, scores: Float[Tensor, " n"], n_points: int | None = None
) -> dict[str, Any]:
    """Insertion and deletion curves of ``problem.f_keep`` in the order of ``scores``.

    ``problem`` is anything with ``f_keep(keep [B, n]) -> [B]`` (a
    :class:`~superact_lens.localization.objective.TextObjective`); both curves
    are evaluated in one batched call, after every token (``n_points=None``) or
    at ``n_points`` evenly spaced fractions (:func:`curve_steps`). Returns the
    token fractions, the curves and their areas.
    """
    steps, masks = curve_masks(scores, n_points)
    values = problem.f_keep(masks).double().cpu()
    insertion, deletion = values[: len(steps)], values[len(steps) :]
    fractions = torch.tensor(steps, dtype=torch.float64) / max(len(scores), 1)
    return {
        "fractions": fractions.tolist(),
        "insertion_curve": insertion.tolist(),
        "deletion_curve": deletion.tolist(),
        "insertion": curve_area(insertion, fractions),
        "deletion": curve_area(deletion, fractions),
    }


def bootstrap_mean(
    values: Any, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float | int]:
    """Mean of the finite ``values`` and its percentile bootstrap interval."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    return {
        "mean": float(x.mean()),
        "lo": float(np.quantile(means, alpha)),
        "hi": float(np.quantile(means, 1 - alpha)),
        "n": len(x),
    }
