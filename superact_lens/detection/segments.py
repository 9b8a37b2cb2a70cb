"""Per-sample reductions of concatenated token scores (segment operations).

Token scores of all samples are concatenated along one axis (the token axis,
``dim``) and ``offsets`` (length ``n_samples + 1``) says where each sample
starts, as in :class:`superact_lens.scores.TokenScores`. Every function here
reduces each sample's tokens to one value, keeping the other axes.

Samples with zero content tokens have no max, mean, last or random token: the
reductions return ``-inf`` for them, so any finite threshold classifies them
as negative ("no evidence of the concept") and nothing crashes downstream.
"""

from __future__ import annotations

import warnings

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.errors import InputError, InputTypeError

__all__ = [
    "segment_ids",
    "segment_max",
    "segment_mean",
    "segment_last",
    "segment_random",
    "segment_any",
    "segment_count",
    "padded_segments",
]


def _check(values: Tensor, offsets: Tensor, dim: int) -> int:
    if not isinstance(values, Tensor):
        raise InputTypeError(f"values must be a torch.Tensor, got {type(values).__name__}")
    if not isinstance(offsets, Tensor) or offsets.ndim != 1 or len(offsets) < 1:
        raise InputError("offsets must be a 1-D tensor of length n_samples + 1")
    dim = dim % values.ndim
    if int(offsets[-1]) != values.shape[dim] or int(offsets[0]) != 0:
        raise InputError(
            f"offsets must start at 0 and end at values.shape[{dim}]={values.shape[dim]}, "
            f"got {int(offsets[0])}..{int(offsets[-1])}"
        )
    return dim


def segment_ids(offsets: Int[Tensor, " n_plus_1"]) -> Int[Tensor, " n_tokens"]:
    """Sample index of every token, from ``offsets``."""
    lengths = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(len(lengths), device=offsets.device), lengths)


def segment_max(
    values: Float[Tensor, "*pre n_tokens *post"], offsets: Int[Tensor, " n_plus_1"], dim: int = 1
) -> Float[Tensor, "*pre n_samples *post"]:
    """Max of each sample's tokens along ``dim``; ``-inf`` for empty samples."""
    dim = _check(values, offsets, dim)
    n = len(offsets) - 1
    shape = list(values.shape)
    shape[dim] = n
    out = torch.full(shape, float("-inf"), dtype=values.dtype, device=values.device)
    with warnings.catch_warnings():  # index_reduce_ is "beta" but stable in practice
        warnings.simplefilter("ignore", UserWarning)
        out.index_reduce_(dim, segment_ids(offsets), values, "amax", include_self=True)
    return out


def segment_count(offsets: Int[Tensor, " n_plus_1"]) -> Int[Tensor, " n_samples"]:
    """Number of tokens of each sample."""
    return offsets[1:] - offsets[:-1]


def segment_mean(
    values: Float[Tensor, "*pre n_tokens *post"], offsets: Int[Tensor, " n_plus_1"], dim: int = 1
) -> Float[Tensor, "*pre n_samples *post"]:
    """Mean of each sample's tokens along ``dim`` (summed in float64); ``-inf`` if empty."""
    dim = _check(values, offsets, dim)
    n = len(offsets) - 1
    shape = list(values.shape)
    shape[dim] = n
    sums = torch.zeros(shape, dtype=torch.float64, device=values.device)
    sums.index_add_(dim, segment_ids(offsets), values.to(torch.float64))
    lengths = segment_count(offsets)
    view = [1] * values.ndim
    view[dim] = n
    lengths = lengths.view(view)
    mean = (sums / lengths.clamp(min=1)).to(values.dtype)
    return torch.where(lengths > 0, mean, torch.full_like(mean, float("-inf")))


def _gather_tokens(
    values: Tensor, offsets: Tensor, dim: int, index: Tensor, valid: Tensor
) -> Tensor:
    """Pick token ``index[i]`` for every sample ``i`` (``-inf`` where not ``valid``)."""
    picked = values.index_select(dim, index.clamp(min=0, max=max(values.shape[dim] - 1, 0)))
    view = [1] * values.ndim
    view[dim] = len(index)
    return torch.where(valid.view(view), picked, torch.full_like(picked, float("-inf")))


def segment_last(
    values: Float[Tensor, "*pre n_tokens *post"], offsets: Int[Tensor, " n_plus_1"], dim: int = 1
) -> Float[Tensor, "*pre n_samples *post"]:
    """Score of each sample's last content token; ``-inf`` for empty samples."""
    dim = _check(values, offsets, dim)
    lengths = segment_count(offsets)
    if values.shape[dim] == 0:
        return segment_max(values, offsets, dim)
    return _gather_tokens(values, offsets, dim, offsets[1:] - 1, lengths > 0)


def segment_random(
    values: Float[Tensor, "*pre n_tokens *post"],
    offsets: Int[Tensor, " n_plus_1"],
    dim: int = 1,
    seed: int = 0,
) -> Float[Tensor, "*pre n_samples *post"]:
    """Score of one uniformly random content token per sample (same token at every
    layer and column); deterministic given ``seed``. ``-inf`` for empty samples."""
    dim = _check(values, offsets, dim)
    lengths = segment_count(offsets)
    if values.shape[dim] == 0:
        return segment_max(values, offsets, dim)
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.rand(len(lengths), generator=gen, dtype=torch.float64)
    pick = torch.minimum((u * lengths.cpu()).long(), (lengths.cpu() - 1).clamp(min=0))
    index = offsets[:-1] + pick.to(offsets.device)
    return _gather_tokens(values, offsets, dim, index, lengths > 0)


def segment_any(
    mask: Bool[Tensor, " n_tokens *post"], offsets: Int[Tensor, " n_plus_1"]
) -> Bool[Tensor, " n_samples *post"]:
    """Whether each sample has at least one True token (token axis first)."""
    _check(mask, offsets, 0)
    out = torch.zeros((len(offsets) - 1, *mask.shape[1:]), dtype=torch.float32, device=mask.device)
    out.index_add_(0, segment_ids(offsets), mask.to(torch.float32))
    return out > 0


def padded_segments(
    values: Float[Tensor, "*pre n_tokens *post"],
    offsets: Int[Tensor, " n_plus_1"],
    dim: int = 1,
    fill: float = float("-inf"),
) -> Float[Tensor, "*pre n_samples t_max *post"]:
    """Pad samples to the longest one: the token axis becomes ``[n_samples, t_max]``."""
    dim = _check(values, offsets, dim)
    lengths = segment_count(offsets)
    n = len(lengths)
    t_max = int(lengths.max()) if n else 0
    seg = segment_ids(offsets)
    pos = torch.arange(values.shape[dim], device=values.device) - offsets[:-1][seg]
    flat = seg * max(t_max, 1) + pos
    shape = list(values.shape)
    shape[dim] = n * max(t_max, 1)
    out = torch.full(shape, fill, dtype=values.dtype, device=values.device)
    out.index_copy_(dim, flat, values)
    new_shape = list(values.shape[:dim]) + [n, max(t_max, 1)] + list(values.shape[dim + 1 :])
    return out.view(new_shape)[(slice(None),) * (dim + 1) + (slice(0, t_max),)]
