"""Pure-torch fast noiseless trajectories behind :func:`theory.simulate` (private).

The path for float32 and non-CPU tensors, and for CPU float64 when the compiled
kernel (theory/_ckernel.py, the same algorithm fused in C) cannot be built. On the
benchmark (10^4 x 128 tokens x 32 layers, 2 cores) it takes ~3.5 s against the
kernel's ~0.8 s: each element still makes three trips through memory (logit matmul,
exp, reduction matmul), and two Python worker threads scale only ~1.3x because the
GIL changes hands between hundreds of short torch calls per layer.

The plain layer map builds ``[B, T, T]`` logits ``kappa a_i a_j``, runs a softmax
(max pass, exp + sum pass, divide pass) and a matvec; for 10^4 sequences x 128
tokens that is 1.3 GB per layer streamed through memory several times, and any
logit below ~-708 sends torch's float64 ``exp`` down a scalar path that is
~100x slower (subnormal / zero results). This module computes the same

    g_i = sum_j exp(l_ij) a_j / sum_j exp(l_ij),
    l_ij = fl(s_i a_j) - fl(s_i c_i),   s_i = kappa a_i,

and ``a' = a + beta g`` with these changes (each measured; see the tests in
tests/theory/test_simulate_speed_equiv.py for the equivalence):

1. *Rank-one row max.* Rounding is monotone, so the row max of ``fl(s_i a_j)`` is
   ``fl(s_i c_i)`` with ``c_i = max_j a_j`` if ``s_i >= 0`` else ``min_j a_j``: no
   max pass. Logits come from one matmul ``[s_i, -s_i c_i] @ [a_j; 1]`` (with MKL
   the same rounding as the softmax input), are exponentiated in place, reduced by one
   more matmul against the columns ``(a_j, 1)`` (numerator and denominator at
   once). Work is sliced to ~512 KB so it stays in cache; logits are clamped at
   ``-_FLOOR`` (terms below e^-60) whenever they could reach the slow ``exp`` range.
2. *Skipping negligible keys.* Each sequence is kept sorted (with its
   permutation, re-sorted only when a layer breaks the order, e.g. ``beta kappa
   < 0``). A query with ``s_i >= 0`` only needs keys with ``s_i (a_j - c_i) >=
   -_LIM`` -- a suffix of the sorted keys -- and one with ``s_i < 0`` a prefix;
   the rest weigh < e^-45 ~ 3e-20 of the row max. Queries are handled in blocks
   of ``_R``; a block takes the ``W`` lowest and ``W`` highest keys for the
   smallest window ``W`` in ``_WINDOWS`` that covers all its queries, and a
   block whose queries all need only their extreme key gets ``g_i = c_i``.
   Activations spread over the layers, attention concentrates, and late layers
   cost a few per cent of the dense ``T^2``; mostly-dense layers (the first ones)
   skip the block bookkeeping and run whole sequences at once. Exactly equal
   tokens get exactly equal updates, as in the plain map.
3. *Threads without barriers.* Chunks of ``_CHUNK`` sequences run on a pool of
   ``torch.get_num_threads()`` Python threads with one intra-op thread each
   (torch kernels release the GIL). OpenMP splitting every small kernel across
   cores is slightly faster on idle cores but collapses by ~10x when the cores
   are shared with other processes.

Agreement with the softmax layer map: ~1e-15 relative per layer (summation
order), ~1e-13 over 32 layers, within a few times the spread the plain map
itself shows when its tokens are permuted.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor

_LIM = 45.0  # keys with logit < row max - _LIM are dropped (e^-45 ~ 2.9e-20)
_FLOOR = 60.0  # logits are clamped here before exp: e^-60 ~ 9e-27, never subnormal
_R = 16  # query rows per block
_WINDOWS = (1, 4, 16, 32)  # key windows (W lowest + W highest keys); 1 = extreme key only
_SLICE = 1 << 16  # logit elements per slice: 512 KB of float64
_CHUNK = 256  # sequences per work item
_DENSE = 0.75  # fraction of all-key blocks above which whole sequences are done densely


def _dense_g(a: Tensor, lhs: Tensor, clamp: bool) -> Tensor:
    """``g`` with every query of a sequence against all of its keys: ``[B, Tq]``."""
    B, T = a.shape
    rhs = torch.stack((a, torch.ones_like(a)), 1)  # [B, 2, T]: rows (a_j, 1)
    red = torch.stack((a, torch.ones_like(a)), 2)  # [B, T, 2]: columns (a_j, 1)
    Tq = lhs.shape[1]
    step = max(1, _SLICE // (Tq * T))
    buf = a.new_empty(min(step, B), Tq, T)
    nd = a.new_empty(B, Tq, 2)
    for i in range(0, B, step):
        n = min(step, B - i)
        logits = torch.bmm(lhs[i : i + n], rhs[i : i + n], out=buf[:n])  # [n, Tq, T]
        if clamp:
            logits.clamp_min_(-_FLOOR)
        logits.exp_()
        torch.bmm(logits, red[i : i + n], out=nd[i : i + n])  # [n, Tq, 2]: (num, den)
    return nd[..., 0] / nd[..., 1]


def _layer_g(a: Tensor, s: Tensor) -> Tensor:
    """``g_i`` (see the module docstring) for sorted keys ``a`` and ``s = kappa a``, ``[B, T]``."""
    B, T = a.shape
    nb = -(-T // _R)
    if nb * _R != T:  # pad the queries (not the keys) to whole blocks with copies of the last
        s = torch.cat((s, s[:, -1:].expand(B, nb * _R - T)), -1)
    M, m = a[:, -1:], a[:, :1]
    pos = s >= 0
    c = torch.where(pos, M, m)
    lhs = torch.stack((s, -(s * c)), -1)  # [B, Tq, 2]: rows [s_i, -s_i c_i]
    # exp of logits below ~-708 (subnormal or zero results) takes a slow scalar path
    # in torch; clamping at -_FLOOR only changes terms that are below e^-60 anyway
    clamp = bool(s.abs().amax() * (M - m).amax() > _FLOOR)
    # keys a query needs: a suffix (s >= 0) or a prefix (s < 0) of the sorted keys, the
    # wider the closer s is to 0; a block takes the widest suffix and widest prefix
    abs_s = s.abs().view(B, nb, _R)
    pos_b = pos.view(B, nb, _R)
    reach_pos = _LIM / abs_s.masked_fill(~pos_b, float("inf")).amin(-1)
    reach_neg = _LIM / abs_s.masked_fill(pos_b, float("inf")).amin(-1)
    need = torch.maximum(
        T - torch.searchsorted(a, M - reach_pos, side="left"),
        torch.searchsorted(a, m + reach_neg, side="right"),
    ).view(-1)
    windows = [w for w in _WINDOWS[1:] if 2 * w < T]
    full = need > (windows[-1] if windows else 1)
    if bool(full.sum() > _DENSE * full.numel()):  # mostly dense: whole sequences at once
        return _dense_g(a, lhs, clamp)[:, :T]
    g = c.clone().view(B * nb, _R)  # blocks needing only the extreme key: g_i = c_i
    lhs = lhs.view(B * nb, _R, 2)
    lo = 1
    for W in (*windows, T):
        blocks = ((need > lo) & (need <= W)).nonzero().squeeze(-1)
        lo = W
        if blocks.numel() == 0:
            continue
        seq = torch.div(blocks, nb, rounding_mode="floor")
        # rows (a_j, 1) of the lowest W and highest W keys (all keys for the last tier)
        keys = torch.cat((a[:, :W], a[:, T - W :]), 1) if W < T else a
        table = torch.stack((keys, torch.ones_like(keys)), 1)[seq]  # [n, 2, K]
        step = max(1, _SLICE // (_R * table.shape[-1]))
        for i in range(0, blocks.numel(), step):
            blk = blocks[i : i + step]
            rhs = table[i : i + step]
            logits = torch.bmm(lhs[blk], rhs)  # fl(s_i a_j) - fl(s_i c_i), [n, R, K]
            if clamp:
                logits.clamp_min_(-_FLOOR)
            logits.exp_()
            nd = torch.bmm(logits, rhs.transpose(1, 2))  # [n, R, 2]: (num, den)
            g[blk] = nd[..., 0] / nd[..., 1]
    return g.view(B, nb * _R)[:, :T]


def _chunk(a0: Tensor, beta: Tensor, kappa: Tensor, n_layers: int, out: Tensor) -> None:
    """Fill ``out`` ``[B, n_layers + 1, T]`` with the noiseless trajectory of ``a0``."""
    T = a0.shape[-1]
    out[:, 0] = a0
    if n_layers == 0:
        return
    kap, bet = kappa.unsqueeze(-1), beta.unsqueeze(-1)
    a, perm = torch.sort(a0, dim=-1)
    for layer in range(1, n_layers + 1):
        s = kap * a
        g = _layer_g(a, s)
        tied = a[:, 1:] == a[:, :-1]
        if bool(tied.any()):  # equal tokens may sit in blocks with different windows:
            # give every run of equal keys the g of its first member so ties stay exact
            start = torch.arange(T).expand_as(a).masked_fill(F.pad(tied, (1, 0)), 0)
            g = g.gather(-1, start.cummax(-1).values)
        a = a + bet * g
        out[:, layer].scatter_(-1, perm, a)
        if layer < n_layers and not bool((a[:, 1:] >= a[:, :-1]).all()):
            a, order = torch.sort(a, dim=-1)
            perm = perm.gather(-1, order)


_LOCAL = threading.local()


def _run_chunk(args: tuple) -> None:
    if getattr(_LOCAL, "threads", None) != 1:
        torch.set_num_threads(1)
        _LOCAL.threads = 1
    _chunk(*args)


def noiseless_trajectory(a0: Tensor, beta: Tensor, kappa: Tensor, n_layers: int) -> Tensor:
    """Noiseless trajectory ``[N, n_layers + 1, T]`` of ``a0`` ``[N, T]`` (float64).

    beta, kappa: ``[N]``. Uses ``torch.get_num_threads()`` worker threads.
    """
    N, T = a0.shape
    out = a0.new_empty(N, n_layers + 1, T)
    jobs = [
        (
            a0[i : i + _CHUNK],
            beta[i : i + _CHUNK],
            kappa[i : i + _CHUNK],
            n_layers,
            out[i : i + _CHUNK],
        )
        for i in range(0, N, _CHUNK)
    ]
    workers = min(torch.get_num_threads(), len(jobs), os.cpu_count() or 1)
    if workers <= 1:
        for job in jobs:
            _chunk(*job)
        return out
    threads = torch.get_num_threads()
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(_run_chunk, jobs))
    finally:
        torch.set_num_threads(threads)
    return out
