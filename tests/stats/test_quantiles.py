"""In-/out-of-concept token stores merge exactly; the sketch merges exactly and
keeps its stated error bound."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.analysis import separability
from superact_lens.detection.calibration import DEFAULT_N_GRID
from superact_lens.detection.segments import segment_ids
from superact_lens.detection.superact import _thresholds_all
from superact_lens.stats import ConceptTokenStore, QuantileSketch, load_state, save_state
from tests.detection.synth import make_data
from tests.stats.shards import batches, merge_all, rows_of, shard_plans

N = 25


def _masks_of(scores, masks, ids):
    """The token-mask rows of samples ``ids``, in that order (as ``rows_of``)."""
    seg = segment_ids(scores.offsets)
    return torch.cat([masks[seg == i] for i in ids])


def _store(which, scores, labels, masks, plan, match_columns=False):
    shards, sizes = plan
    parts = []
    for ids, size in zip(shards, sizes, strict=True):
        store = ConceptTokenStore(which, labels.shape[1], match_columns)
        for b in batches(ids, size):
            store.update(b, rows_of(scores, b), labels[b], _masks_of(scores, masks, b))
        parts.append(store)
    return merge_all(parts)


@settings(max_examples=12, deadline=None)
@given(shard_plans(N), st.integers(0, 3), st.booleans())
def test_in_concept_store_gives_the_one_pass_thresholds(plan, seed, match_columns):
    """Merged D_in scores are the calibration's in-concept scores in token order,
    so the thresholds equal ``superact_grid``'s bit for bit."""
    n_cols = 4 if match_columns else 3
    scores, labels, masks = make_data(n=N, seed=seed, n_cols=n_cols, round_to=None)
    store = _store("in", scores, labels, masks, plan, match_columns)
    in_mask = masks & labels[segment_ids(scores.offsets)]
    in_scores = []
    for c in range(labels.shape[1]):
        idx = torch.nonzero(in_mask[:, c]).squeeze(1)
        ref = scores.tokens[:, idx] if match_columns else scores.tokens[:, idx, c : c + 1]
        assert torch.equal(store.values(c), ref)
        in_scores.append(ref)
    tau = _thresholds_all(in_scores, DEFAULT_N_GRID)  # what superact_grid uses
    torch.testing.assert_close(
        store.thresholds(DEFAULT_N_GRID), tau, rtol=0, atol=0, equal_nan=True
    )
    assert store.counts().tolist() == in_mask.sum(0).tolist()


@settings(max_examples=12, deadline=None)
@given(shard_plans(N), st.integers(0, 3))
def test_out_of_concept_store_gives_separability_quantiles(plan, seed):
    scores, labels, masks = make_data(n=N, seed=seed, round_to=None)
    store = _store("out", scores, labels, masks, plan)
    q = store.quantiles((0.95, 0.99))  # [C, 1, L, Q]
    sep = separability(scores, labels, masks, qs=(0.95, 0.99))
    for j, key in enumerate(("out_quantile95", "out_quantile99")):
        ref = torch.from_numpy(sep[key]).T  # [C, L]
        torch.testing.assert_close(q[:, 0, :, j].double(), ref, rtol=0, atol=0, equal_nan=True)


def test_store_state_round_trip(tmp_path):
    scores, labels, masks = make_data(n=N, seed=2)
    store = _store("in", scores, labels, masks, ([list(range(N))], [4]))
    save_state(tmp_path / "s", {"in": store.state_dict()})
    back = ConceptTokenStore.from_state(load_state(tmp_path / "s")["in"])
    for c in range(labels.shape[1]):
        assert torch.equal(back.values(c), store.values(c))
    with pytest.raises(ValueError, match="counted twice"):
        back.merge(_store("in", scores, labels, masks, ([[0, 1, 2, 3]], [2])))


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(finite, min_size=1, max_size=200),
    st.lists(st.floats(0, 1), min_size=1, max_size=5),
    st.sampled_from([0.001, 0.01, 0.05]),
    st.integers(1, 4),
)
def test_sketch_error_bound(values, qs, alpha, n_parts):
    """|sketch quantile - torch.quantile| <= alpha * max(|x_lo|, |x_hi|) + min_value,
    where x_lo, x_hi are the order statistics the linear quantile interpolates."""
    x = torch.tensor(values, dtype=torch.float64)
    parts = []
    for chunk in x.tensor_split(n_parts):
        s = QuantileSketch(1, alpha=alpha, min_value=1e-6, max_value=1e4)
        s.update(torch.zeros(len(chunk), dtype=torch.long), chunk)
        parts.append(s)
    sketch = merge_all(parts)
    est = sketch.quantiles(qs)[0]
    srt = x.sort().values
    for q, e in zip(qs, est.tolist(), strict=True):
        exact = float(torch.quantile(x, q))
        rank = q * (len(x) - 1)
        mag = max(abs(float(srt[int(rank)])), abs(float(srt[min(int(rank) + 1, len(x) - 1)])))
        assert abs(e - exact) <= alpha * mag * (1 + 1e-9) + 1e-6, (q, e, exact)


@settings(max_examples=20, deadline=None)
@given(shard_plans(60))
def test_sketch_merge_is_sharding_free(plan):
    g = torch.Generator().manual_seed(0)
    x, rows = torch.randn(60, generator=g) * 3, torch.randint(0, 4, (60,), generator=g)
    whole = QuantileSketch(4, alpha=0.01)
    whole.update(rows, x)
    parts = []
    for ids, size in zip(*plan, strict=True):
        s = QuantileSketch(4, alpha=0.01)
        for b in batches(ids, size):
            s.update(rows[b], x[b])
        parts.append(s)
    merged = merge_all(parts)
    assert torch.equal(merged.counts, whole.counts)
    assert torch.equal(merged.quantiles((0.5, 0.99)), whole.quantiles((0.5, 0.99)))


def test_sketch_refuses_out_of_range_and_round_trips(tmp_path):
    s = QuantileSketch(2, alpha=0.01, max_value=10.0)
    with pytest.raises(ValueError, match="max_value"):
        s.update([0], [11.0])
    with pytest.raises(ValueError, match="NaN"):
        s.update([0], [float("nan")])
    s.update([0, 0, 1], [1.0, -2.0, 0.0])
    assert torch.isnan(QuantileSketch(1).quantiles([0.5])).all()
    save_state(tmp_path / "k", {"sketch": s.state_dict()})
    back = QuantileSketch.from_state(load_state(tmp_path / "k")["sketch"])
    assert torch.equal(back.counts, s.counts)
    assert torch.equal(back.quantiles([0.1, 0.9]), s.quantiles([0.1, 0.9]))
