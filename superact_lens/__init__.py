"""superact_lens: streaming concept lenses and SuperActivator concept detection.

Data flows one way: model + dataset -> residual stream (``ConceptLens`` and its
adapters) -> concept scores (sinks, ``ConceptBank``) -> calibrated detectors ->
analyses and report (``superact run``). See docs/ARCHITECTURE.md.
"""

from superact_lens.concepts import ConceptBank, fit_concepts
from superact_lens.data import TextDataset, load_dataset, make_synthetic_dataset, token_masks
from superact_lens.detection import (
    AggregatorDetector,
    ConceptDetector,
    FixedNDetector,
    SuperActivatorDetector,
    bootstrap_weighted_f1,
    detection_metrics,
)
from superact_lens.errors import InputError, InputFileNotFoundError, InputTypeError
from superact_lens.lens import ConceptLens, TokenBatch
from superact_lens.localization import localize
from superact_lens.monitor import ConceptEvent, ConceptMonitor
from superact_lens.normalization import Normalizer
from superact_lens.pipeline import Experiment, RunConfig, run_experiment
from superact_lens.scores import TokenScores
from superact_lens.sinks import NormStatsSink, ProjectionSink, SampleEmbeddingSink, TokenCollector
from superact_lens.sinks.token_sample import TokenSample

__version__ = "0.1.0"

__all__ = [
    "AggregatorDetector",
    "ConceptBank",
    "ConceptDetector",
    "ConceptEvent",
    "ConceptLens",
    "ConceptMonitor",
    "Experiment",
    "FixedNDetector",
    "InputError",
    "InputFileNotFoundError",
    "InputTypeError",
    "NormStatsSink",
    "Normalizer",
    "ProjectionSink",
    "RunConfig",
    "SampleEmbeddingSink",
    "SuperActivatorDetector",
    "TextDataset",
    "TokenBatch",
    "TokenCollector",
    "TokenSample",
    "TokenScores",
    "bootstrap_weighted_f1",
    "detection_metrics",
    "fit_concepts",
    "load_dataset",
    "localize",
    "make_synthetic_dataset",
    "run_experiment",
    "token_masks",
]
