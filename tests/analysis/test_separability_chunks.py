"""separability_chunks over a split read in parts equals separability on the whole split."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.analysis import separability, separability_chunks
from superact_lens.detection.segments import segment_ids
from superact_lens.errors import InputError
from tests.detection.synth import make_data


def _parts(scores, labels, masks, ids_per_part):
    seg = segment_ids(scores.offsets)
    out = []
    for ids in ids_per_part:
        index = torch.tensor(ids, dtype=torch.long)
        token_masks = torch.cat([masks[seg == i] for i in ids]) if ids else masks[:0]
        out.append((scores.select_samples(index), labels[index], token_masks))
    return out


def _degenerate(labels, masks, scores):
    """Concept 0: no D_out (every sample positive); 1: no positives (no D_in);
    2: positives but no span (no D_in)."""
    labels, masks = labels.clone(), masks.clone()
    labels[:, 0] = True
    labels[:, 1] = False
    masks[:, 1] = False
    masks[:, 2] = False
    seg = segment_ids(scores.offsets)
    masks[:, 0] = torch.rand(len(seg)) < 0.5
    return labels, masks


def _assert_same(got, want):
    assert list(got) == list(want)  # same keys in the same order
    for key, value in want.items():
        if isinstance(value, np.ndarray):
            assert got[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got[key], value, err_msg=key)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 6),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0.5, None]),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_equals_separability_of_the_whole(seed, n_parts, with_columns, degenerate, round_to, dtype):
    n_c, n_cols = 4, 6 if with_columns else 4
    scores, labels, masks = make_data(
        n=23, n_layers=3, n_concepts=n_c, n_cols=n_cols, seed=seed % 1000, round_to=round_to
    )
    scores = replace(scores, tokens=scores.tokens.to(dtype), cls=None)
    if degenerate:
        torch.manual_seed(seed)
        labels, masks = _degenerate(labels, masks, scores)
    rng = np.random.default_rng(seed)
    columns = rng.permutation(n_cols)[:n_c].tolist() if with_columns else None
    qs = (0.95, 0.99, 0.5)
    want = separability(scores, labels, masks, qs, columns)
    # in sample order, cut at random points (parts may be empty)
    cuts = sorted(rng.integers(0, scores.n_samples + 1, n_parts - 1).tolist())
    bounds = [0, *cuts, scores.n_samples]
    ordered = [list(range(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    parts = _parts(scores, labels, masks, ordered)
    _assert_same(separability_chunks(lambda: iter(parts), qs, columns), want)
    # any order of the samples gives the same result
    shuffled = rng.permutation(scores.n_samples).tolist()
    parts = _parts(scores, labels, masks, [shuffled[i::n_parts] for i in range(n_parts)])
    _assert_same(separability_chunks(lambda: parts, qs, columns), want)


def test_degenerate_concepts_are_nan_as_in_separability():
    scores, labels, masks = make_data(n=20, n_concepts=4, n_cols=4, seed=5)
    labels, masks = _degenerate(labels, masks, scores)
    got = separability_chunks(
        lambda: _parts(scores, labels, masks, [list(range(7)), list(range(7, 20))])
    )
    assert np.isnan(got["out_quantile95"][:, 0]).all() and np.isnan(got["q95"][:, 0]).all()
    assert np.isnan(got["coverage99"][:, 1]).all() and np.isnan(got["q99"][:, 2]).all()
    assert not np.isnan(got["coverage99"][:, 2]).any()  # positives without a span are covered
    assert not np.isnan(got["q95"][:, 3]).any()
    _assert_same(got, separability(scores, labels, masks))


def test_reads_the_parts_a_fixed_number_of_times():
    scores, labels, masks = make_data(n=20, n_concepts=3, seed=1)
    parts = _parts(scores, labels, masks, [list(range(10)), list(range(10, 20))])
    calls = []

    def chunks():
        calls.append(1)
        return iter(parts)

    separability_chunks(chunks)
    assert len(calls) == 5  # a peek at the first part, 3 reads for the quantiles, 1 to count


def test_bad_inputs():
    scores, labels, masks = make_data(n=10, n_concepts=3, seed=2)
    with pytest.raises(InputError, match="no part"):
        separability_chunks(lambda: [])
    with pytest.raises(InputError, match="qs"):
        separability_chunks(lambda: [(scores, labels, masks)], qs=(95,))
    other = make_data(n=10, n_layers=2, n_concepts=3, seed=2)
    with pytest.raises(InputError, match="layers"):
        separability_chunks(lambda: [(scores, labels, masks), other])
    with pytest.raises(InputError, match="columns"):
        separability_chunks(lambda: [(scores, labels, masks)], columns=[0, 1, 7])
