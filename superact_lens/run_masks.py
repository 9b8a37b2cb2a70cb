"""The token masks of a run's dataset, packed: one bool tensor and one offsets vector.

A run needs, for every sample, which of its content tokens lie in each concept's
span (``Bool[n_content, C]``). Held as one small tensor per sample, plus the
character offsets they are computed from, that costs about a kilobyte of object
overhead per sample (~120 MB at 10^5 samples) for a few bytes of data.
:class:`PackedMasks` keeps the same masks in one ``[n_tokens, C]`` tensor and
an ``[n + 1]`` offsets vector, built block by block (the offsets of a block are
dropped once its masks are packed); ``masks[i]`` is a view of sample ``i``'s rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from superact_lens.data import token_masks
from superact_lens.scores import segment_positions

__all__ = ["PackedMasks", "SomeRows", "text_masks"]

_BLOCK = 1024  # texts tokenised at once while packing


class PackedMasks(Sequence[Tensor]):
    """Per-sample token masks ``[n_content, C]`` stored as one ``[n_tokens, C]`` tensor."""

    def __init__(self, data: Bool[Tensor, "T C"], offsets: Int[Tensor, " n_plus_1"]) -> None:
        if data.ndim != 2 or offsets.ndim != 1 or int(offsets[-1]) != data.shape[0]:
            raise ValueError("PackedMasks: offsets must be 1-D and end at data.shape[0]")
        self.data, self.offsets = data, offsets

    @classmethod
    def from_list(cls, masks: Sequence[Tensor], n_concepts: int) -> PackedMasks:
        offsets = torch.zeros(len(masks) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor([len(m) for m in masks], dtype=torch.long), 0)
        data = (
            torch.cat([torch.as_tensor(m).bool().reshape(-1, n_concepts) for m in masks])
            if masks
            else torch.zeros(0, n_concepts, dtype=torch.bool)
        )
        return cls(data, offsets)

    @classmethod
    def from_rows(
        cls, masks: PackedMasks, rows: Sequence[int] | np.ndarray | Tensor
    ) -> PackedMasks:
        """The masks of samples ``rows`` of ``masks``, packed in that order (gathered
        block by block: one index of every token would be 8 bytes per mask row)."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        lengths = masks.offsets[rows + 1] - masks.offsets[rows]
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        data = masks.data.new_empty(int(offsets[-1]), masks.data.shape[1])
        for start in range(0, len(rows), _BLOCK):
            end = min(start + _BLOCK, len(rows))
            data[int(offsets[start]) : int(offsets[end])] = masks.stack(rows[start:end])
        return cls(data, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def stack(self, rows: Sequence[int] | np.ndarray | Tensor) -> Bool[Tensor, "n_tokens C"]:
        """The masks of samples ``rows``, concatenated in that order."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        starts = self.offsets[rows]
        return self.data[segment_positions(starts, self.offsets[rows + 1] - starts)]


class SomeRows(Sequence[Tensor]):
    """The masks of some of ``n`` samples, indexed like all ``n``: sample ``rows[k]``
    has ``masks[k]``; asking for any other sample raises. What one chunk's
    :class:`~superact_lens.sinks.TokenCollector` reads: its own samples' masks only."""

    def __init__(self, masks: PackedMasks, rows: Sequence[int], n: int) -> None:
        if len(masks) != len(rows):
            raise ValueError(f"SomeRows: {len(masks)} masks for {len(rows)} rows")
        self.data = masks.data  # the collector checks the concept columns on it
        self._masks, self._n = masks, n
        self._at = {int(r): k for k, r in enumerate(rows)}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        k = self._at.get(int(i))
        if k is None:
            raise IndexError(f"sample {int(i)}: its masks are not among these {len(self._at)}")
        return self._masks[k]


def text_masks(
    lens: Any, dataset: Any, rows: Sequence[int] | np.ndarray | None = None
) -> PackedMasks:
    """:func:`superact_lens.data.token_masks` of the texts at ``rows`` (default: every
    text), in that order, packed block by block."""
    texts, spans = dataset.texts, dataset.spans
    n_concepts = dataset.n_concepts
    rows = range(len(texts)) if rows is None else [int(i) for i in np.asarray(rows).ravel()]
    parts: list[Tensor] = []
    lengths: list[int] = []
    for start in range(0, len(rows), _BLOCK):
        block_rows = rows[start : start + _BLOCK]
        offsets = lens.content_offsets([texts[i] for i in block_rows])
        block = token_masks([spans[i] for i in block_rows], offsets, n_concepts)
        lengths += [len(m) for m in block]
        parts.append(torch.cat(block) if block else torch.zeros(0, n_concepts, dtype=torch.bool))
    offsets_all = torch.zeros(len(rows) + 1, dtype=torch.long)
    offsets_all[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
    data = torch.cat(parts) if parts else torch.zeros(0, n_concepts, dtype=torch.bool)
    return PackedMasks(data, offsets_all)
