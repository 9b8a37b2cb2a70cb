"""The benchmarks' memory counter (benchmarks/_timing.py) counts new allocations only.

bench_stream.py reports peak memory ratios; they are meaningful only if the
counter leaves out memory that existed before the call (weights, and views of
them such as ``weight.t()`` inside ``F.linear``) and still counts what the
call allocates.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_timing.py"
_spec = importlib.util.spec_from_file_location("_bench_timing", _PATH)
timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timing)

MB = 1 << 20


@pytest.fixture(scope="module")
def weight():
    """A 4 MB tensor that exists before any measured call (like a model weight)."""
    return torch.randn(1024, 1024)


def test_views_of_a_preexisting_tensor_count_zero(weight):
    def views():
        return weight.t(), weight[::2], weight.view(-1), weight.detach(), weight.reshape(512, -1)

    assert timing.peak_new_bytes(views) == 0


def test_linear_counts_its_output_not_the_weight(weight):
    x = torch.randn(8, 1024)
    # F.linear on CPU dispatches aten.t(weight) (a view) and aten.addmm/mm (the output)
    peak = timing.peak_new_bytes(lambda: F.linear(x, weight))
    assert peak == 8 * 1024 * 4


def test_in_place_on_a_preexisting_tensor_counts_zero():
    x = torch.zeros(MB // 4)
    assert timing.peak_new_bytes(lambda: x.add_(1.0).mul_(2.0)) == 0


def test_a_new_tensor_counts_its_bytes():
    assert timing.peak_new_bytes(lambda: torch.ones(MB // 4)) == MB


def test_freed_temporaries_do_not_accumulate():
    def many_temporaries():
        total = torch.zeros(())
        for _ in range(10):
            total += torch.ones(MB // 4).sum()  # 1 MB alive, then freed
        return total

    peak = timing.peak_new_bytes(many_temporaries)
    assert MB <= peak < MB + 1024


def test_peak_is_the_largest_simultaneous_total():
    def two_then_one():
        a = torch.ones(MB // 4)
        b = torch.ones(MB // 4)  # 2 MB alive together
        del a, b
        return torch.ones(MB // 8)  # 0.5 MB

    with timing.NewAllocationPeak() as tracker:
        out = two_then_one()
    assert tracker.peak == 2 * MB
    assert tracker.live == MB // 2  # only the result is still allocated
    del out


def test_resize_through_out_is_counted():
    def grow():
        buf = torch.empty(0)
        torch.add(torch.ones(MB // 4), 1.0, out=buf)  # resizes buf to 1 MB
        return buf

    assert timing.peak_new_bytes(grow) == 2 * MB  # buf and the ones() input, alive together
