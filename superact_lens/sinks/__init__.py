"""Streaming sinks: what is kept of each layer's residuals during the forward pass.

* :class:`ProjectionSink` -> :class:`~superact_lens.scores.TokenScores`
* :class:`NormStatsSink` -> :class:`~superact_lens.normalization.Normalizer`
* :class:`TokenCollector` -> :class:`TokenSample` (:func:`sample_subset`: its rule on samples)
* :class:`SampleEmbeddingSink` -> ``Float[Tensor, "layers n_samples d_model"]``
"""

from superact_lens.sinks.base import Sink
from superact_lens.sinks.collector import TokenCollector, sample_subset
from superact_lens.sinks.norm_stats import MomentAccumulator, NormStatsSink
from superact_lens.sinks.projection import ProjectionSink
from superact_lens.sinks.sample_embedding import SampleEmbeddingSink
from superact_lens.sinks.token_sample import TokenSample

__all__ = [
    "MomentAccumulator",
    "NormStatsSink",
    "ProjectionSink",
    "SampleEmbeddingSink",
    "Sink",
    "TokenCollector",
    "TokenSample",
    "sample_subset",
]
