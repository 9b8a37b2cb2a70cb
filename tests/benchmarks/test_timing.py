"""The timing harness: interleaving, pairing, and the two clocks."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_timing.py"
_spec = importlib.util.spec_from_file_location("_bench_timing_clock", _PATH)
_timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_timing)
interleaved_times, ratio = _timing.interleaved_times, _timing.ratio


def _spin(cpu_seconds: float) -> None:
    """Busy until this process has used ``cpu_seconds`` more CPU time."""
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def test_cpu_clock_does_not_count_time_off_the_cpu():
    methods = {"sleep": lambda: time.sleep(0.03), "spin": lambda: _spin(0.03)}
    wall = interleaved_times(methods, reps=3, warmup=0, clock="wall")
    cpu = interleaved_times(methods, reps=3, warmup=0, clock="cpu")
    assert min(wall["sleep"]) >= 0.03
    assert max(cpu["sleep"]) < 0.01  # asleep, off the CPU
    assert min(cpu["spin"]) >= 0.03  # busy on the CPU


def test_calls_are_interleaved_and_paired():
    calls: list[str] = []
    methods = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved_times(methods, reps=4, warmup=1, seed=3)
    assert calls[:3] == ["a", "b", "c"]  # the warm-up, in order
    reps = [calls[3 + 3 * i : 6 + 3 * i] for i in range(4)]
    assert all(sorted(r) == ["a", "b", "c"] for r in reps)  # every method once per repetition
    assert len({tuple(r) for r in reps}) > 1  # in a shuffled order
    assert all(len(t) == 4 for t in times.values())


def test_ratio_pairs_and_minimums():
    r = ratio([2.0, 4.0, 9.0], [1.0, 4.0, 3.0])
    assert r == {"median_paired": 2.0, "min_ratio": 2.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="clock must be one of"):
        interleaved_times({"a": lambda: None}, reps=1, clock="gpu")
    with pytest.raises(ValueError, match="reps must be >= 1"):
        interleaved_times({"a": lambda: None}, reps=0)
    with pytest.raises(ValueError, match="paired"):
        ratio([1.0], [1.0, 2.0])
