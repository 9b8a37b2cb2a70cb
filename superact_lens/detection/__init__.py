"""Calibration and detection (SPEC §4): SuperActivator detectors, baselines, metrics.

Every detector is fitted on cal scores (:class:`~superact_lens.scores.TokenScores`)
and predicts concept ``c`` in a sample iff its aggregate at ``layer_[c]`` (from
score column ``column_[c]``) is strictly greater than ``threshold_[c]``.

Conventions shared by all detectors:

- Choice on cal by F1; ties go to the smaller N, then the earlier layer, then
  the lower column index (and, for best-F1 thresholds, the higher threshold).
- ``D_in(c)``: tokens in ``c``'s mask in positive samples; masks on negative
  samples are ignored. ``D_out(c)``: all tokens of negative samples.
- Quantiles: ``torch.quantile`` linear interpolation (reproduced bit for bit,
  without a full sort, by :func:`~.calibration.linear_quantiles`).
- Samples with no content token aggregate to ``-inf``: always predicted absent.
- A concept with no in-concept cal token (no positive, or positives without
  spans only) cannot define ``tau``: the SuperActivator detector falls back to
  the MaxTok best-F1 threshold for it (``fallback_``, ``n_`` NaN, a warning).
- ``match_columns=True``: score columns are clusters / SAE units; each
  ground-truth concept picks the column (and layer, N) with the best cal F1.

The prompting baseline (:class:`PromptDetector`, generative models only) reads
no scores: it asks the model per sample and concept and needs no calibration.

A calibrated detector travels as a :class:`ConceptDetector` folder (bank,
normaliser, detector, model identity); :func:`detect` applies it to new text.
"""

from .aggregators import AGGREGATORS, AggregatorDetector, aggregate
from .apply import detect, iter_detect
from .artefact import ConceptDetector, ModelIdentity
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
from .generative import load_generative
from .metrics import bootstrap_weighted_f1, detection_metrics, detection_report, weighted_f1
from .prompting import DEFAULT_QUESTION, PromptDetector, describe_concept, prompt_report
from .segments import (
    padded_segments,
    segment_any,
    segment_ids,
    segment_last,
    segment_max,
    segment_mean,
    segment_random,
)
from .suite import METHODS, evaluate_detectors, fit_detectors
from .superact import FixedNDetector, SuperActivatorDetector, in_concept_mask, superact_grid

__all__ = [
    "AGGREGATORS",
    "DEFAULT_N_GRID",
    "DEFAULT_QUESTION",
    "METHODS",
    "AggregatorDetector",
    "BaseDetector",
    "ConceptDetector",
    "FixedNDetector",
    "ModelIdentity",
    "PromptDetector",
    "SuperActivatorDetector",
    "aggregate",
    "best_f1_threshold",
    "bootstrap_weighted_f1",
    "count_above",
    "describe_concept",
    "detect",
    "detection_metrics",
    "detection_report",
    "evaluate_detectors",
    "fit_detectors",
    "f1_from_counts",
    "in_concept_mask",
    "iter_detect",
    "load_detector",
    "load_generative",
    "padded_segments",
    "prompt_report",
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
