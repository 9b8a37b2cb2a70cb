"""Random sharding for merge-equals-one-pass tests (hypothesis draws the plan)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import strategies as st

from superact_lens.scores import TokenScores


@st.composite
def shard_plans(draw: Any, n: int) -> tuple[list[list[int]], list[int]]:
    """A partition of samples ``0..n-1`` into shards (random assignment and split
    points), each shard's samples in random order, a random shard order for the
    merge, and a random batch size per shard."""
    seed = draw(st.integers(0, 2**31 - 1))
    n_shards = draw(st.integers(1, max(1, min(n, 5))))
    rng = random.Random(seed)
    perm = list(range(n))
    rng.shuffle(perm)
    cuts = sorted(rng.sample(range(1, n), n_shards - 1)) if n > 1 else []
    bounds = [0, *cuts, n]
    shards = [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    rng.shuffle(shards)
    batch_sizes = [draw(st.integers(1, 8)) for _ in shards]
    return shards, batch_sizes


def batches(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def merge_all(parts: list[Any], merge: Callable[[Any, Any], Any] | None = None) -> Any:
    acc = parts[0]
    for p in parts[1:]:
        acc = acc.merge(p) if merge is None else merge(acc, p)
    return acc


def rows_of(scores: TokenScores, ids: list[int]) -> TokenScores:
    return scores.select_samples(torch.tensor(ids, dtype=torch.long))
