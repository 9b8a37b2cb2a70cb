"""Calibration and detection (SPEC §4): SuperActivator detectors, baselines, metrics.

Every detector is fitted on cal scores (:class:`~superact_lens.scores.TokenScores`)
and predicts concept ``c`` in a sample iff its aggregate at ``layer_[c]`` (from
score column ``column_[c]``) exceeds ``threshold_[c]``.
"""

from .aggregators import AGGREGATORS, AggregatorDetector, aggregate
from .base import BaseDetector, load_detector
from .calibration import (
    DEFAULT_N_GRID,
    best_f1_threshold,
    count_above,
    f1_from_counts,
    quantile_levels,
    select_best,
    superact_thresholds,
)
from .metrics import bootstrap_weighted_f1, detection_metrics, detection_report, weighted_f1
from .segments import (
    padded_segments,
    segment_any,
    segment_ids,
    segment_last,
    segment_max,
    segment_mean,
    segment_random,
)
from .superact import FixedNDetector, SuperActivatorDetector, in_concept_mask, superact_grid

__all__ = [
    "AGGREGATORS",
    "DEFAULT_N_GRID",
    "AggregatorDetector",
    "BaseDetector",
    "FixedNDetector",
    "SuperActivatorDetector",
    "aggregate",
    "best_f1_threshold",
    "bootstrap_weighted_f1",
    "count_above",
    "detection_metrics",
    "detection_report",
    "f1_from_counts",
    "in_concept_mask",
    "load_detector",
    "padded_segments",
    "quantile_levels",
    "segment_any",
    "segment_ids",
    "segment_last",
    "segment_max",
    "segment_mean",
    "segment_random",
    "select_best",
    "superact_grid",
    "superact_thresholds",
    "weighted_f1",
]
