"""Exact quantiles of a multiset streamed in chunks, in memory independent of its size.

:func:`streamed_quantiles` returns, for every row, the linearly interpolated
quantiles of the row's multiset bit for bit as
:func:`superact_lens.detection.calibration.linear_quantiles` (= ``torch.quantile``)
on the concatenation of the chunks, without ever holding the concatenation.

How: radix select on the order-preserving integer image of the floats (the
sign-flip trick: flip the 31 (63) magnitude bits of negative numbers, read as a
signed integer the bits then sort like the floats). The chunks are read once
per digit of the key: the first read counts ``m`` per row and histograms the top
digit; its cumulative counts say which bucket holds each target rank
(``floor`` / ``ceil`` of ``q * (m - 1)``, computed exactly as
``linear_quantiles`` does). Each later read histograms the next digit of only
the entries whose key starts with the bucket found so far. After the last
digit the key, hence the order statistic, is known exactly; the two order
statistics are interpolated with the same ``torch.lerp`` call.

Cost with ``bits_per_pass=11``: float32 keys take 3 reads (11/11/10 bits),
float64 keys 6. Memory: ``rows * 2**bits`` counts in the first read, then
``rows * S * 2**bits`` with ``S <= 2 * Q`` the distinct key prefixes a row's
target ranks still have (usually ``Q``: floor and ceil ranks share a prefix
until the last digit), plus what one chunk needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.errors import InputError, InputTypeError

__all__ = ["streamed_quantiles"]

Chunks = Callable[[], Iterable[tuple[Tensor, Tensor]]]

# float dtype -> (integer dtype of the same width, number of bits)
_INT_VIEW = {torch.float32: (torch.int32, 32), torch.float64: (torch.int64, 64)}


def streamed_quantiles(
    chunks: Chunks,
    n_rows: int,
    qs: Sequence[float] | Float[Tensor, " Q"],
    bits_per_pass: int = 11,
) -> Float[Tensor, "rows Q"]:
    """Per row, the ``qs`` quantiles of the entries the chunks keep, exactly.

    Args:
        chunks: called once per read, returns a fresh iterable of
            ``(values [n_rows, m_j], keep [n_rows, m_j] bool)``; row ``r``'s
            multiset is ``values[r][keep[r]]`` over all chunks. Every call must
            yield the same data (checked through the counts). Values are
            float32 or float64 (one dtype throughout); kept NaNs are refused.
        n_rows: number of rows.
        qs: quantile levels in [0, 1]; as in ``linear_quantiles`` they are
            taken as ``torch.as_tensor(qs)`` and cast to the values' dtype.
        bits_per_pass: key bits resolved per read (1..16); reads =
            ``ceil(32 / bits)`` for float32, ``ceil(64 / bits)`` for float64.

    Returns ``[n_rows, Q]`` in the values' dtype; NaN for rows with no entry.
    ``-0.0`` and ``+0.0`` count as equal (as in ``linear_quantiles``, where a
    zero quantile's sign is not specified); a zero order statistic is ``+0.0``.
    """
    if not callable(chunks):
        raise InputTypeError(
            f"chunks: expected a callable returning chunks, got {type(chunks).__name__}"
        )
    if not isinstance(n_rows, int) or n_rows < 0:
        raise InputError(f"n_rows: expected a non-negative int, got {n_rows!r}")
    if not isinstance(bits_per_pass, int) or not 1 <= bits_per_pass <= 16:
        raise InputError(f"bits_per_pass: expected an int in [1, 16], got {bits_per_pass!r}")
    q = torch.as_tensor(qs)
    q = q if q.is_floating_point() else q.to(torch.get_default_dtype())
    if q.ndim != 1 or not bool(((q >= 0) & (q <= 1)).all()):
        raise InputError(f"qs: expected a 1-D list of quantile levels in [0, 1], got {qs!r}")

    # Read 1: dtype, m per row, histogram of the top digit.
    dtype: torch.dtype | None = None
    n_bits, widths, hist = 0, [0], torch.zeros(0, dtype=torch.long)
    for values, keep in _checked(chunks, n_rows, dtype):
        if dtype is None:
            dtype, n_bits = values.dtype, _INT_VIEW[values.dtype][1]
            widths = _digit_widths(n_bits, bits_per_pass)
            hist = torch.zeros(n_rows, 1 << widths[0], dtype=torch.long)
        key = _keys(values)
        top = (key >> (n_bits - widths[0])) + (1 << (widths[0] - 1))  # in [0, 2**width)
        _count(hist, top, keep, _row_base(hist, 0, top.dtype))
    if dtype is None:
        raise InputError("chunks: yielded no chunk (cannot tell the values' dtype)")
    m = hist.sum(1)
    q = q.to(dtype)
    target, groups = _target_ranks(q, m)  # [rows, 2Q] int64, rows with m == 0 get rank 0
    prefix, rest = _locate(hist.unsqueeze(1), torch.zeros_like(target), target)
    prefix = prefix - (1 << (widths[0] - 1))  # the top digit of the key, signed

    # Reads 2..: per (row, distinct prefix) histogram of the next digit.
    shift = n_bits - widths[0]
    for width in widths[1:]:
        never = 1 << (n_bits - shift - 1)  # one past the largest prefix ``key >> shift``
        slot_prefix, slot_of = _slots(prefix, never)  # [rows, S], [rows, 2Q]
        n_slots = slot_prefix.shape[1]
        hist = torch.zeros(n_rows, n_slots, 1 << width, dtype=torch.long)
        seen = torch.zeros(n_rows, dtype=torch.long)
        for values, keep in _checked(chunks, n_rows, dtype):
            seen += keep.sum(1)
            key = _keys(values)
            high = (key >> shift).masked_fill_(~keep, never)  # entries not kept match no slot
            digit = (key >> (shift - width)) & ((1 << width) - 1)
            for s in range(n_slots):
                hit = high == slot_prefix[:, s : s + 1].to(key.dtype)
                _count(hist, digit, hit, _row_base(hist, s, key.dtype))
        if not torch.equal(seen, m):
            raise InputError("chunks: a later call yielded different entries than the first")
        digit_at, rest = _locate(hist, slot_of, rest)
        prefix = (prefix << width) + digit_at
        shift -= width

    stats = _from_keys(prefix, dtype)  # [rows, 2Q] order statistics
    return _interpolate(stats, q, m, groups, dtype)


def _checked(
    chunks: Chunks, n_rows: int, dtype: torch.dtype | None
) -> Iterable[tuple[Tensor, Tensor]]:
    """One read of ``chunks()``, each item validated; all values must share one
    dtype (``dtype``, or the first item's)."""
    for i, part in enumerate(chunks()):
        if not isinstance(part, tuple) or len(part) != 2:
            raise InputTypeError(f"chunks: item {i} must be a (values, keep) pair")
        values, keep = part
        if not isinstance(values, Tensor) or not isinstance(keep, Tensor):
            raise InputTypeError(f"chunks: item {i} must hold two tensors")
        if values.dtype not in _INT_VIEW:
            raise InputTypeError(f"chunks: values must be float32 or float64, got {values.dtype}")
        if dtype is None:
            dtype = values.dtype
        elif values.dtype != dtype:
            raise InputError(f"chunks: values changed dtype from {dtype} to {values.dtype}")
        if keep.dtype != torch.bool or values.ndim != 2 or keep.shape != values.shape:
            raise InputError(
                f"chunks: item {i} must be values [n_rows, m] with a bool keep of the same shape, "
                f"got {tuple(values.shape)} and {keep.dtype} {tuple(keep.shape)}"
            )
        if values.shape[0] != n_rows:
            raise InputError(f"chunks: item {i} has {values.shape[0]} rows, expected {n_rows}")
        values, keep = values.detach().cpu(), keep.cpu()
        if bool((torch.isnan(values) & keep).any()):
            raise InputError(f"chunks: item {i} keeps NaN values (quantiles of NaN are undefined)")
        yield values, keep


def _digit_widths(n_bits: int, bits: int) -> list[int]:
    """Split ``n_bits`` into ``ceil(n_bits / bits)`` digits, as even as possible, widest first."""
    n = -(-n_bits // bits)
    return [n_bits // n + (1 if i < n_bits % n else 0) for i in range(n)]


def _keys(values: Tensor) -> Tensor:
    """Integer keys (same width) that sort like the float values, ``-0.0`` as ``+0.0``:
    flip the magnitude bits of negative numbers (the sign-flip trick)."""
    int_dtype, n_bits = _INT_VIEW[values.dtype]
    b = (values + 0.0).view(int_dtype)  # a copy; -0.0 + 0.0 == +0.0 in IEEE arithmetic
    b ^= (b >> (n_bits - 1)) & ((1 << (n_bits - 1)) - 1)  # arithmetic shift: all ones if negative
    return b


def _from_keys(key: Tensor, dtype: torch.dtype) -> Tensor:
    int_dtype, n_bits = _INT_VIEW[dtype]
    b = key.to(int_dtype)
    b ^= (b >> (n_bits - 1)) & ((1 << (n_bits - 1)) - 1)
    return b.view(dtype)


def _row_base(hist: Tensor, slot: int, dtype: torch.dtype) -> Tensor:
    """``[rows, 1]`` flat offset of ``hist[row, slot]`` (``hist`` is ``[rows, bins]`` or
    ``[rows, S, bins]``), as ``dtype`` when it fits (int32 keys stay int32)."""
    n_slots = hist.shape[1] if hist.ndim == 3 else 1
    base = (torch.arange(hist.shape[0]).unsqueeze(1) * n_slots + slot) * hist.shape[-1]
    return base.to(dtype) if hist.numel() < 2**31 else base


def _count(hist: Tensor, digit: Tensor, where: Tensor, base: Tensor) -> None:
    """Add one to ``hist`` at flat index ``base[row] + digit`` for every ``where`` entry."""
    index = digit + base
    if where.numel() >= hist.numel():  # dense: one bincount, the misses in a spare last bin
        index.masked_fill_(~where, hist.numel())
        hist.view(-1).add_(torch.bincount(index.view(-1), minlength=hist.numel() + 1)[:-1])
    else:
        index = index[where]
        hist.view(-1).index_add_(0, index, torch.ones(1, dtype=hist.dtype).expand(len(index)))


def _target_ranks(q: Tensor, m: Tensor) -> tuple[Tensor, list[tuple[int, Tensor, Tensor]]]:
    """The floor and ceil ranks of every row, ``[rows, 2Q]``, computed with
    ``linear_quantiles``' arithmetic (``q * (m - 1)`` in the values' dtype, m a
    Python int), and the rows grouped by ``m`` with each group's weights."""
    n_q = len(q)
    target = torch.zeros(len(m), 2 * n_q, dtype=torch.long)
    groups = []
    for size in torch.unique(m).tolist():
        if size == 0:
            continue
        ranks = q * (size - 1)
        below = ranks.long()
        above = ranks.ceil().long()
        weights = ranks - below
        rows = torch.nonzero(m == size).flatten()
        target[rows] = torch.cat([below, above])
        groups.append((size, rows, weights))
    return target, groups


def _locate(hist: Tensor, slot: Tensor, rank: Tensor) -> tuple[Tensor, Tensor]:
    """For each (row, target): the bucket holding ``rank`` in histogram
    ``hist[row, slot]`` and the rank left within that bucket."""
    n_rows = hist.shape[0]
    h = hist[torch.arange(n_rows).unsqueeze(1), slot]  # [rows, T, bins]
    cum = h.cumsum(-1)
    bucket = torch.searchsorted(cum, rank.unsqueeze(-1), right=True).squeeze(-1)
    bucket = bucket.clamp(max=h.shape[-1] - 1)  # rows with m == 0 (rank 0 of nothing)
    before = cum.gather(-1, bucket.unsqueeze(-1)).squeeze(-1) - h.gather(
        -1, bucket.unsqueeze(-1)
    ).squeeze(-1)
    return bucket, rank - before


def _slots(prefix: Tensor, never: int) -> tuple[Tensor, Tensor]:
    """Distinct prefixes per row, ``slot_prefix [rows, S]`` (unused slots hold
    ``never``, a value no prefix takes), and each target's slot ``[rows, T]``
    (targets with equal prefix share a slot)."""
    sorted_p, order = prefix.sort(dim=1)
    new = torch.ones_like(sorted_p, dtype=torch.bool)
    new[:, 1:] = sorted_p[:, 1:] != sorted_p[:, :-1]
    slot_sorted = new.long().cumsum(1) - 1
    n_slots = int(slot_sorted.max()) + 1 if prefix.numel() else 1
    slot_prefix = torch.full((prefix.shape[0], n_slots), never, dtype=torch.long)
    slot_prefix.scatter_(1, slot_sorted, sorted_p)
    slot_of = torch.empty_like(slot_sorted).scatter_(1, order, slot_sorted)
    return slot_prefix, slot_of


def _interpolate(
    stats: Tensor,
    q: Tensor,
    m: Tensor,
    groups: list[tuple[int, Tensor, Tensor]],
    dtype: torch.dtype,
) -> Tensor:
    """``lerp`` of the floor / ceil order statistics, called as ``linear_quantiles``
    calls it (values ``[rows, Q]``, weights ``[Q]`` expanded), per group of equal m."""
    n_q = len(q)
    out = torch.full((len(m), n_q), float("nan"), dtype=dtype)
    for _, rows, weights in groups:
        v_below, v_above = stats[rows, :n_q].contiguous(), stats[rows, n_q:].contiguous()
        out[rows] = torch.lerp(v_below, v_above, weights.expand_as(v_below))
    return out
