"""Segment reductions equal per-sample loops; empty samples give -inf."""

from __future__ import annotations

import math

import pytest
import torch

from superact_lens.detection import (
    padded_segments,
    segment_any,
    segment_last,
    segment_max,
    segment_mean,
    segment_random,
)


def _data():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 0, 5, 1, 0, 4])
    offsets = torch.zeros(7, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    values = torch.randn(2, int(offsets[-1]), 3, generator=g)
    return values, offsets, lengths


def test_reductions_match_loops():
    values, offsets, lengths = _data()
    mx, mean, last = (f(values, offsets) for f in (segment_max, segment_mean, segment_last))
    for i in range(len(lengths)):
        seg = values[:, offsets[i] : offsets[i + 1]]
        if lengths[i] == 0:
            for out in (mx, mean, last):
                assert torch.all(out[:, i] == -math.inf)
            continue
        assert torch.equal(mx[:, i], seg.max(1).values)
        torch.testing.assert_close(mean[:, i], seg.mean(1))
        assert torch.equal(last[:, i], seg[:, -1])


def test_random_is_seeded_and_picks_a_token_of_the_sample():
    values, offsets, lengths = _data()
    a = segment_random(values, offsets, seed=1)
    assert torch.equal(a, segment_random(values, offsets, seed=1))
    for i in range(len(lengths)):
        seg = values[:, offsets[i] : offsets[i + 1]]
        if lengths[i] == 0:
            assert torch.all(a[:, i] == -math.inf)
        else:
            hits = (seg == a[:, i : i + 1]).all(0).all(-1)  # same token at every layer/column
            assert hits.any()


def test_padded_and_any():
    values, offsets, lengths = _data()
    p = padded_segments(values, offsets, dim=1)
    assert p.shape == (2, 6, 5, 3)
    assert torch.equal(p[:, 2, :5], values[:, 3:8])
    assert torch.all(p[:, 1] == -math.inf)
    mask = values[0] > 1.0
    anyv = segment_any(mask, offsets)
    for i in range(6):
        assert bool(anyv[i].any()) == bool(mask[offsets[i] : offsets[i + 1]].any())


def test_bad_offsets():
    values, offsets, _ = _data()
    with pytest.raises(ValueError, match="offsets"):
        segment_max(values, offsets[:-1])
    with pytest.raises(TypeError, match="values"):
        segment_max(values.numpy(), offsets)
