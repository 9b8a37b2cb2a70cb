"""sample_subset: the TokenCollector's bottom-k rule applied to whole samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.errors import InputError
from superact_lens.sinks import sample_subset
from superact_lens.sinks.collector import token_keys


def _reference(labels: np.ndarray, cap_in: int, cap_neg: int, seed: int) -> list[int]:
    """Plain loop: per concept, sort its positives and its negatives by key, keep the heads."""
    keys = token_keys(np.arange(len(labels), dtype=np.uint64), seed)
    kept: set[int] = set()
    for c in range(labels.shape[1]):
        for members, cap in ((labels[:, c], cap_in), (~labels[:, c], cap_neg)):
            rows = sorted(np.flatnonzero(members).tolist(), key=lambda i: (keys[i], i))
            kept.update(rows[:cap])
    return sorted(kept)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 60),
    st.integers(1, 4),
    st.integers(1, 12),
    st.integers(1, 40),
    st.integers(0, 5),
    st.floats(0.0, 1.0),
)
def test_sample_subset_equals_the_per_concept_loop(n, n_concepts, cap_in, cap_neg, seed, p):
    rng = np.random.default_rng(seed * 1000 + n)
    labels = rng.random((n, n_concepts)) < p
    got = sample_subset(torch.as_tensor(labels), cap_in, cap_neg, seed)
    assert got.tolist() == _reference(labels, cap_in, cap_neg, seed)


def test_sample_subset_keeps_everything_under_the_caps():
    labels = torch.rand(500, 3, generator=torch.Generator().manual_seed(0)) < 0.3
    assert sample_subset(labels, 500, 500, 7).tolist() == list(range(500))


def test_sample_subset_is_bounded_and_stratified():
    labels = torch.zeros(10_000, 2, dtype=torch.bool)
    labels[:30, 0] = True  # a rare concept: all 30 positives survive
    labels[100:6000, 1] = True
    kept = sample_subset(labels, 50, 200, 0)
    assert set(range(30)) <= set(kept.tolist())
    assert int(labels[kept, 1].sum()) >= 50  # some also come in as concept 0's negatives
    assert len(kept) <= 2 * (50 + 200)


def test_sample_subset_refuses_bad_caps():
    with pytest.raises(InputError, match="cap_in"):
        sample_subset(torch.zeros(3, 2, dtype=torch.bool), 0, 5, 0)
    with pytest.raises(InputError, match="labels"):
        sample_subset(torch.zeros(3, dtype=torch.bool), 1, 5, 0)
