"""The SuperActivator calibration rebuilt from shards in two phases equals the
one-pass detector: phase 1 merges in-concept scores (-> tau) and per-sample
maxima; phase 2 sums each shard's grid counts at the merged tau."""

from __future__ import annotations

import warnings

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.detection import SuperActivatorDetector
from superact_lens.detection.calibration import DEFAULT_N_GRID, select_best
from superact_lens.detection.segments import segment_ids
from superact_lens.stats import ConceptTokenStore, GridCounts, SampleAggregates
from tests.detection.synth import make_data
from tests.stats.shards import batches, merge_all, rows_of, shard_plans

N = 28


@settings(max_examples=8, deadline=None)
@given(shard_plans(N), st.integers(0, 5), st.booleans())
def test_superact_calibration_from_shards(plan, seed, match_columns):
    scores, labels, masks = make_data(n=N, seed=seed, n_cols=4 if match_columns else 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = SuperActivatorDetector(match_columns=match_columns).fit(scores, labels, masks)
    seg = segment_ids(scores.offsets)
    stores, maxima = [], []
    for ids, size in zip(*plan, strict=True):  # phase 1
        store = ConceptTokenStore("in", labels.shape[1], match_columns)
        agg = SampleAggregates(("max",))
        for b in batches(ids, size):
            part = rows_of(scores, b)
            store.update(b, part, labels[b], torch.cat([masks[seg == i] for i in b]))
            agg.update(b, part)
        stores.append(store)
        maxima.append(agg)
    tau = merge_all(stores).thresholds(DEFAULT_N_GRID)
    sample_max = merge_all(maxima).result("max", N)
    counts = []
    for ids, size in zip(*plan, strict=True):  # phase 2
        grid = GridCounts(tau, match_columns)
        for b in batches(ids, size):
            grid.update(sample_max[:, b], labels[b])
        counts.append(grid)
    _, _, f1 = merge_all(counts).f1()
    assert torch.equal(f1, det.cal_f1_full_)
    col, layer, n = select_best(f1)
    for c in torch.nonzero(~det.fallback_).flatten().tolist():
        assert int(det.layer_index_[c]) == int(layer[c])
        assert float(det.threshold_[c]) == float(tau[c, col[c], layer[c], n[c]])
