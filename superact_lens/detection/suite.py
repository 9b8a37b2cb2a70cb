"""All detection methods of results.json in two calls: fit on cal, report on test."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jaxtyping import Bool
from torch import Tensor

from superact_lens.errors import InputError
from superact_lens.scores import TokenScores

from .aggregators import AggregatorDetector
from .base import BaseDetector
from .calibration import DEFAULT_N_GRID
from .metrics import detection_report
from .superact import FixedNDetector, SuperActivatorDetector

if TYPE_CHECKING:
    from .base import Scores

__all__ = ["METHODS", "fit_detectors", "evaluate_detectors"]

#: Method names as in results.json (INTERFACES §3).
METHODS = ("superact", "superact_fixed", "cls", "mean", "last", "random", "max")


def fit_detectors(
    cal: Scores,
    labels: Bool[Tensor, "n C"],
    token_masks: Bool[Tensor, "T C"] | Sequence[Tensor] | None,
    methods: Sequence[str] = METHODS,
    n_grid: Sequence[float] = DEFAULT_N_GRID,
    fixed_n: float = 5.0,
    seed: int = 0,
    match_columns: bool = False,
) -> dict[str, BaseDetector]:
    """Fit every requested method on cal (TokenScores, or a SplitSummary with
    ``token_masks=None``). ``cls`` is skipped with a warning when ``cal.cls`` is None."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"methods must be among {METHODS}, got unknown {unknown}")
    out: dict[str, BaseDetector] = {}
    for m in methods:
        if m == "superact":
            out[m] = SuperActivatorDetector(n_grid, match_columns).fit(cal, labels, token_masks)
        elif m == "superact_fixed":
            out[m] = FixedNDetector(fixed_n, match_columns).fit(cal, labels)
        elif m == "cls" and cal.cls is None:
            warnings.warn("cal.cls is None: skipping the 'cls' method", stacklevel=2)
        else:
            out[m] = AggregatorDetector(m, seed=seed, match_columns=match_columns).fit(cal, labels)
    return out


def evaluate_detectors(
    detectors: dict[str, BaseDetector],
    test: TokenScores,
    labels: Bool[Tensor, "n C"],
    concept_names: list[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``{method: {"weighted_f1", "ci95", "per_concept"}}`` on test (results.json shape)."""
    return {
        name: detection_report(det, test, labels, concept_names, n_resamples, seed)
        for name, det in detectors.items()
    }
