"""Quantiles of token scores from shards: exact stores and a bounded sketch.

* :class:`ConceptTokenStore` keeps, per concept, the scores of the tokens of one
  set -- ``"in"`` (D_in: in the concept's mask, in a positive sample; what the
  SuperActivator thresholds are quantiles of) or ``"out"`` (D_out: every token
  of a negative sample; what separability's out-of-concept quantiles use) --
  keyed by ``(global sample index, content position)``. Merging is
  concatenation in key order, so quantiles of the merge are bit for bit the
  one-pass quantiles. Memory is O(tokens in the set): small for D_in, but
  D_out holds about every token once per concept.
* :class:`QuantileSketch` replaces an O(tokens) store where that is too big: a
  DDSketch (Masson, Rim & Lee, VLDB 2019) with logarithmic buckets. Counts add,
  so the merged sketch is identical whatever the sharding. Bound: for
  ``min_value <= |x| <= max_value`` each order statistic is returned within
  relative error ``alpha``, so a linearly interpolated quantile ``q`` between
  order statistics ``x_lo`` and ``x_hi`` is within
  ``alpha * max(|x_lo|, |x_hi|) + min_value`` of ``torch.quantile``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.detection.calibration import linear_quantiles, superact_thresholds
from superact_lens.detection.segments import segment_ids
from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores
from superact_lens.stats.state import check_same

__all__ = ["ConceptTokenStore", "QuantileSketch", "token_uids"]

_POS_BITS = 20  # uid = sample index << 20 | content position (as in TokenCollector)


def token_uids(ids: Int[Tensor, " b"], offsets: Int[Tensor, " b_plus_1"]) -> Int[Tensor, " T"]:
    """One 64-bit key per content token: ``global sample index << 20 | position``."""
    seg = segment_ids(offsets)
    pos = torch.arange(int(offsets[-1])) - offsets[:-1][seg]
    return (ids[seg] << _POS_BITS) | pos


class ConceptTokenStore:
    """Per concept, the scores of its D_in or D_out tokens, merged exactly.

    Args:
        which: ``"in"`` or ``"out"`` (see the module docstring).
        n_concepts: ground-truth concepts C (label columns).
        match_columns: keep every score column per token (``[L, m, K]``, for
            unsupervised banks) instead of the concept's own column (``[L, m, 1]``).
    """

    def __init__(self, which: str, n_concepts: int, match_columns: bool = False) -> None:
        if which not in ("in", "out"):
            raise InputError(f"which: expected 'in' or 'out', got {which!r}")
        if not isinstance(n_concepts, int) or n_concepts < 1:
            raise InputError(f"n_concepts: expected a positive int, got {n_concepts!r}")
        self.which, self.n_concepts, self.match_columns = which, n_concepts, bool(match_columns)
        self._uids: list[list[Tensor]] = [[] for _ in range(n_concepts)]
        self._values: list[list[Tensor]] = [[] for _ in range(n_concepts)]

    def update(
        self,
        ids: Int[Tensor, " b"] | Sequence[int],
        scores: TokenScores,
        labels: Bool[Tensor, "b C"],
        token_masks: Bool[Tensor, "T C"] | None = None,
    ) -> None:
        """Add samples ``ids`` (global indices) with their scores, labels and masks
        (``token_masks`` is needed for ``"in"``)."""
        if not isinstance(scores, TokenScores):
            raise InputTypeError(f"scores: expected a TokenScores, got {type(scores).__name__}")
        ids = torch.as_tensor(ids, dtype=torch.long)
        labels = torch.as_tensor(labels).bool()
        if labels.shape != (scores.n_samples, self.n_concepts) or len(ids) != scores.n_samples:
            raise InputError(
                f"labels/ids: expected [{scores.n_samples}, {self.n_concepts}] labels and "
                f"{scores.n_samples} ids, got {tuple(labels.shape)} and {len(ids)}"
            )
        if not self.match_columns and scores.tokens.shape[2] != self.n_concepts:
            raise InputError(
                f"scores: {scores.tokens.shape[2]} columns for {self.n_concepts} concepts "
                "(use match_columns=True for unsupervised banks)"
            )
        tok_labels = labels[segment_ids(scores.offsets)]
        if self.which == "in":
            if token_masks is None or token_masks.shape != (scores.n_tokens, self.n_concepts):
                raise InputError(f"token_masks: expected [{scores.n_tokens}, {self.n_concepts}]")
            mask = token_masks.bool() & tok_labels
        else:
            mask = ~tok_labels
        uids = token_uids(ids, scores.offsets)
        rows = mask.T.contiguous()
        for c in range(self.n_concepts):
            idx = torch.nonzero(rows[c]).squeeze(1)
            if self.match_columns:
                values = scores.tokens[:, idx]
            else:
                values = scores.tokens[:, :, c][:, idx].unsqueeze(-1)
            self._uids[c].append(uids[idx])
            self._values[c].append(values)

    def _compact(self, c: int) -> None:
        if len(self._uids[c]) == 1 and bool((self._uids[c][0].diff() > 0).all()):
            return
        if not self._uids[c]:
            return
        uids = torch.cat(self._uids[c])
        values = torch.cat(self._values[c], dim=1)
        order = torch.argsort(uids)
        uids = uids[order]
        if bool((uids[1:] == uids[:-1]).any()):
            raise InputError(f"other: a token of concept {c} is counted twice (shards overlap)")
        self._uids[c], self._values[c] = [uids], [values[:, order]]

    def merge(self, other: ConceptTokenStore) -> ConceptTokenStore:
        for name in ("which", "n_concepts", "match_columns"):
            check_same(name, getattr(self, name), getattr(other, name))
        for c in range(self.n_concepts):
            self._uids[c] += other._uids[c]
            self._values[c] += other._values[c]
            self._compact(c)
        return self

    def values(self, c: int) -> Float[Tensor, "L m K2"]:
        """Concept ``c``'s token scores in (sample, position) order (token order)."""
        self._compact(c)
        if not self._values[c]:
            raise InputError("ConceptTokenStore: no samples were added")
        return self._values[c][0]

    def counts(self) -> Int[Tensor, " C"]:
        return torch.tensor([sum(len(u) for u in us) for us in self._uids], dtype=torch.long)

    def thresholds(self, n_grid: Sequence[float]) -> Float[Tensor, "C K2 L N"]:
        """SuperActivator thresholds ``tau(N)`` of every concept (NaN without tokens):
        what :func:`~superact_lens.detection.superact.superact_grid` computes on cal."""
        return torch.stack(
            [superact_thresholds(self.values(c), n_grid) for c in range(self.n_concepts)]
        )

    def quantiles(self, qs: Sequence[float]) -> Float[Tensor, "C K2 L Q"]:
        """``torch.quantile`` (linear) of every concept's scores; NaN without tokens."""
        q = torch.tensor([float(x) for x in qs], dtype=torch.float64)
        out = []
        for c in range(self.n_concepts):
            v = self.values(c)  # [L, m, K']
            n_layers, m, kk = v.shape
            if m == 0:
                out.append(torch.full((kk, n_layers, len(q)), float("nan"), dtype=v.dtype))
                continue
            rows = v.permute(2, 0, 1).reshape(kk * n_layers, m).contiguous()
            out.append(linear_quantiles(rows, q.to(v.dtype)).view(kk, n_layers, len(q)))
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "which": self.which,
            "n_concepts": self.n_concepts,
            "match_columns": self.match_columns,
        }
        for c in range(self.n_concepts):
            if self._uids[c]:
                self._compact(c)
                state[f"uids.{c}"], state[f"values.{c}"] = self._uids[c][0], self._values[c][0]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConceptTokenStore:
        store = cls(state["which"], state["n_concepts"], state["match_columns"])
        for c in range(store.n_concepts):
            if f"uids.{c}" in state:
                store._uids[c] = [state[f"uids.{c}"]]
                store._values[c] = [state[f"values.{c}"]]
        return store


