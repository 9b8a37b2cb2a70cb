"""What every benchmark here measures, defined once: interleaved repeated timing
with paired ratios, and the peak of new tensor memory during a call.

Timing. The machine is shared and noisy, so variants are never timed one after
another in blocks: after one untimed warm-up of each, every repetition runs
each variant once in a freshly shuffled order (:func:`interleaved_times`).
A ratio between two variants is then reported two ways (:func:`ratio`):

* the median over repetitions of the *paired* ratio (both timed in the same
  repetition, so slow phases of the machine hit both), and
* the ratio of the minimums (each variant's best run: the least disturbed).

Clock. ``clock="wall"`` (default) times with ``perf_counter``. ``clock="cpu"``
times with ``process_time``: the CPU seconds of every thread of this process,
so time spent descheduled while other jobs run is not counted. Run with
``torch.set_num_threads(1)`` for it: with several intra-op threads, the
seconds idle workers spin waiting for each other are CPU time too, and they
vary with load. On this shared 2-core machine the CPU clock with one thread is
what makes a ratio repeat from run to run (README, Benchmarks).

Memory. :class:`NewAllocationPeak` follows every tensor storage that an
operator *allocates* inside the context until it is freed, and records the
peak of their total size. Storages that existed before the call (weights,
inputs, buffers) are never counted, nor are views of them (``weight.t()`` in
``F.linear`` returns a view of the weight, not a new allocation): an output
that shares storage with one of the operator's inputs is an alias, not an
allocation. Not seen: scratch memory an operator frees before returning, and
memory outside torch's dispatcher (numpy arrays, tokenizer buffers).
"""

from __future__ import annotations

import random
import statistics
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["CLOCKS", "NewAllocationPeak", "interleaved_times", "peak_new_bytes", "ratio", "summary"]

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def interleaved_times(
    methods: Mapping[str, Callable[[], object]],
    reps: int,
    seed: int = 0,
    warmup: int = 1,
    on_rep: Callable[[int], None] | None = None,
    clock: str = "wall",
) -> dict[str, list[float]]:
    """Seconds (``clock``: "wall" or "cpu") of ``reps`` calls of every method, interleaved.

    Each method is first called ``warmup`` times untimed (lazy imports, caches,
    allocator growth). Each repetition then calls every method once, in an order
    shuffled anew (seeded), so that drift in machine load spreads evenly.
    ``on_rep(i)`` is called after repetition ``i`` (progress reporting).
    Returns, per method, the ``reps`` wall times in repetition order (index
    ``i`` of two methods = the same repetition: pairs for :func:`ratio`).
    """
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")
    if not methods:
        raise ValueError("methods must name at least one callable")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")
    now = CLOCKS[clock]
    for fn in methods.values():
        for _ in range(warmup):
            fn()
    rng = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for i in range(reps):
        order = list(methods)
        rng.shuffle(order)
        for name in order:
            start = now()
            methods[name]()
            times[name].append(now() - start)
        if on_rep is not None:
            on_rep(i)
    return times


def ratio(num: list[float], den: list[float]) -> dict[str, float]:
    """``num / den`` as the median of paired ratios and as the ratio of minimums."""
    if len(num) != len(den) or not num:
        raise ValueError(f"num and den must be paired non-empty lists, got {len(num)}, {len(den)}")
    return {
        "median_paired": statistics.median(a / b for a, b in zip(num, den, strict=True)),
        "min_ratio": min(num) / min(den),
    }


def summary(times: list[float]) -> dict[str, float]:
    """Median and minimum of a list of wall times (seconds)."""
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times)}


class NewAllocationPeak(TorchDispatchMode):
    """Peak bytes of tensor storages allocated inside the context and alive together.

    ``peak`` and ``live`` are in bytes; ``live`` at exit is what the call left
    allocated (e.g. its result). See the module docstring for what is counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}  # id(storage) -> bytes counted for it

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def _count(self, storage: Any, nbytes: int) -> None:
        key = id(storage)
        if key in self._sizes:  # a storage we track, possibly resized (``out=`` ops)
            self.live += nbytes - self._sizes[key]
            self._sizes[key] = nbytes
        else:
            self._sizes[key] = nbytes
            self.live += nbytes
            # storages keep their Python object while alive, so this fires when freed
            weakref.finalize(storage, self._free, key)
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [
            t.untyped_storage()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor) and not t.is_meta
        ]
        input_ids = {id(s) for s in inputs}
        input_ptrs = {s.data_ptr() for s in inputs if s.nbytes() > 0}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.is_meta:
                continue
            storage = t.untyped_storage()
            if id(storage) in self._sizes:
                self._count(storage, storage.nbytes())
            elif id(storage) in input_ids or (
                storage.nbytes() > 0 and storage.data_ptr() in input_ptrs
            ):
                continue  # a view of, or in-place result on, memory that existed before
            else:
                self._count(storage, storage.nbytes())
        return out


def peak_new_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of new tensor memory alive at once during ``fn()`` (result included)."""
    with NewAllocationPeak() as tracker:
        out = fn()
    del out
    return tracker.peak
