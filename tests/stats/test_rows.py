"""Per-sample rows: merging shards in any order equals one pass."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.detection.aggregators import AGGREGATORS, aggregate
from superact_lens.stats import SampleAggregates, SampleRows, ScoreRows, load_state, save_state
from tests.detection.synth import make_data
from tests.stats.shards import batches, merge_all, rows_of, shard_plans

N = 23


def _sharded(make, update, plan):
    shards, sizes = plan
    parts = []
    for ids, size in zip(shards, sizes, strict=True):
        acc = make()
        for b in batches(ids, size):
            update(acc, b)
        parts.append(acc)
    return merge_all(parts)


@settings(max_examples=15, deadline=None)
@given(shard_plans(N), st.integers(0, 3))
def test_score_rows_merge_equals_one_pass(plan, seed):
    scores, _, _ = make_data(n=N, seed=seed, round_to=None)
    merged = _sharded(
        lambda: ScoreRows(scores.layers, scores.concepts),
        lambda acc, b: acc.add(b, rows_of(scores, b)),
        plan,
    )
    out = merged.result(N)
    assert torch.equal(out.offsets, scores.offsets)
    assert torch.equal(out.tokens, scores.tokens)
    assert torch.equal(out.cls, scores.cls)


@settings(max_examples=15, deadline=None)
@given(shard_plans(N), st.integers(0, 3), st.integers(0, 5))
def test_sample_aggregates_merge_equals_aggregate(plan, data_seed, seed):
    """Every baseline aggregate (incl. the random token) equals ``aggregate`` on the
    whole split, bit for bit, whatever the sharding."""
    scores, _, _ = make_data(n=N, seed=data_seed, round_to=None)
    merged = _sharded(
        lambda: SampleAggregates(AGGREGATORS, seed=seed, n_total=N),
        lambda acc, b: acc.update(b, rows_of(scores, b)),
        plan,
    )
    for method in AGGREGATORS:
        assert torch.equal(merged.result(method, N), aggregate(scores, method, seed)), method


def test_state_round_trip_bit_exact(tmp_path):
    scores, _, _ = make_data(n=N, seed=1, round_to=None)
    agg = SampleAggregates(AGGREGATORS, seed=3, n_total=N)
    rows = ScoreRows(scores.layers, scores.concepts, {"kind": "mean"})
    for b in batches([5, 2, 9, 0, 1, 22, 7], 3):
        agg.update(b, rows_of(scores, b))
        rows.add(b, rows_of(scores, b))
    save_state(tmp_path / "shard", {"agg": agg.state_dict(), "rows": rows.state_dict()})
    back = load_state(tmp_path / "shard")
    agg2 = SampleAggregates.from_state(back["agg"])
    rows2 = ScoreRows.from_state(back["rows"])
    for method in AGGREGATORS:
        assert torch.equal(agg2.result(method), agg.result(method))
    assert torch.equal(rows2.result().tokens, rows.result().tokens)
    assert torch.equal(rows2.result().cls, rows.result().cls)
    assert rows2.metadata == {"kind": "mean"}


def test_overlap_and_missing_samples_raise():
    a = SampleRows().add([0, 1], x=torch.zeros(2))
    b = SampleRows().add([1, 2], x=torch.ones(2))
    with pytest.raises(ValueError, match="sample 1 is counted twice"):
        a.merge(b)
    c = SampleRows().add([0, 2], x=torch.zeros(2))
    with pytest.raises(ValueError, match="missing e.g. \\[1\\]"):
        c.result(3)
    with pytest.raises(ValueError, match="n_total"):
        SampleAggregates(("random",))