class QuantileSketch:
    """Mergeable quantile sketch over ``n_rows`` independent value streams.

    Args:
        n_rows: streams (e.g. concept x layer).
        alpha: relative accuracy of every order statistic (0 < alpha < 1).
        min_value: magnitudes below it fall in one zero bucket (absolute error < it).
        max_value: larger magnitudes are refused (the bound would not hold).

    Memory: ``n_rows * (2 * B + 1)`` int64 counts with
    ``B = ceil(log(max_value / min_value) / log(gamma)) + 1``,
    ``gamma = (1 + alpha) / (1 - alpha)``; ~44 KB per row at the defaults.
    """

    def __init__(
        self, n_rows: int, alpha: float = 0.005, min_value: float = 1e-6, max_value: float = 1e6
    ) -> None:
        if not isinstance(n_rows, int) or n_rows < 1:
            raise InputError(f"n_rows: expected a positive int, got {n_rows!r}")
        if not 0.0 < alpha < 1.0:
            raise InputError(f"alpha: expected 0 < alpha < 1, got {alpha!r}")
        if not 0.0 < min_value < max_value < math.inf:
            raise InputError(
                f"min_value, max_value: need 0 < min < max < inf, got {min_value}, {max_value}"
            )
        self.n_rows, self.alpha = n_rows, float(alpha)
        self.min_value, self.max_value = float(min_value), float(max_value)
        self.log_gamma = math.log((1 + alpha) / (1 - alpha))
        self.n_buckets = math.ceil(math.log(max_value / min_value) / self.log_gamma) + 1
        # ascending by value: negatives (largest magnitude first), zero, positives
        self.counts = torch.zeros(n_rows, 2 * self.n_buckets + 1, dtype=torch.int64)

    def update(self, rows: Int[Tensor, " m"], values: Float[Tensor, " m"]) -> None:
        """Count ``values[i]`` in stream ``rows[i]``."""
        rows = torch.as_tensor(rows, dtype=torch.long).flatten()
        x = torch.as_tensor(values).to(torch.float64).flatten()
        if rows.shape != x.shape:
            raise InputError(f"rows, values: shapes differ ({tuple(rows.shape)}, {tuple(x.shape)})")
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= self.n_rows):
            raise InputError(f"rows: stream indices must lie in [0, {self.n_rows})")
        mag = x.abs()
        if not bool((mag <= self.max_value).all()):  # also catches NaN
            raise InputError(f"values: NaN or magnitude above max_value={self.max_value}")
        small = mag < self.min_value
        index = torch.ceil(
            torch.log(mag.clamp(min=self.min_value) / self.min_value) / self.log_gamma
        )
        index = index.long().clamp(0, self.n_buckets - 1)
        nb = self.n_buckets
        slot = torch.where(x > 0, nb + 1 + index, nb - 1 - index)
        slot = torch.where(small, torch.full_like(slot, nb), slot)
        flat = rows * self.counts.shape[1] + slot
        self.counts.view(-1).index_add_(0, flat, torch.ones_like(flat))

    def _representatives(self) -> Float[Tensor, " slots"]:
        i = torch.arange(self.n_buckets, dtype=torch.float64)
        gamma = math.exp(self.log_gamma)
        pos = self.min_value * torch.exp(i * self.log_gamma) * 2 / (gamma + 1)
        pos[0] = self.min_value  # bucket 0 holds exactly [min_value, min_value * 1]
        return torch.cat([-pos.flip(0), torch.zeros(1, dtype=torch.float64), pos])

    def quantiles(self, qs: Sequence[float]) -> Float[Tensor, "rows Q"]:
        """Estimates of ``torch.quantile(row values, q)`` (linear); NaN for empty rows."""
        q = torch.tensor([float(x) for x in qs], dtype=torch.float64)
        if not len(q) or bool(((q < 0) | (q > 1)).any()):
            raise InputError(f"qs: expected levels in [0, 1], got {list(qs)}")
        cum = self.counts.cumsum(1)  # [rows, slots]
        n = cum[:, -1:].to(torch.float64)  # [rows, 1]
        rank = q.view(1, -1) * (n - 1).clamp(min=0)
        lo, hi = rank.floor().long(), rank.ceil().long()
        rep = self._representatives()
        v_lo = rep[torch.searchsorted(cum, lo, right=True).clamp(max=len(rep) - 1)]
        v_hi = rep[torch.searchsorted(cum, hi, right=True).clamp(max=len(rep) - 1)]
        est = torch.lerp(v_lo, v_hi, rank - lo)
        return torch.where(n > 0, est, torch.full_like(est, float("nan")))

    def bound(self, magnitude: Tensor | float) -> Tensor | float:
        """The error bound for order statistics of at most ``magnitude``."""
        return self.alpha * magnitude + self.min_value

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        for name in ("n_rows", "alpha", "min_value", "max_value"):
            check_same(name, getattr(self, name), getattr(other, name))
        self.counts += other.counts
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "alpha": self.alpha,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "counts": self.counts,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuantileSketch:
        sketch = cls(state["n_rows"], state["alpha"], state["min_value"], state["max_value"])
        if tuple(state["counts"].shape) != tuple(sketch.counts.shape):
            raise InputError(f"state: counts have shape {tuple(state['counts'].shape)}")
        sketch.counts = state["counts"].clone()
        return sketch
