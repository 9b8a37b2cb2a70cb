"""Mergeable statistics: what a shard of a run accumulates, merged exactly.

Every accumulator has ``merge(other)`` (in place, returns ``self``) such that
merging the accumulators of disjoint shards -- in any order, streamed in any
batches -- equals one pass over all samples, and ``state_dict()`` /
``from_state(state)`` to write a shard with :func:`save_state` and read it
back bit for bit. Accumulators of a run (see ``superact_lens.pipeline``):

========================  ==========================================  ===========================
statistic                 accumulator                                 merge
========================  ==========================================  ===========================
normalisation stats       ``sinks.MomentAccumulator``                 Chan et al. (float64)
token sample (train)      ``sinks.TokenCollector``                    bottom-k by hashed token key
per-split token scores    :class:`ScoreRows`                          concat by sample index
in-concept scores (cal)   :class:`ConceptTokenStore` ``"in"``         concat by token key
out-of-concept quantiles  :class:`ConceptTokenStore` ``"out"`` or     concat / bucket counts add
                          :class:`QuantileSketch`
per-sample max/mean/...   :class:`SampleAggregates`                   concat by sample index
threshold-grid counts     :class:`GridCounts`                         int64 sums
========================  ==========================================  ===========================

:func:`streamed_quantiles` gives exact quantiles of a multiset read in chunks
(e.g. a run's committed chunk files) in memory independent of its size: radix
select, one read of the chunks per key digit.
"""

from superact_lens.stats.counts import GridCounts
from superact_lens.stats.quantiles import ConceptTokenStore, QuantileSketch, token_uids
from superact_lens.stats.rows import SampleAggregates, SampleRows, ScoreRows, random_draws
from superact_lens.stats.select import streamed_quantiles
from superact_lens.stats.state import FORMAT_VERSION, load_state, save_state

__all__ = [
    "FORMAT_VERSION",
    "ConceptTokenStore",
    "GridCounts",
    "QuantileSketch",
    "SampleAggregates",
    "SampleRows",
    "ScoreRows",
    "load_state",
    "random_draws",
    "save_state",
    "streamed_quantiles",
    "token_uids",
]
