"""What calibration and evaluation read of a split: per-sample reductions of its scores.

Every detector reduces a sample's token scores before it thresholds them: the
SuperActivator detectors to the max (and, on cal, quantiles of the in-concept
tokens), the fixed-N variant to each sample's top tokens, the baselines to the
mean / last / random / CLS score. A :class:`SplitSummary` keeps exactly those
reductions, built chunk by chunk from :class:`~superact_lens.scores.TokenScores`
and merged like every accumulator of :mod:`superact_lens.stats`, so a large run
never holds the split's token scores: its memory is O(samples + in-concept
tokens), not O(tokens).

Detectors take a summary wherever they take TokenScores (``fit``, ``predict``,
``decision_function``) and give the same thresholds, layers and predictions bit
for bit (``tests/stats/test_summary.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores
from superact_lens.stats.quantiles import ConceptTokenStore
from superact_lens.stats.rows import SampleAggregates, _as_ids, _check_complete, _sorted_order
from superact_lens.stats.state import check_same

__all__ = ["SplitSummary", "top_tokens"]

_TOKEN_METHODS = ("max", "mean", "last", "random")


def top_tokens(scores: TokenScores, n: float) -> Float[Tensor, "L b k K"]:
    """Each sample's top ``ceil(n% * T)`` token scores (at least one), descending,
    padded with ``-inf`` to the largest count: what the fixed-N detector pools."""
    from superact_lens.detection.superact import FixedNDetector

    return FixedNDetector(n).top_tokens(scores)


class SplitSummary:
    """Per-sample reductions of one split's token scores, mergeable across chunks.

    Args:
        layers, concepts: those of the scores (``concepts``: one name per column).
        n_labels: ground-truth concepts C (label columns).
        n_total: samples in the whole split (the random baseline's draw of sample
            ``i`` depends on ``i`` only, so the pick does not depend on chunking).
        seed: the random baseline's seed.
        fixed_n: percent N of the fixed-N detector whose top tokens are kept
            (None: not kept, ``superact_fixed`` cannot be fitted on this summary).
        match_columns: keep every column of the in-concept tokens (unsupervised banks).
        with_cls: keep the sample-embedding scores (``scores.cls``).
        in_concept: keep the in-concept token scores (what ``tau(N)`` is a quantile
            of; needed to calibrate, not to evaluate).

    ``update(ids, scores, labels, token_masks)`` adds samples ``ids`` (indices in
    the split); :meth:`merge` takes another chunk's summary.
    """

    def __init__(
        self,
        layers: Sequence[int],
        concepts: Sequence[str],
        n_labels: int,
        n_total: int,
        *,
        seed: int = 0,
        fixed_n: float | None = 5.0,
        match_columns: bool = False,
        with_cls: bool = True,
        in_concept: bool = True,
        metadata: dict | None = None,
    ) -> None:
        self.layers, self.concepts = list(layers), list(concepts)
        self.n_labels, self.n_total, self.seed = int(n_labels), int(n_total), int(seed)
        self.fixed_n = None if fixed_n is None else float(fixed_n)
        self.match_columns, self.with_cls = bool(match_columns), bool(with_cls)
        self.in_concept = bool(in_concept)
        self.metadata = dict(metadata or {})
        methods = _TOKEN_METHODS + (("cls",) if with_cls else ())
        self.aggregates_ = SampleAggregates(methods, seed=self.seed, n_total=self.n_total)
        self.in_store_ = ConceptTokenStore("in", self.n_labels, self.match_columns)
        self._top: list[tuple[Tensor, Tensor]] = []  # (ids, [b, L, k, K]) per chunk
        self._lengths: list[tuple[Tensor, Tensor]] = []

    def _config(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "concepts": self.concepts,
            "n_labels": self.n_labels,
            "n_total": self.n_total,
            "seed": self.seed,
            "fixed_n": self.fixed_n,
            "match_columns": self.match_columns,
            "with_cls": self.with_cls,
            "in_concept": self.in_concept,
            "metadata": self.metadata,
        }

    # ------------------------------------------------------------- building
    def update(
        self,
        ids: Int[Tensor, " b"] | Sequence[int],
        scores: TokenScores,
        labels: Bool[Tensor, "b C"],
        token_masks: Bool[Tensor, "T C"] | None = None,
    ) -> SplitSummary:
        """Add samples ``ids`` with their token scores, labels and token masks
        (``token_masks`` is needed when ``in_concept``)."""
        if not isinstance(scores, TokenScores):
            raise InputTypeError(f"scores: expected a TokenScores, got {type(scores).__name__}")
        check_same("scores.layers", self.layers, list(scores.layers))
        check_same("scores.concepts", self.concepts, list(scores.concepts))
        if self.with_cls and scores.cls is None:
            raise InputError("scores.cls is None but the summary keeps sample-embedding scores")
        ids = _as_ids(ids, scores.n_samples)
        self.aggregates_.update(ids, scores)
        if self.in_concept:
            self.in_store_.update(ids, scores, labels, token_masks)
        self._lengths.append((ids, scores.lengths.clone()))
        if self.fixed_n is not None:
            self._top.append((ids, top_tokens(scores, self.fixed_n).permute(1, 0, 2, 3)))
        return self

    def merge(self, other: SplitSummary) -> SplitSummary:
        """Take ``other``'s samples (in place); a sample in both raises."""
        if not isinstance(other, SplitSummary):
            raise InputTypeError(f"other: expected a SplitSummary, got {type(other).__name__}")
        for name, value in self._config().items():
            check_same(name, value, other._config()[name])
        self.aggregates_.merge(other.aggregates_)
        self.in_store_.merge(other.in_store_)
        self._top += other._top
        self._lengths += other._lengths
        return self

    # -------------------------------------------------------------- reading
    @property
    def n_samples(self) -> int:
        return len(self.lengths)

    @property
    def n_columns(self) -> int:
        return len(self.concepts)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return self.aggregate("max").dtype

    @property
    def lengths(self) -> Int[Tensor, " n"]:
        """Content tokens per sample, in sample order."""
        self._lengths = [_ordered(self._lengths)]
        return self._lengths[0][1]

    @property
    def cls(self) -> Float[Tensor, "L n K"] | None:
        return self.aggregate("cls") if self.with_cls else None

    def aggregate(self, method: str, seed: int | None = None) -> Float[Tensor, "L n K"]:
        """Sample aggregates of ``method`` (as ``detection.aggregators.aggregate``)."""
        if method == "random" and seed is not None and int(seed) != self.seed:
            raise InputError(f"seed: this summary's random picks use seed {self.seed}, not {seed}")
        if method == "cls" and not self.with_cls:
            raise InputError("method 'cls' needs sample-embedding scores; the summary has none")
        return self.aggregates_.result(method, self.n_samples)

    def in_scores(self, c: int) -> Float[Tensor, "L m K2"]:
        """Concept ``c``'s in-concept token scores (D_in), in token order."""
        if not self.in_concept:
            raise InputError("this summary keeps no in-concept tokens (in_concept=False)")
        if not self.in_store_._values[c]:
            n_cols = self.n_columns if self.match_columns else 1
            return torch.zeros(len(self.layers), 0, n_cols, dtype=self.dtype)
        return self.in_store_.values(c)

    @property
    def n_in(self) -> Int[Tensor, " C"]:
        """In-concept tokens per ground-truth concept."""
        return self.in_store_.counts()

    def top_tokens(self, n: float) -> Float[Tensor, "L n k K"]:
        """:func:`top_tokens` of the whole split, for the fixed-N detector at ``n`` %."""
        if self.fixed_n is None or float(n) != self.fixed_n:
            raise InputError(f"n: this summary keeps the top tokens at N={self.fixed_n}, not {n}")
        k = max((t.shape[2] for _, t in self._top), default=1)
        padded = [(ids, _pad_k(t, k)) for ids, t in self._top]
        self._top = [_ordered(padded)] if padded else []
        _check_complete(self._top[0][0] if self._top else torch.zeros(0), self.n_samples)
        top = self._top[0][1] if self._top else torch.zeros(0, len(self.layers), 1, 0)
        return top.permute(1, 0, 2, 3)

    # ---------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """A flat state (:func:`~superact_lens.stats.save_state`): the configuration,
        ``ids`` / ``lengths`` / ``top`` rows, and the accumulators' entries
        under ``agg.`` and ``in.``."""
        state: dict[str, Any] = {f"config.{k}": v for k, v in self._config().items()}
        state.update({f"agg.{k}": v for k, v in self.aggregates_.state_dict().items()})
        state.update({f"in.{k}": v for k, v in self.in_store_.state_dict().items()})
        if self._lengths:
            state["ids"], state["lengths"] = _ordered(self._lengths)
        if self._top:
            k = max(t.shape[2] for _, t in self._top)
            state["top"] = _ordered([(i, _pad_k(t, k)) for i, t in self._top])[1]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SplitSummary:
        def part(prefix: str) -> dict[str, Any]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        summary = cls(**part("config."))
        summary.aggregates_ = SampleAggregates.from_state(part("agg."))
        summary.in_store_ = ConceptTokenStore.from_state(part("in."))
        if "ids" in state:
            summary._lengths = [(state["ids"], state["lengths"])]
            if "top" in state:
                summary._top = [(state["ids"], state["top"])]
        return summary


def _pad_k(top: Tensor, k: int) -> Tensor:
    """``[b, L, k_b, K]`` padded with ``-inf`` to ``k`` top slots."""
    if top.shape[2] == k:
        return top
    pad = torch.full((*top.shape[:2], k - top.shape[2], top.shape[3]), float("-inf"))
    return torch.cat([top, pad.to(top.dtype)], dim=2)


def _ordered(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Rows of every part concatenated and sorted by sample index (no duplicates)."""
    if len(parts) == 1 and bool((parts[0][0].diff() > 0).all()):
        return parts[0]
    ids = torch.cat([p[0] for p in parts])
    order = _sorted_order(ids)
    return ids[order], torch.cat([p[1] for p in parts])[order]
