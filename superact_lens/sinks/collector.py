"""TokenCollector: a bounded, stratified sample of raw token embeddings (-> TokenSample).

For each concept ``c`` two reservoirs are kept: up to ``cap_in`` in-concept
tokens of ``c`` and up to ``cap_neg`` tokens of samples labelled negative for
``c`` (SPEC §2: tokens outside the span in a positive sample are neither).
Every token gets one pseudo-random key from ``(seed, sample id, position)``;
each reservoir keeps the tokens with the smallest keys among those eligible
for it (bottom-k sampling: a uniform sample without replacement). Because the
key is shared, the reservoirs of different concepts overlap as much as they
can, so a token kept by several is stored once and memory stays near
``cap_neg + C * cap_in`` tokens instead of ``C * (cap_in + cap_neg)`` (it is
never more). The sample depends on the seed only, not on batch order.

Sharding: a collector may stream any subset of the samples (``sample_index``
maps its texts to global sample indices); ``merge`` of the collectors of
disjoint shards keeps the bottom-k of the union, which is exactly the one-pass
sample (same tokens, whatever the split points, shard order or batch size).
``state_dict`` / ``load_state_dict`` save and restore it (tensors + JSON
values, see :mod:`superact_lens.stats.state`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.errors import InputError
from superact_lens.sinks.base import Sink
from superact_lens.sinks.token_sample import TokenSample

if TYPE_CHECKING:
    from superact_lens.lens import TokenBatch

__all__ = ["TokenCollector", "sample_subset", "token_keys"]

_POS_BITS = 20  # uid = sample_id << 20 | content position


def token_keys(uids: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) keys from 64-bit token uids (splitmix64 of ``uid`` xor a seed mix)."""
    with np.errstate(over="ignore"):
        z = uids.astype(np.uint64) ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def sample_subset(
    labels: Bool[Tensor, "n C"], cap_in: int, cap_neg: int, seed: int
) -> Int[Tensor, " k"]:
    """The collector's rule applied to whole samples: for each concept ``c``, the
    ``cap_in`` samples labelled ``c`` and the ``cap_neg`` samples not labelled ``c``
    with the smallest keys (one key per sample, from ``(seed, sample index)``).
    Returns the union as ascending sample indices: every sample when no concept has
    more positives than ``cap_in`` or negatives than ``cap_neg``. Fixed by the labels
    and the seed, so every shard of a run agrees on it.
    """
    labels = torch.as_tensor(labels, dtype=torch.bool)
    if labels.ndim != 2:
        raise InputError(f"labels: expected a [n, C] bool tensor, got shape {tuple(labels.shape)}")
    for name, cap in (("cap_in", cap_in), ("cap_neg", cap_neg)):
        if not isinstance(cap, int) or cap < 1:
            raise InputError(f"{name}: expected a positive int, got {cap!r}")
    keys = torch.from_numpy(token_keys(np.arange(len(labels), dtype=np.uint64), seed))
    order = torch.argsort(keys, stable=True)
    ranked = labels[order]  # [n, C], smallest key first
    in_rank = ranked.cumsum(0, dtype=torch.int64)  # 1-based rank among c's positives
    neg_rank = (~ranked).cumsum(0, dtype=torch.int64)
    kept = ((ranked & (in_rank <= cap_in)) | (~ranked & (neg_rank <= cap_neg))).any(1)
    return torch.sort(order[kept]).values


