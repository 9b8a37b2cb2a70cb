"""streamed_quantiles equals linear_quantiles (= torch.quantile) on the concatenation,
bit for bit, whatever the chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.detection.calibration import linear_quantiles
from superact_lens.errors import InputError, InputTypeError
from superact_lens.stats import streamed_quantiles

# Few distinct values so that ties are common, both zeros, infinities, subnormals.
_POOL = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 1e-40, -1e-40, 3e38, -3e38, float("inf"), float("-inf")]


@st.composite
def _problems(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    n_rows = draw(st.integers(1, 4))
    m = draw(st.integers(0, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(_POOL, dtype=dtype)
    spread = draw(st.sampled_from(["pool", "normal", "mixed"]))
    values = torch.randn(n_rows, m, generator=g, dtype=dtype)
    if spread != "normal":
        picked = pool[torch.randint(len(pool), (n_rows, m), generator=g)]
        use = torch.rand(n_rows, m, generator=g) < (1.0 if spread == "pool" else 0.5)
        values = torch.where(use, picked, values)
    keep = torch.rand(n_rows, m, generator=g) < draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    cuts = sorted(draw(st.lists(st.integers(0, m), max_size=5)))
    bounds = [0, *cuts, m]
    parts = [(values[:, a:b], keep[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    qs = draw(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4)) + [0.95, 0.99]
    bits = draw(st.sampled_from([11, 5, 16]))
    return values, keep, parts, torch.tensor(qs), bits


def _reference(values, keep, qs):
    out = torch.full((values.shape[0], len(qs)), float("nan"), dtype=values.dtype)
    for r in range(values.shape[0]):
        row = values[r][keep[r]]
        if len(row):
            out[r] = linear_quantiles(row.unsqueeze(0).contiguous(), qs)[0]
    return out


@settings(max_examples=150, deadline=None)
@given(_problems())
def test_equals_linear_quantiles_of_the_concatenation(problem):
    values, keep, parts, qs, bits = problem
    got = streamed_quantiles(lambda: iter(parts), values.shape[0], qs, bits_per_pass=bits)
    assert got.dtype == values.dtype
    # assert_array_equal: NaN == NaN, and -0.0 == +0.0 (a zero quantile's sign is unspecified)
    np.testing.assert_array_equal(got.numpy(), _reference(values, keep, qs).numpy())


def test_equals_torch_quantile_on_finite_rows():
    g = torch.Generator().manual_seed(3)
    values = torch.randn(5, 1000, generator=g)
    keep = torch.rand(5, 1000, generator=g) < 0.7
    qs = torch.tensor([0.0, 0.01, 0.5, 0.95, 0.99, 1.0])
    parts = [(values[:, i : i + 97], keep[:, i : i + 97]) for i in range(0, 1000, 97)]
    got = streamed_quantiles(lambda: parts, 5, qs)
    for r in range(5):
        assert torch.equal(got[r], torch.quantile(values[r][keep[r]], qs))


def test_counts_the_reads():
    values, keep = torch.randn(2, 30), torch.ones(2, 30, dtype=torch.bool)
    calls = []

    def chunks():
        calls.append(1)
        return [(values[:, :10], keep[:, :10]), (values[:, 10:], keep[:, 10:])]

    streamed_quantiles(chunks, 2, [0.5])
    assert len(calls) == 3  # float32: 11 + 11 + 10 bits
    calls.clear()
    streamed_quantiles(lambda: chunks() and [(values.double(), keep)], 2, [0.5])
    assert len(calls) == 6  # float64: 6 digits of 11 bits or less


def test_bad_inputs():
    ok = torch.ones(1, 3, dtype=torch.bool)
    with pytest.raises(InputError, match="NaN"):
        streamed_quantiles(lambda: [(torch.tensor([[1.0, float("nan"), 2.0]]), ok)], 1, [0.5])
    # a NaN the chunk does not keep is not part of the multiset
    nan_out = torch.tensor([[1.0, float("nan"), 2.0]])
    got = streamed_quantiles(lambda: [(nan_out, torch.tensor([[True, False, True]]))], 1, [0.5])
    assert got.item() == 1.5
    with pytest.raises(InputTypeError, match="float32 or float64"):
        streamed_quantiles(lambda: [(torch.ones(1, 3, dtype=torch.float16), ok)], 1, [0.5])
    with pytest.raises(InputError, match="changed dtype"):
        streamed_quantiles(
            lambda: [(torch.ones(1, 3), ok), (torch.ones(1, 3).double(), ok)], 1, [0.5]
        )
    with pytest.raises(InputError, match="rows"):
        streamed_quantiles(
            lambda: [(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool))], 1, [0.5]
        )
    with pytest.raises(InputError, match="no chunk"):
        streamed_quantiles(lambda: [], 1, [0.5])
    with pytest.raises(InputError, match="qs"):
        streamed_quantiles(lambda: [(torch.ones(1, 3), ok)], 1, [1.5])
    state = {"n": 0}

    def changing():  # a source that yields more data on its second read
        state["n"] += 1
        return [(torch.ones(1, 3), ok)] * state["n"]

    with pytest.raises(InputError, match="different entries"):
        streamed_quantiles(changing, 1, [0.5])
