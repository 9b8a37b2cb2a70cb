"""Per-sample texts and spans stored in a few flat buffers instead of 10^5 Python objects.

A dataset held as ``list[str]`` and ``list[list[tuple]]`` costs a string object per
text, a list per sample and a tuple per span (about 200 bytes of overhead per
sample), and the small objects scatter over the allocator's arenas, which then stay
resident after the temporaries of the load around them are freed: measured on a
10^5-sample synthetic folder, ~76 MB of RSS for ~15 MB of data. These sequences
keep one UTF-8 buffer (or one integer array) plus an end offset per sample and
build each item on access. They read like the lists they replace (indexing,
slicing to a list, iteration, ``==`` against any sequence) and grow by ``append``.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from superact_lens.errors import InputTypeError

__all__ = ["PackedSpans", "PackedStrings"]

Span = tuple[int, int, int]


class ListEquality(Sequence[Any]):
    """``==`` against any sequence, item by item, like the list a sequence stands in
    for (and, like a list, no hash). Shared with :mod:`superact_lens.data.on_disk`."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


class _Packed(ListEquality):
    """Shared by both: item ``i`` lies in ``[ends[i - 1], ends[i])`` of the buffer."""

    _ends: array

    def __len__(self) -> int:
        return len(self._ends)

    def _bounds(self, i: Any) -> tuple[int, int]:
        n = len(self._ends)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        return (self._ends[i - 1] if i else 0), self._ends[i]

    def _item(self, i: int) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return (self._item(i) for i in range(len(self)))

    def __repr__(self) -> str:
        head = ", ".join(repr(self._item(i)) for i in range(min(3, len(self))))
        more = ", ..." if len(self) > 3 else ""
        return f"{type(self).__name__}([{head}{more}], n={len(self)})"


class PackedStrings(_Packed, Sequence[str]):
    """``str`` items stored as one UTF-8 buffer and an end offset per item."""

    def __init__(self, strings: Iterable[str] = ()) -> None:
        self._buf = bytearray()
        self._ends = array("q")
        for s in strings:
            self.append(s)

    def append(self, s: str) -> None:
        if not isinstance(s, str):
            raise InputTypeError(f"PackedStrings: expected str, got {type(s).__name__}")
        self._buf += s.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._buf))

    def _item(self, i: int) -> str:
        lo, hi = self._bounds(i)
        return self._buf[lo:hi].decode("utf-8", "surrogatepass")

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        return self._item(i)

    def take(self, rows: Iterable[int] | np.ndarray) -> PackedStrings:
        """The items at ``rows``, in that order, packed."""
        return PackedStrings(self._item(int(j)) for j in np.asarray(rows).ravel())

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer and the offsets."""
        return len(self._buf) + self._ends.itemsize * len(self._ends)


class PackedSpans(_Packed, Sequence[list[Span]]):
    """Per sample, a list of ``(start, end, concept)`` spans, stored as one int64 array."""

    def __init__(self, spans: Iterable[Iterable[Span]] = ()) -> None:
        self._flat = array("q")  # start, end, concept of every span, sample by sample
        self._ends = array("q")  # spans before the end of each sample
        for sample in spans:
            self.append(sample)

    def append(self, sample: Iterable[Span]) -> None:
        n = len(self._flat)
        for span in sample:
            values = tuple(span)
            if len(values) != 3:
                del self._flat[n:]
                raise InputTypeError(f"PackedSpans: expected (start, end, concept), got {span!r}")
            self._flat.extend(int(v) for v in values)
        self._ends.append(len(self._flat) // 3)

    def _item(self, i: int) -> list[Span]:
        lo, hi = self._bounds(i)
        flat = self._flat[3 * lo : 3 * hi]
        return [(flat[k], flat[k + 1], flat[k + 2]) for k in range(0, len(flat), 3)]

    @overload
    def __getitem__(self, i: int) -> list[Span]: ...
    @overload
    def __getitem__(self, i: slice) -> list[list[Span]]: ...
    def __getitem__(self, i: int | slice) -> list[Span] | list[list[Span]]:
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        return self._item(i)

    def take(self, rows: Iterable[int] | np.ndarray) -> PackedSpans:
        """The samples at ``rows``, in that order, packed."""
        return PackedSpans(self._item(int(j)) for j in np.asarray(rows).ravel())

    @property
    def nbytes(self) -> int:
        """Bytes of the span array and the offsets."""
        return self._flat.itemsize * (len(self._flat) + len(self._ends))
