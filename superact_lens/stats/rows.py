"""Per-sample rows keyed by global sample index: merging is concatenation in index order.

A shard streams some samples of a split, in any order and any batches; each
sample's row is computed from that sample alone, so the one-pass result is the
rows of every shard sorted by global sample index. Merging checks that no
sample was counted twice; ``result(n)`` checks that none is missing.

* :class:`SampleRows`: named tensors with one row per sample (sample axis first).
* :class:`ScoreRows`: :class:`~superact_lens.scores.TokenScores` of a split
  (ragged token rows plus the sample-embedding score).
* :class:`SampleAggregates`: per-sample max / mean / last / random / cls scores,
  equal to :func:`superact_lens.detection.aggregators.aggregate` on the whole split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from superact_lens.detection.aggregators import AGGREGATORS, aggregate
from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores
from superact_lens.stats.state import check_same

__all__ = ["SampleAggregates", "SampleRows", "ScoreRows", "random_draws"]


def _as_ids(ids: Any, n: int) -> Int[Tensor, " n"]:
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if len(ids) != n:
        raise InputError(f"ids: expected {n} global sample indices, got {len(ids)}")
    if len(ids) and int(ids.min()) < 0:
        raise InputError("ids: global sample indices must be >= 0")
    return ids


def _sorted_order(ids: Tensor) -> Tensor:
    order = torch.argsort(ids, stable=True)
    s = ids[order]
    dup = torch.nonzero(s[1:] == s[:-1]).flatten()
    if len(dup):
        raise InputError(f"ids: sample {int(s[dup[0]])} is counted twice (shards overlap)")
    return order


def _check_complete(ids: Tensor, n: int | None) -> None:
    if n is not None and not torch.equal(ids, torch.arange(n)):
        missing = sorted(set(range(n)) - set(ids.tolist()))[:5]
        raise InputError(f"n: expected rows for samples 0..{n - 1}; missing e.g. {missing}")


class SampleRows:
    """Named per-sample tensors ``{name: [n, ...]}`` keyed by global sample index."""

    def __init__(self) -> None:
        self._ids: list[Tensor] = []
        self._cols: dict[str, list[Tensor]] = {}

    def add(self, ids: Int[Tensor, " b"] | Sequence[int], **columns: Tensor) -> SampleRows:
        """Append the rows of samples ``ids`` (each column ``[b, ...]``)."""
        if not columns:
            raise InputError("columns: expected at least one named column")
        n = len(next(iter(columns.values())))
        ids = _as_ids(ids, n)
        if self._cols and set(columns) != set(self._cols):
            raise InputError(f"columns: got {sorted(columns)}, rows hold {sorted(self._cols)}")
        for name, value in columns.items():
            if not isinstance(value, Tensor) or len(value) != n:
                raise InputError(f"columns[{name!r}]: expected a tensor with {n} rows")
            self._cols.setdefault(name, []).append(value.detach().cpu())
        self._ids.append(ids)
        return self

    def _compact(self) -> None:
        if len(self._ids) <= 1 and (not self._ids or _is_sorted(self._ids[0])):
            return
        ids = torch.cat(self._ids)
        order = _sorted_order(ids)
        self._ids = [ids[order]]
        self._cols = {k: [torch.cat(v)[order]] for k, v in self._cols.items()}

    def merge(self, other: SampleRows) -> SampleRows:
        """Take ``other``'s rows (in place); overlapping samples raise."""
        if self._cols and other._cols and set(self._cols) != set(other._cols):
            raise InputError(f"other: columns {sorted(other._cols)} vs {sorted(self._cols)}")
        self._ids += other._ids
        for k, v in other._cols.items():
            self._cols.setdefault(k, []).extend(v)
        self._compact()
        return self

    @property
    def ids(self) -> Int[Tensor, " n"]:
        self._compact()
        return self._ids[0] if self._ids else torch.zeros(0, dtype=torch.long)

    def result(self, n: int | None = None) -> dict[str, Tensor]:
        """Columns sorted by sample index; with ``n``, rows must be exactly 0..n-1."""
        ids = self.ids
        _check_complete(ids, n)
        return {k: v[0] for k, v in self._cols.items()}

    def state_dict(self) -> dict[str, Any]:
        ids = self.ids
        return {"ids": ids, **{f"col.{k}": v[0] for k, v in self._cols.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SampleRows:
        rows = cls()
        cols = {k[4:]: v for k, v in state.items() if k.startswith("col.")}
        if cols:
            rows.add(state["ids"], **cols)
        return rows


def _is_sorted(ids: Tensor) -> bool:
    return bool((ids[1:] > ids[:-1]).all())


class ScoreRows:
    """The :class:`TokenScores` of a split, gathered from shards in any order.

    ``add(ids, scores)``: ``scores`` holds samples ``ids`` (global indices), in
    that order. ``result(n)`` is the split's TokenScores in index order: equal,
    bit for bit, to scoring the whole split in one pass.
    """

    def __init__(
        self, layers: Sequence[int], concepts: Sequence[str], metadata: dict | None = None
    ):
        self.layers, self.concepts = list(layers), list(concepts)
        self.metadata = dict(metadata or {})
        self._parts: list[tuple[Tensor, TokenScores]] = []

    def add(self, ids: Int[Tensor, " b"] | Sequence[int], scores: TokenScores) -> ScoreRows:
        if not isinstance(scores, TokenScores):
            raise InputTypeError(f"scores: expected a TokenScores, got {type(scores).__name__}")
        check_same("scores.layers", self.layers, list(scores.layers))
        check_same("scores.concepts", self.concepts, list(scores.concepts))
        if self._parts and (scores.cls is None) != (self._parts[0][1].cls is None):
            raise InputError("scores: some parts have sample-embedding scores (cls), some not")
        self._parts.append((_as_ids(ids, scores.n_samples), scores))
        return self

    def _compact(self) -> None:
        if len(self._parts) == 1 and _is_sorted(self._parts[0][0]) or not self._parts:
            return
        ids = torch.cat([p[0] for p in self._parts])
        order = _sorted_order(ids)
        lengths = torch.cat([p[1].lengths for p in self._parts])
        offsets = torch.zeros(len(ids) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        cls = [p[1].cls for p in self._parts]
        whole = TokenScores(
            layers=self.layers,
            concepts=self.concepts,
            tokens=torch.cat([p[1].tokens for p in self._parts], dim=1),
            offsets=offsets,
            cls=None if cls[0] is None else torch.cat(cls, dim=1),  # type: ignore[arg-type]
            metadata=self.metadata,
        )
        self._parts = [(ids[order], whole.select_samples(order))]

    def merge(self, other: ScoreRows) -> ScoreRows:
        check_same("layers", self.layers, other.layers)
        check_same("concepts", self.concepts, other.concepts)
        for ids, scores in other._parts:
            self.add(ids, scores)
        self._compact()
        return self

    def result(self, n: int | None = None) -> TokenScores:
        self._compact()
        if not self._parts:
            raise InputError("ScoreRows: no samples were added")
        ids, scores = self._parts[0]
        _check_complete(ids, n)
        return scores

    def state_dict(self) -> dict[str, Any]:
        self._compact()
        state: dict[str, Any] = {
            "layers": self.layers,
            "concepts": self.concepts,
            "metadata": self.metadata,
        }
        if self._parts:
            ids, s = self._parts[0]
            state.update(ids=ids, offsets=s.offsets, tokens=s.tokens)
            if s.cls is not None:
                state["cls"] = s.cls
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ScoreRows:
        rows = cls(state["layers"], state["concepts"], state["metadata"])
        if "ids" in state:
            scores = TokenScores(
                layers=rows.layers,
                concepts=rows.concepts,
                tokens=state["tokens"],
                offsets=state["offsets"],
                cls=state.get("cls"),
                metadata=rows.metadata,
            )
            rows.add(state["ids"], scores)
        return rows


def random_draws(n_total: int, seed: int) -> Float[Tensor, " n_total"]:
    """The uniform draws of :func:`~superact_lens.detection.segments.segment_random`
    for a split of ``n_total`` samples: draw ``i`` picks sample ``i``'s token."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand(n_total, generator=gen, dtype=torch.float64)


class SampleAggregates:
    """Per-sample aggregates of token scores, ``[layers, n, columns]`` per method.

    Args:
        methods: among ``AGGREGATORS`` (cls, mean, last, random, max).
        seed: the ``random`` method's seed, as in ``aggregate(..., seed)``.
        n_total: samples in the whole split; needed by ``random`` (draw ``i``
            of ``random_draws(n_total, seed)`` belongs to global sample ``i``,
            so the pick does not depend on the sharding).
    """

    def __init__(
        self, methods: Sequence[str] = AGGREGATORS, seed: int = 0, n_total: int | None = None
    ):
        unknown = [m for m in methods if m not in AGGREGATORS]
        if unknown or not methods:
            raise InputError(f"methods: expected some of {AGGREGATORS}, got {list(methods)}")
        if "random" in methods and (not isinstance(n_total, int) or n_total < 0):
            raise InputError(f"n_total: 'random' needs the split's sample count, got {n_total!r}")
        self.methods, self.seed, self.n_total = tuple(methods), int(seed), n_total
        self.rows = SampleRows()
        self._draws: Tensor | None = None

    def update(self, ids: Int[Tensor, " b"] | Sequence[int], scores: TokenScores) -> None:
        """Add samples ``ids`` (global indices) whose token scores are ``scores``."""
        ids = _as_ids(ids, scores.n_samples)
        cols = {}
        for m in self.methods:
            if m == "random":
                cols[m] = self._random(ids, scores).transpose(0, 1)
            else:
                cols[m] = aggregate(scores, m, self.seed).transpose(0, 1)  # [b, L, K]
        self.rows.add(ids, **cols)

    def _random(self, ids: Tensor, scores: TokenScores) -> Tensor:
        if len(ids) and int(ids.max()) >= self.n_total:  # type: ignore[operator]
            raise InputError(f"ids: sample {int(ids.max())} is beyond n_total={self.n_total}")
        if self._draws is None:
            self._draws = random_draws(self.n_total, self.seed)  # type: ignore[arg-type]
        lengths = scores.lengths
        pick = torch.minimum((self._draws[ids] * lengths).long(), (lengths - 1).clamp(min=0))
        index = (scores.offsets[:-1] + pick).clamp(max=max(scores.n_tokens - 1, 0))
        picked = scores.tokens.index_select(1, index) if scores.n_tokens else None
        out = torch.full(
            (len(scores.layers), len(ids), scores.tokens.shape[2]),
            float("-inf"),
            dtype=scores.tokens.dtype,
        )
        if picked is not None:
            out = torch.where((lengths > 0).view(1, -1, 1), picked, out)
        return out

    def merge(self, other: SampleAggregates) -> SampleAggregates:
        for name in ("methods", "seed", "n_total"):
            check_same(name, getattr(self, name), getattr(other, name))
        self.rows.merge(other.rows)
        return self

    def result(self, method: str, n: int | None = None) -> Float[Tensor, "layers n cols"]:
        """Aggregates of ``method`` in sample-index order (``n``: check completeness)."""
        if method not in self.methods:
            raise InputError(f"method: {method!r} was not accumulated ({self.methods})")
        return self.rows.result(n)[method].transpose(0, 1)

    def state_dict(self) -> dict[str, Any]:
        config = {"methods": list(self.methods), "seed": self.seed, "n_total": self.n_total}
        return {**config, **self.rows.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SampleAggregates:
        agg = cls(state["methods"], state["seed"], state["n_total"])
        agg.rows = SampleRows.from_state(state)
        return agg
