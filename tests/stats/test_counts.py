"""Threshold-grid counts: shards sum to the one-pass calibration grid."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.detection.calibration import DEFAULT_N_GRID
from superact_lens.detection.segments import segment_ids, segment_max
from superact_lens.detection.superact import superact_grid
from superact_lens.stats import GridCounts, load_state, save_state
from tests.detection.synth import make_data
from tests.stats.shards import batches, merge_all, shard_plans

N = 30


def _in_scores(scores, labels, masks, match_columns):
    in_mask = masks & labels[segment_ids(scores.offsets)]
    out = []
    for c in range(labels.shape[1]):
        idx = torch.nonzero(in_mask[:, c]).squeeze(1)
        out.append(scores.tokens[:, idx] if match_columns else scores.tokens[:, idx, c : c + 1])
    return out


@settings(max_examples=15, deadline=None)
@given(shard_plans(N), st.integers(0, 3), st.booleans())
def test_grid_counts_merge_equals_superact_grid(plan, seed, match_columns):
    """tp / pp summed over shards give superact_grid's precision, recall and F1."""
    scores, labels, masks = make_data(n=N, seed=seed, n_cols=4 if match_columns else 3)
    sample_max = segment_max(scores.tokens, scores.offsets, dim=1)  # [L, n, K]
    in_scores = _in_scores(scores, labels, masks, match_columns)
    tau, precision, recall, f1 = superact_grid(
        sample_max, labels, in_scores, DEFAULT_N_GRID, match_columns
    )
    parts = []
    for ids, size in zip(*plan, strict=True):
        counts = GridCounts(tau, match_columns)
        for b in batches(ids, size):
            counts.update(sample_max[:, b], labels[b])
        parts.append(counts)
    merged = merge_all(parts)
    assert merged.n == N
    assert merged.n_pos.tolist() == labels.sum(0).tolist()
    for got, ref in zip(merged.f1(), (precision, recall, f1), strict=True):
        assert torch.equal(got, ref)


def test_grid_counts_state_and_mismatch(tmp_path):
    scores, labels, masks = make_data(n=N, seed=1)
    sample_max = segment_max(scores.tokens, scores.offsets, dim=1)
    tau = torch.rand(3, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    tau[0, 0, 0, 0] = float("nan")
    counts = GridCounts(tau)
    counts.update(sample_max[:, :10], labels[:10])
    save_state(tmp_path / "g", {"grid": counts.state_dict()})
    back = GridCounts.from_state(load_state(tmp_path / "g")["grid"])
    torch.testing.assert_close(back.tau, counts.tau, rtol=0, atol=0, equal_nan=True)
    for name in ("tp", "pp", "n_pos"):
        assert torch.equal(getattr(back, name), getattr(counts, name))
    back.merge(counts)  # same tau (NaN included) merges
    assert back.n == 20
    with pytest.raises(ValueError, match="tau differs"):
        counts.merge(GridCounts(tau + 1))
    with pytest.raises(ValueError, match="labels: expected"):
        counts.update(sample_max[:, :2], labels[:3])