class _Reservoir:
    """Bottom-k over (key, uid) pairs."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.keys = torch.zeros(0, dtype=torch.float64)
        self.uids = torch.zeros(0, dtype=torch.long)

    def offer(self, keys: Tensor, uids: Tensor) -> None:
        if len(self.keys) >= self.cap:
            keep = keys < self.keys.max()
            keys, uids = keys[keep], uids[keep]
        if len(keys) == 0:
            return
        keys, uids = torch.cat([self.keys, keys]), torch.cat([self.uids, uids])
        if len(keys) > self.cap:
            index = torch.topk(keys, self.cap, largest=False).indices
            keys, uids = keys[index], uids[index]
        self.keys, self.uids = keys, uids


class TokenCollector(Sink):
    """Collect raw token embeddings for training concept vectors.

    Args:
        token_masks: per sample (global index of the text given to ``stream``),
            ``Bool[n_content, C]``: which content tokens lie in a span of each concept
            (a list, or packed masks: anything with a 2-D bool ``.data`` is kept as
            given). Only the streamed samples' masks are read, as they stream: a
            chunk's collector may hold just its own (``run_masks.SomeRows``).
        sample_labels: ``Bool[n_samples, C]`` sample-level labels.
        cap_in: in-concept tokens kept per concept.
        cap_neg: tokens of negative samples kept per concept.
        seed: the sample depends on it and on nothing else.
        layers: layers to collect (default: every streamed layer).
        sample_index: global sample index (row of ``token_masks``) of each
            streamed text; default: the i-th text is sample i.
    """

    def __init__(
        self,
        token_masks: Sequence[Bool[Tensor, "n_content C"]],
        sample_labels: Bool[Tensor, "n C"],
        cap_in: int = 2000,
        cap_neg: int = 20000,
        seed: int = 0,
        layers: list[int] | None = None,
        sample_index: list[int] | Tensor | None = None,
    ) -> None:
        labels = torch.as_tensor(np.asarray(sample_labels)).bool()
        if labels.ndim != 2:
            raise InputError(f"sample_labels: expected [n_samples, C], got {tuple(labels.shape)}")
        if len(token_masks) != labels.shape[0]:
            raise InputError(
                f"token_masks: {len(token_masks)} masks for {labels.shape[0]} rows of sample_labels"
            )
        packed = getattr(token_masks, "data", None)
        if isinstance(packed, Tensor) and packed.dtype == torch.bool and packed.ndim == 2:
            # packed masks (run_masks.PackedMasks): views made on access, none held
            if packed.shape[1] != labels.shape[1]:
                raise InputError(
                    f"token_masks: expected [n_content, {labels.shape[1]}] masks, "
                    f"got {packed.shape[1]} concept columns"
                )
            masks = token_masks
        else:
            masks = [  # bool tensors as they are: a run builds a collector per chunk
                m
                if isinstance(m, Tensor) and m.dtype == torch.bool
                else torch.as_tensor(np.asarray(m)).bool()
                for m in token_masks
            ]
            for i, m in enumerate(masks):
                if m.ndim != 2 or m.shape[1] != labels.shape[1]:
                    raise InputError(
                        f"token_masks[{i}]: expected [n_content, {labels.shape[1]}], "
                        f"got {tuple(m.shape)}"
                    )
        for name, cap in (("cap_in", cap_in), ("cap_neg", cap_neg)):
            if not isinstance(cap, int) or cap < 1:
                raise InputError(f"{name}: expected a positive int, got {cap!r}")
        self.token_masks, self.sample_labels = masks, labels
        self.cap_in, self.cap_neg, self.seed = cap_in, cap_neg, seed
        self.layers = list(layers) if layers is not None else None
        self.sample_index = None
        if sample_index is not None:
            index = torch.as_tensor(sample_index, dtype=torch.long).flatten()
            if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(masks)):
                raise InputError(f"sample_index: entries must lie in [0, {len(masks)})")
            if len(torch.unique(index)) != len(index):
                raise InputError("sample_index: a sample appears twice")
            self.sample_index = index

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        super().begin(n_samples, layers, d_model)
        if self.sample_index is not None and n_samples != len(self.sample_index):
            raise InputError(
                f"sample_index: {len(self.sample_index)} entries but {n_samples} texts are streamed"
            )
        if self.sample_index is None and n_samples != len(self.token_masks):
            raise InputError(
                f"token_masks: {len(self.token_masks)} masks but {n_samples} texts are streamed"
            )
        n_concepts = self.sample_labels.shape[1]
        self._in = [_Reservoir(self.cap_in) for _ in range(n_concepts)]
        self._neg = [_Reservoir(self.cap_neg) for _ in range(n_concepts)]
        self._slot_of: dict[int, int] = {}
        self._free: list[int] = []
        self._store = torch.zeros(len(layers), 0, d_model)
        self._store_uid = torch.zeros(0, dtype=torch.long)
        # each stored token's row of its sample's mask: result() needs no other masks,
        # so a collector may be given only the masks of the samples it streams
        self._store_concepts = torch.zeros(0, n_concepts, dtype=torch.bool)
        self.seen_ = torch.zeros(len(self.token_masks), dtype=torch.bool)  # samples streamed

    def _grow(self, needed: int) -> None:
        size = self._store.shape[1]
        new = max(needed, 2 * size, 1024)
        store = torch.zeros(self._store.shape[0], new, self._store.shape[2])
        store[:, :size] = self._store
        uids = torch.full((new,), -1, dtype=torch.long)
        uids[:size] = self._store_uid
        concepts = self._store_concepts.new_zeros(new, self._store_concepts.shape[1])
        concepts[:size] = self._store_concepts
        self._free.extend(range(new - 1, size - 1, -1))
        self._store, self._store_uid, self._store_concepts = store, uids, concepts

    def begin_batch(self, batch: TokenBatch) -> None:
        local = batch.sample_ids.cpu()
        global_ids = local if self.sample_index is None else self.sample_index[local]
        self.seen_[global_ids] = True
        ids = global_ids.tolist()
        lengths = batch.n_content.cpu().tolist()
        for s, n in zip(ids, lengths, strict=True):
            if self.token_masks[s].shape[0] != n:
                raise InputError(
                    f"token_masks[{s}]: has {self.token_masks[s].shape[0]} rows but the text has "
                    f"{n} content tokens (build masks from lens.content_offsets)"
                )
        uids = torch.cat(
            [(s << _POS_BITS) + torch.arange(n) for s, n in zip(ids, lengths, strict=True)]
        )
        keys = torch.from_numpy(token_keys(uids.numpy(), self.seed))
        inside = torch.cat([self.token_masks[s] for s in ids])
        negative = torch.cat(
            [(~self.sample_labels[s]).expand(n, -1) for s, n in zip(ids, lengths, strict=True)]
        )
        for c in range(len(self._in)):
            self._in[c].offer(keys[inside[:, c]], uids[inside[:, c]])
            self._neg[c].offer(keys[negative[:, c]], uids[negative[:, c]])
        kept = torch.unique(torch.cat([r.uids for r in self._in + self._neg]))
        old = self._store_uid[self._store_uid >= 0]
        for uid in old[~torch.isin(old, kept)].tolist():
            slot = self._slot_of.pop(uid)
            self._store_uid[slot] = -1
            self._free.append(slot)
        admitted = torch.nonzero(torch.isin(uids, kept)).flatten()
        if len(admitted) > len(self._free):
            self._grow(self._store.shape[1] + len(admitted) - len(self._free))
        slots = [self._free.pop() for _ in range(len(admitted))]
        for slot, uid in zip(slots, uids[admitted].tolist(), strict=True):
            self._slot_of[uid] = slot
        self._slots = torch.tensor(slots, dtype=torch.long)
        self._store_uid[self._slots] = uids[admitted]
        self._store_concepts[self._slots] = inside[admitted]
        self._admitted = admitted

    def on_layer(
        self, layer: int, resid: Float[Tensor, "batch pos d_model"], batch: TokenBatch
    ) -> None:
        if len(self._admitted) == 0:
            return
        tokens = batch.content(resid)[self._admitted.to(resid.device)]
        self._store[self._row(layer), self._slots] = tokens.float().cpu()

    def result(self) -> TokenSample:
        self._check_begun()
        used = torch.nonzero(self._store_uid >= 0).flatten()
        used = used[torch.argsort(self._store_uid[used])]
        uids = self._store_uid[used]
        sample_ids = uids >> _POS_BITS
        return TokenSample(
            layers=list(self.layers_),
            embeddings=self._store[:, used],  # indexing copies: no clone
            token_concepts=self._store_concepts[used],
            sample_labels=self.sample_labels[sample_ids],
            sample_ids=sample_ids,
        )

    def memory_tokens(self) -> int:
        """Tokens currently stored (bounded by C * (cap_in + cap_neg))."""
        return int((self._store_uid >= 0).sum())

    def state(self) -> dict[str, Any]:
        return {"stored": self.memory_tokens(), "capacity": self._store.shape[1]}

    # ------------------------------------------------------------- sharding
    def _stored_slots(self) -> tuple[Tensor, Tensor]:
        """Stored token uids (sorted) and their slots in the store."""
        used = torch.nonzero(self._store_uid >= 0).flatten()
        used = used[torch.argsort(self._store_uid[used])]
        return self._store_uid[used], used

    def _set_store(self, uids: Tensor, embeddings: Tensor, concepts: Tensor) -> None:
        """Make these tensors the store (taken as they are, not copied), full."""
        self._store, self._store_uid, self._store_concepts = embeddings, uids, concepts
        self._slot_of = dict(zip(uids.tolist(), range(len(uids)), strict=True))
        self._free = []

    def _config(self) -> dict[str, Any]:
        return {
            "cap_in": self.cap_in,
            "cap_neg": self.cap_neg,
            "seed": self.seed,
            "layers": list(self.layers_),
            "d_model": self.d_model_,
        }

    def merge(self, other: TokenCollector) -> TokenCollector:
        """Fold in a collector that streamed other samples of the same split (in place).

        Both must share masks, labels, caps, seed and layers; a token seen by
        both means the shards overlap and raises.
        """
        self._check_begun()
        other._check_begun()
        mine, theirs = self._config(), other._config()
        if mine != theirs:
            raise InputError(f"other: collector configured as {theirs}, this one as {mine}")
        if len(self.token_masks) != len(other.token_masks) or not torch.equal(
            self.sample_labels, other.sample_labels
        ):
            raise InputError("other: collects from different sample labels or masks")
        both = torch.nonzero(self.seen_ & other.seen_).flatten()
        if len(both):
            raise InputError(
                f"other: sample {int(both[0])} was streamed by both collectors (shards overlap)"
            )
        self.seen_ |= other.seen_
        for mine_r, theirs_r in zip(self._in + self._neg, other._in + other._neg, strict=True):
            mine_r.offer(theirs_r.keys, theirs_r.uids)
        kept = torch.unique(torch.cat([r.uids for r in self._in + self._neg]))
        # The merged store is written once, layer by layer, straight from both stores:
        # peak two stores plus one layer's rows (gathering, concatenating, filtering,
        # ordering and cloning held about five).
        parts = []
        for source in (self, other):
            uids, slots = source._stored_slots()
            keep = torch.isin(uids, kept)
            parts.append((source, uids[keep], slots[keep]))
        uids = torch.cat([p[1] for p in parts])
        order = torch.argsort(uids)
        at = torch.empty_like(order)
        at[order] = torch.arange(len(order))  # where each token lands in uid order
        store = self._store.new_empty(self._store.shape[0], len(uids), self._store.shape[2])
        concepts = self._store_concepts.new_empty(len(uids), self._store_concepts.shape[1])
        start = 0
        for source, part_uids, slots in parts:
            dest = at[start : start + len(part_uids)]
            for row in range(store.shape[0]):
                store[row, dest] = source._store[row, slots]
            concepts[dest] = source._store_concepts[slots]
            start += len(part_uids)
        self._set_store(uids[order], store, concepts)
        return self

    def state_dict(self) -> dict[str, Any]:
        """The collector's state: configuration (JSON values), the reservoirs'
        token uids per concept, and the stored tokens' embeddings and mask rows
        (``concepts``), in uid order."""
        self._check_begun()
        uids, used = self._stored_slots()
        state: dict[str, Any] = {
            **self._config(),
            "seen": self.seen_.clone(),
            "uids": uids,
            "embeddings": self._store[:, used],  # indexing copies: no clone
            "concepts": self._store_concepts[used],
        }
        for name, reservoirs in (("in", self._in), ("neg", self._neg)):
            for c, r in enumerate(reservoirs):
                state[f"{name}.{c}"] = r.uids.sort().values
        return state

    def load_state_dict(self, state: dict[str, Any]) -> TokenCollector:
        """Restore :meth:`state_dict` into a collector built with the same masks and labels."""
        config = {k: state[k] for k in ("cap_in", "cap_neg", "seed")}
        mine = {"cap_in": self.cap_in, "cap_neg": self.cap_neg, "seed": self.seed}
        if config != mine:
            raise InputError(f"state: collector configured as {config}, this one as {mine}")
        n_concepts = self.sample_labels.shape[1]
        Sink.begin(self, len(self.token_masks), state["layers"], state["d_model"])
        self._in, self._neg = [], []
        for name, cap, out in (("in", self.cap_in, self._in), ("neg", self.cap_neg, self._neg)):
            for c in range(n_concepts):
                r = _Reservoir(cap)
                uids = state[f"{name}.{c}"].long()
                r.keys, r.uids = torch.from_numpy(token_keys(uids.numpy(), self.seed)), uids
                out.append(r)
        if state["seen"].shape != (len(self.token_masks),):
            raise InputError(
                f"state: covers {len(state['seen'])} samples, not {len(self.token_masks)}"
            )
        if "concepts" not in state:
            raise InputError(
                "state: no 'concepts' (the stored tokens' mask rows): written by an earlier "
                "version of TokenCollector (a run: start it again with --overwrite)"
            )
        n_stored = len(state["uids"])
        if tuple(state["concepts"].shape) != (n_stored, n_concepts):
            raise InputError(
                f"state: 'concepts' has shape {tuple(state['concepts'].shape)}, "
                f"expected ({n_stored}, {n_concepts})"
            )
        self.seen_ = state["seen"].bool().clone()
        self._set_store(
            state["uids"].long().clone(),
            state["embeddings"].clone(),
            state["concepts"].bool().clone(),
        )
        return self
