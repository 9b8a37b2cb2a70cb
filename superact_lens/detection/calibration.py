"""Vectorised calibration kernels shared by every detector.

Two problems recur, each over many independent *rows* (a row is one
(concept, candidate column, layer) combination):

1. SuperActivator grid: for a few thresholds per row (one per sparsity N),
   count the positive samples and all samples whose aggregate exceeds each
   threshold -> precision / recall / F1 for the whole N grid at once.
   :func:`count_above` does it with one ``searchsorted`` into the row's sorted
   thresholds and a ``bincount`` (O(n log N) per row, no per-threshold pass).
2. Exact best-F1 threshold: among all thresholds that separate the sorted
   sample aggregates, pick the one with the highest F1.
   :func:`best_f1_threshold` sorts each row once and reads TP/FP for every cut
   off a cumulative sum.

Decision rule everywhere: predict positive iff ``aggregate > threshold``
(strict). Aggregates of empty samples are ``-inf`` and are never positive.

Quantile convention: ``torch.quantile`` with linear interpolation (numpy's
default "linear" method). :func:`linear_quantiles` reproduces it bit for bit
with a partial selection instead of a sort; the plain-loop reference in the
tests calls ``torch.quantile`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.errors import InputError

__all__ = [
    "DEFAULT_N_GRID",
    "quantile_levels",
    "superact_thresholds",
    "linear_quantiles",
    "count_above",
    "count_above_grouped",
    "count_above_native",
    "f1_from_counts",
    "best_f1_threshold",
    "best_f1_threshold_sorted",
    "select_best",
]

#: Sparsity grid N (percent of in-concept calibration activations kept above
#: the threshold), as in the reference code.
DEFAULT_N_GRID: tuple[float, ...] = (2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

_CHUNK = 1 << 22  # elements per chunk in row-batched kernels (bounds memory)


def quantile_levels(n_grid: Sequence[float]) -> Float[Tensor, " N"]:
    """Quantile levels ``1 - N/100`` for a sparsity grid given in percent."""
    levels = [1.0 - float(n) / 100.0 for n in n_grid]
    if not levels or any(not (0.0 <= q <= 1.0) for q in levels):
        raise InputError(f"n_grid must be non-empty percentages in [0, 100], got {list(n_grid)}")
    return torch.tensor(levels)


def linear_quantiles(x: Float[Tensor, "rows m"], q: Float[Tensor, " N"]) -> Float[Tensor, "rows N"]:
    """``torch.quantile(x, q, dim=-1)`` (linear interpolation), bit for bit, without
    a full sort: only the order statistics at the needed ranks are selected
    (``numpy.partition``), then interpolated with the same arithmetic as torch
    (``rank = q * (m - 1)``, ``lerp(x_(floor), x_(ceil), rank - floor)``).
    ``m`` must be > 0; NaN inputs are not supported.
    """
    m = x.shape[-1]
    q = q.to(x.dtype)
    ranks = q * (m - 1)
    below = ranks.long()
    above = ranks.ceil().long()
    weights = ranks - below
    kth = torch.unique(torch.cat([below, above])).numpy()
    part = torch.from_numpy(np.partition(x.detach().cpu().numpy(), kth, axis=-1))
    v_below, v_above = part[:, below], part[:, above]
    return torch.lerp(v_below, v_above, weights.expand_as(v_below)).to(x.device)


def superact_thresholds(
    in_scores: Float[Tensor, "layers m cols"], n_grid: Sequence[float]
) -> Float[Tensor, "cols layers N"]:
    """``tau(N) = Quantile_{1-N/100}`` of the in-concept scores, for every layer,
    candidate column and N at once. ``m == 0`` (no in-concept token) gives NaN."""
    q = quantile_levels(n_grid).to(in_scores.dtype)
    n_layers, m, cols = in_scores.shape
    if m == 0:
        return torch.full((cols, n_layers, len(q)), float("nan"), dtype=in_scores.dtype)
    rows = in_scores.permute(2, 0, 1).reshape(cols * n_layers, m)  # [K*L, m]
    return linear_quantiles(rows, q).view(cols, n_layers, len(q))


def count_above(
    agg: Float[Tensor, "rows n"], tau: Float[Tensor, "rows N"], pos: Bool[Tensor, "rows n"]
) -> tuple[Float[Tensor, "rows N"], Float[Tensor, "rows N"]]:
    """For every row and threshold: (#positive samples with agg > tau, #samples with agg > tau).

    Thresholds need not be sorted; NaN thresholds are treated as ``+inf`` (no
    sample above); NaN aggregates are never above. Returned as float64 counts.
    """
    tp, pp = count_above_grouped(agg.unsqueeze(1), tau.unsqueeze(1), pos)
    return tp.squeeze(1), pp.squeeze(1)


def count_above_grouped(
    agg: Float[Tensor, "G R n"], tau: Float[Tensor, "G R N"], pos: Bool[Tensor, "G n"]
) -> tuple[Float[Tensor, "G R N"], Float[Tensor, "G R N"]]:
    """:func:`count_above` for groups of rows sharing one label vector (e.g. a
    concept's layers and candidate columns); ``agg`` may be a broadcast view.

    Kernel: with the row's thresholds sorted, a sample's bin is the number of
    thresholds strictly below its aggregate (so ``v > tau_sorted[j]`` iff
    ``j < bin``), accumulated as a small-int sum of N broadcast comparisons
    (SIMD-friendly, several times faster than a batched binary search for
    N ~ 12) on cache-sized row blocks spread over threads; one histogram per
    row then gives every count.
    """
    g_n, r_n, n = agg.shape
    n_tau = tau.shape[2]
    tau = torch.nan_to_num(tau, nan=float("inf"))
    tau_sorted, perm = tau.sort(dim=2)
    a = agg.detach().cpu().numpy()  # strided views are fine (no copy)
    t = tau_sorted.to(agg.dtype).cpu().numpy()
    p = pos.cpu().contiguous().numpy()
    width = n_tau + 1
    small = np.int8 if 2 * width <= 127 else np.int16 if 2 * width <= 32767 else np.int32
    hist = np.zeros((g_n, r_n, 2 * width), dtype=np.int64)

    def work(g0: int, g1: int, r0: int, r1: int) -> None:
        block = a[g0:g1, r0:r1]  # [gb, rb, n]
        acc = np.zeros(block.shape, dtype=small)
        for j in range(n_tau):
            acc += block > t[g0:g1, r0:r1, j : j + 1]
        acc += p[g0:g1, None, :] * small(width)  # positives use bins width..2*width-1
        n_rows = (g1 - g0) * (r1 - r0)
        key = acc.reshape(n_rows, -1).astype(np.int32)
        key += (np.arange(n_rows, dtype=np.int32) * (2 * width))[:, None]
        counts = np.bincount(key.ravel(), minlength=n_rows * 2 * width)
        hist[g0:g1, r0:r1] = counts.reshape(g1 - g0, r1 - r0, 2 * width)

    target = 1 << 19  # elements per work item (cache-sized)
    if r_n * n >= target:  # one group at a time, split its rows
        step = max(1, target // max(n, 1))
        blocks = [
            (g, g + 1, lo, min(lo + step, r_n)) for g in range(g_n) for lo in range(0, r_n, step)
        ]
    else:  # several whole groups per item
        step = max(1, target // max(r_n * n, 1))
        blocks = [(g, min(g + step, g_n), 0, r_n) for g in range(0, g_n, step)]
    n_threads = min(torch.get_num_threads(), len(blocks))
    if n_threads > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(lambda b: work(*b), blocks))
    else:
        for b in blocks:
            work(*b)
    h = torch.from_numpy(hist).view(g_n, r_n, 2, width)
    # count_j = #samples with bin > j = reversed cumulative sum from bin j + 1
    above = h.flip(3).cumsum(3).flip(3)[..., 1:].to(torch.float64)  # [G, R, 2, N]
    tp_sorted, pp_sorted = above[:, :, 1], above[:, :, 0] + above[:, :, 1]
    tp = torch.empty_like(tp_sorted).scatter_(2, perm, tp_sorted)
    pp = torch.empty_like(pp_sorted).scatter_(2, perm, pp_sorted)
    return tp, pp


def count_above_native(
    sample_max: Float[Tensor, "L n K"],
    tau: Float[Tensor, "C K2 L N"],
    labels: Bool[Tensor, "n C"],
    match_columns: bool = False,
) -> tuple[Float[Tensor, "C K2 L N"], Float[Tensor, "C K2 L N"]]:
    """The SuperActivator grid counts straight from per-sample maxima in their
    natural ``[layers, samples, columns]`` layout (no transposition).

    Row ``(c, k', l)`` compares column ``k`` (``= c`` unless ``match_columns``,
    then ``k = k'``) at layer ``l`` with ``tau[c, k', l, :]``; positives are
    ``labels[:, c]``. Returns ``(tp, pp)`` like :func:`count_above`. Work is
    split into cache-sized sample blocks (counts add up over samples) run on
    threads; each block accumulates small-int bins with N broadcast
    comparisons and one ``bincount``.
    """
    n_layers, n, n_cols = sample_max.shape
    n_c, kk, _, n_tau = tau.shape
    if not match_columns and n_cols != n_c:
        raise InputError(f"sample_max has {n_cols} columns but tau has {n_c} concepts")
    tau = torch.nan_to_num(tau, nan=float("inf"))
    tau_sorted, perm = tau.sort(dim=3)
    t = tau_sorted.to(sample_max.dtype)
    if match_columns:
        t_nat = t.permute(0, 2, 3, 1).contiguous().numpy()  # [C, L, N, K]
    else:
        t_nat = t[:, 0].permute(1, 2, 0).contiguous().numpy()  # [L, N, C]
    a = sample_max.detach().cpu().contiguous().numpy()
    p = labels.cpu().contiguous().numpy()  # [n, C]
    width = n_tau + 1
    small = np.int8 if 2 * width <= 127 else np.int16 if 2 * width <= 32767 else np.int32
    cells = n_layers * n_cols
    offsets = (np.arange(cells, dtype=np.int32) * (2 * width)).reshape(n_layers, 1, n_cols)

    def hist_of(acc: np.ndarray) -> np.ndarray:
        key = acc.astype(np.int32)
        key += offsets
        return np.bincount(key.ravel(), minlength=cells * 2 * width)

    def work(i0: int, i1: int) -> np.ndarray:
        block = a[:, i0:i1, :]  # [L, b, K]
        if not match_columns:
            acc = np.zeros(block.shape, dtype=small)
            for j in range(n_tau):
                acc += block > t_nat[:, j : j + 1, :]
            acc += p[None, i0:i1, :] * small(width)
            return hist_of(acc)[None]
        out = np.empty((n_c, cells * 2 * width), dtype=np.int64)
        for c in range(n_c):
            acc = np.zeros(block.shape, dtype=small)
            for j in range(n_tau):
                acc += block > t_nat[c, :, j : j + 1, :]
            acc += p[None, i0:i1, c : c + 1] * small(width)
            out[c] = hist_of(acc)
        return out

    step = max(1, (1 << 19) // max(1, cells))
    blocks = [(i0, min(i0 + step, n)) for i0 in range(0, n, step)]
    hist = np.zeros((1 if not match_columns else n_c, cells * 2 * width), dtype=np.int64)
    n_threads = min(torch.get_num_threads(), len(blocks))
    if n_threads > 1:
        with ThreadPoolExecutor(n_threads) as pool:
            for part in pool.map(lambda b: work(*b), blocks):
                hist += part
    else:
        for b in blocks:
            hist += work(*b)
    h = torch.from_numpy(hist).view(-1, n_layers, n_cols, 2, width)
    if match_columns:
        h = h.permute(0, 2, 1, 3, 4)  # [C, K, L, 2, w]
    else:
        h = h[0].permute(1, 0, 2, 3).unsqueeze(1)  # [C, 1, L, 2, w]  (K == C)
    above = h.flip(4).cumsum(4).flip(4)[..., 1:].to(torch.float64)  # [C, K', L, 2, N]
    tp_sorted, pp_sorted = above[..., 1, :], above[..., 0, :] + above[..., 1, :]
    tp = torch.empty_like(tp_sorted).scatter_(3, perm, tp_sorted)
    pp = torch.empty_like(pp_sorted).scatter_(3, perm, pp_sorted)
    return tp, pp


def f1_from_counts(tp: Tensor, pp: Tensor, n_pos: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Precision, recall, F1 from TP, predicted positives and actual positives
    (broadcasting); 0 where a denominator is 0."""
    tp, pp, n_pos = (t.to(torch.float64) for t in torch.broadcast_tensors(tp, pp, n_pos))
    precision = torch.where(pp > 0, tp / pp.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(n_pos > 0, tp / n_pos.clamp(min=1), torch.zeros_like(tp))
    denom = pp + n_pos
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return precision, recall, f1


def best_f1_threshold(
    values: Float[Tensor, "rows m"], pos: Bool[Tensor, "rows m"]
) -> tuple[Float[Tensor, " rows"], Float[Tensor, " rows"]]:
    """Exact best-F1 threshold of ``values > threshold`` against ``pos``, per row.

    Candidates are all cuts between distinct sorted values (plus "predict
    nothing"); each cut's threshold is the largest value left out (strict ``>``),
    or just below the smallest value when every finite value is predicted
    positive. Ties in F1 go to the higher threshold (fewer positives).
    Returns ``(threshold, f1)``; ``threshold`` has ``values``'s dtype.
    """
    rows, m = values.shape
    if m == 0:
        z = torch.zeros(rows, dtype=values.dtype)
        return z, z.to(torch.float64)
    v, order = values.sort(dim=1, descending=True, stable=True)
    return best_f1_threshold_sorted(v, torch.gather(pos, 1, order))


def best_f1_threshold_sorted(
    v: Float[Tensor, "rows m"], p: Bool[Tensor, "rows m"]
) -> tuple[Float[Tensor, " rows"], Float[Tensor, " rows"]]:
    """:func:`best_f1_threshold` for rows already sorted in descending order
    (``p`` permuted alike): lets several label vectors share one sort."""
    rows, m = v.shape
    if m == 0:
        z = torch.zeros(rows, dtype=v.dtype)
        return z, z.to(torch.float64)
    # candidate k = number of top values predicted positive (k = 0: none, F1 0)
    tp = p.to(torch.float64).cumsum(1)  # [rows, m]: TP for k = 1..m
    n_pos = tp[:, -1:].clone()
    k = torch.arange(1, m + 1, dtype=torch.float64)
    f1 = tp.mul_(2).div_(k + n_pos)  # 2 TP / (predicted + actual); denominator >= 1
    # a cut after position k-1 must split distinct values (ties move together)
    valid = torch.empty(rows, m, dtype=torch.bool)
    valid[:, :-1] = v[:, :-1] > v[:, 1:]
    valid[:, -1] = v[:, -1] > float("-inf")
    f1.masked_fill_(~valid, -1.0)
    best_f1, best = f1.max(dim=1)  # first max = smallest k = highest threshold
    use_none = best_f1 <= 0  # "predict nothing" (k = 0) wins ties at F1 0
    best_k = torch.where(use_none, torch.zeros_like(best), best + 1)
    best_f1 = torch.where(use_none, torch.zeros_like(best_f1), best_f1)
    # threshold of cut k: the largest value left out, v[k]; below v[k-1] if none is left
    kept_last = v.gather(1, (best_k - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
    left_out = v.gather(1, best_k.clamp(max=m - 1).unsqueeze(1)).squeeze(1)
    thr = torch.where(best_k < m, left_out, torch.full_like(left_out, float("-inf")))
    below_last = torch.nextafter(kept_last, torch.full_like(kept_last, float("-inf")))
    thr = torch.where(torch.isfinite(thr), thr, below_last)
    # k = 0: the max value (nothing is strictly above it), or 0 if every value is -inf
    top = v[:, 0]
    none_thr = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    thr = torch.where(best_k == 0, none_thr, thr)
    return thr, best_f1


def select_best(f1: Float[Tensor, "C K L N"]) -> tuple[Tensor, Tensor, Tensor]:
    """Argmax of cal F1 per concept over (column, layer, N).

    Ties: smaller N first, then earlier layer, then lower column index.
    Returns index tensors ``(col, layer, n)``, each ``[C]``.
    """
    c, k, n_layers, n_n = f1.shape
    f1 = torch.nan_to_num(f1, nan=-1.0)
    flat = f1.permute(0, 3, 2, 1).reshape(c, -1)  # order: N, then layer, then column
    best = flat.argmax(dim=1)
    n_idx = best // (n_layers * k)
    layer_idx = (best // k) % n_layers
    col_idx = best % k
    return col_idx, layer_idx, n_idx


def chunk_rows(n_rows: int, row_len: int) -> list[slice]:
    """Row slices so that each chunk holds about ``_CHUNK`` elements."""
    step = max(1, _CHUNK // max(1, row_len))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]
