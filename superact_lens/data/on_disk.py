"""A checked dataset folder's texts and spans, read back from their files when asked.

``read_dataset_folder(..., texts_on_disk=True)`` reads and checks every file once,
then keeps only what a run needs of every sample at all times: its path, labels,
split and a 64-bit digest of the file's bytes. The texts and spans are
:class:`FolderTexts` and :class:`FolderSpans`, sequences that read file ``i`` again
(and strip its tags again) when item ``i`` is asked for. A run asks chunk by
chunk, so the texts of 10^5-10^7 samples never sit in memory together (a
10^5-sample synthetic folder, ~100 characters per text: 8.1 MB loaded this way,
19.5 MB with texts and spans packed in memory).

A file whose bytes no longer match the digest raises :class:`DatasetError` naming
it: the text a run reads back is the one that was checked. The last
``cache_size`` items read are kept, so a chunk's texts and spans (asked for by the
token masks, then by the forward pass) are parsed once.
"""

from __future__ import annotations

import functools
import hashlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from superact_lens.data.packed import ListEquality
from superact_lens.errors import InputError

__all__ = ["FolderReader", "FolderSpans", "FolderTexts"]

Span = tuple[int, int, int]
Parse = Callable[[int, str], tuple[str, list[Span]]]


class FolderReader:
    """Reads row ``r`` of a checked folder: its bytes (``read_bytes(paths[r])``), the
    digest check, then ``parse(r, tagged_text) -> (text, spans)``.

    Args:
        read_bytes: a file's bytes by its path relative to the folder.
        paths: ``text_path`` of every row.
        digests: the 64-bit blake2b digest of every row's bytes when it was checked.
        lengths: every row's stripped text length in characters (what a run orders
            its batches by, known without reading the files again).
        parse: the loader's parse of one row (tags stripped, spans resolved).
        source: the dataset's name, for errors.
        cache_size: rows whose ``(text, spans)`` are kept after reading.
    """

    def __init__(
        self,
        read_bytes: Callable[[str], bytes],
        paths: Sequence[str],
        digests: array,
        lengths: array,
        parse: Parse,
        source: str,
        cache_size: int = 1024,
    ) -> None:
        for name, values in (("digests", digests), ("lengths", lengths)):
            if len(values) != len(paths):
                raise InputError(f"{name}: expected {len(paths)} entries, got {len(values)}")
        self._read_bytes, self.paths, self._digests = read_bytes, paths, digests
        self.lengths = (
            np.frombuffer(lengths, dtype=np.int64) if len(lengths) else np.zeros(0, np.int64)
        )
        self._parse, self.source, self._cache_size = parse, source, cache_size
        self.row = functools.lru_cache(maxsize=cache_size)(self._row)

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["row"]  # the cache: rebuilt empty
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.row = functools.lru_cache(maxsize=self._cache_size)(self._row)

    def _row(self, r: int) -> tuple[str, list[Span]]:
        from superact_lens.data.dataset import DatasetError

        rel = self.paths[r]
        where = f"metadata.csv row {r + 1} (file {rel})"
        try:
            raw = self._read_bytes(rel)
        except OSError as err:
            raise DatasetError(
                [f"{where}: unreadable since the dataset was read ({type(err).__name__}: {err})"],
                self.source,
            ) from None
        if digest(raw) != self._digests[r]:
            raise DatasetError(
                [f"{where}: changed since the dataset was read; read the dataset again"],
                self.source,
            )
        return self._parse(r, raw.decode("utf-8-sig"))

    def texts(self) -> FolderTexts:
        return FolderTexts(self)

    def spans(self) -> FolderSpans:
        return FolderSpans(self)


def digest(raw: bytes) -> int:
    """64-bit digest of a file's bytes (blake2b): a text read back must be the one checked."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


class _FolderField(ListEquality):
    """Item ``k`` is field ``_FIELD`` of ``reader.row(rows[k])`` (all rows by default)."""

    _FIELD: int

    def __init__(self, reader: FolderReader, rows: np.ndarray | None = None) -> None:
        self.reader = reader
        self._rows = np.arange(len(reader)) if rows is None else np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self.reader.row(int(r))[self._FIELD] for r in self._rows[k]]
        n = len(self._rows)
        i = int(k)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        return self.reader.row(int(self._rows[i]))[self._FIELD]

    def __iter__(self) -> Iterator[Any]:
        return (self[k] for k in range(len(self)))

    def known_lengths(self) -> np.ndarray:
        """The character length of each item's text, without reading the files."""
        return self.reader.lengths[self._rows]

    def take(self, indices: Sequence[int]) -> Any:
        """The items at ``indices``, still read from the folder (what ``select`` keeps)."""
        return type(self)(self.reader, self._rows[np.asarray(indices, dtype=np.int64)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, source={self.reader.source!r})"


class FolderTexts(_FolderField):
    """The stripped texts of a checked folder, read from their files when asked."""

    _FIELD = 0


class FolderSpans(_FolderField):
    """The ``(start, end, concept)`` spans of a checked folder, read when asked. They
    were checked against their texts when the folder was read (``TextDataset`` does
    not read them all again)."""

    _FIELD = 1
