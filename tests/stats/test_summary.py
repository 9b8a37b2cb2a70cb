"""A SplitSummary merged from random shards calibrates and predicts like the token scores."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.detection import METHODS, fit_detectors
from superact_lens.detection.aggregators import AGGREGATORS, aggregate
from superact_lens.errors import InputError
from superact_lens.stats import load_state, save_state
from superact_lens.stats.summary import SplitSummary
from tests.detection.synth import make_data
from tests.stats.shards import batches, merge_all, rows_of, shard_plans

N = 29


def _summary(scores, labels, masks, plan, **kw) -> SplitSummary:
    """The summary of ``scores`` built shard by shard, batch by batch, then merged."""
    shards, sizes = plan
    seg = torch.repeat_interleave(torch.arange(scores.n_samples), scores.lengths)
    parts = []
    for ids, size in zip(shards, sizes, strict=True):
        acc = SplitSummary(scores.layers, scores.concepts, labels.shape[1], N, **kw)
        for b in batches(ids, size):
            part = rows_of(scores, b)
            tok = torch.cat([torch.nonzero(seg == i).flatten() for i in b])
            acc.update(b, part, labels[b], masks[tok])
        parts.append(acc)
    return merge_all(parts)


def _same_detector(a, b) -> None:
    for name in ("column_", "layer_", "threshold_", "cal_f1_", "n_", *a._tensor_attrs):
        x, y = getattr(a, name), getattr(b, name)
        assert torch.equal(x.isnan(), y.isnan()) if x.is_floating_point() else True, name
        assert torch.equal(torch.nan_to_num(x), torch.nan_to_num(y)), name


@settings(max_examples=12, deadline=None)
@given(
    shard_plans(N), st.integers(0, 3), st.booleans(), st.integers(0, 4), st.sampled_from([5, 30])
)
def test_detectors_fitted_on_a_sharded_summary_equal_token_scores(plan, data, unsup, seed, n):
    """Every method (thresholds, layers, columns, cal F1 grids) and its test
    predictions are equal bit for bit, supervised or with column matching
    (N=30 %: samples keep different numbers of top tokens for the fixed-N detector)."""
    n_cols = 5 if unsup else None
    cal, labels, masks = make_data(n=N, seed=data, n_cols=n_cols)
    test, _, _ = make_data(n=N, seed=data + 7, n_cols=n_cols)
    summary = _summary(cal, labels, masks, plan, seed=seed, match_columns=unsup, fixed_n=n)
    kw = {"methods": METHODS, "seed": seed, "match_columns": unsup, "fixed_n": n}
    with warnings.catch_warnings():  # concepts without in-concept tokens fall back, warned
        warnings.simplefilter("ignore")
        full = fit_detectors(cal, labels, masks, **kw)
        reduced = fit_detectors(summary, labels, None, **kw)
    test_summary = _summary(test, labels, masks_of(test, labels), plan, seed=seed,
                            match_columns=unsup, fixed_n=None, in_concept=False)  # fmt: skip
    for m in METHODS:
        _same_detector(full[m], reduced[m])
        assert torch.equal(full[m].predict(test), reduced[m].predict(test_summary)), m


def masks_of(scores, labels):
    return torch.zeros(scores.n_tokens, labels.shape[1], dtype=torch.bool)


@settings(max_examples=10, deadline=None)
@given(shard_plans(N), st.integers(0, 3))
def test_summary_aggregates_and_top_tokens_equal_the_whole_split(plan, data):
    from superact_lens.detection.superact import FixedNDetector

    scores, labels, masks = make_data(n=N, seed=data, round_to=None)
    summary = _summary(scores, labels, masks, plan, seed=3, fixed_n=30)
    for method in AGGREGATORS:
        assert torch.equal(aggregate(summary, method, 3), aggregate(scores, method, 3)), method
    assert torch.equal(summary.top_tokens(30), FixedNDetector(30).top_tokens(scores))
    assert torch.equal(summary.lengths, scores.lengths)


def test_state_round_trip_and_refusals(tmp_path):
    scores, labels, masks = make_data(n=N, seed=2)
    plan = ([list(range(N))], [7])
    summary = _summary(scores, labels, masks, plan)
    save_state(tmp_path / "s", {"summary": summary.state_dict()})
    back = SplitSummary.from_state(load_state(tmp_path / "s")["summary"])
    for method in AGGREGATORS:
        assert torch.equal(back.aggregate(method), summary.aggregate(method))
    assert torch.equal(back.top_tokens(5.0), summary.top_tokens(5.0))
    for c in range(labels.shape[1]):
        assert torch.equal(back.in_scores(c), summary.in_scores(c))
    with pytest.raises(InputError, match="N=5.0, not 10"):
        summary.top_tokens(10)
    with pytest.raises(InputError, match="seed 0, not 1"):
        summary.aggregate("random", 1)
    twice = _summary(scores, labels, masks, plan)
    with pytest.raises(InputError, match="counted twice"):
        summary.merge(twice).aggregate("max")
