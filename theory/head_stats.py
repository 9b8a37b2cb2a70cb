"""Per-head noise statistics of measured heads: fitted ``kappa``, ``delta``, Theorem D.7.

Helpers of :func:`theory.heads.measure_layer` for heads whose logits are given
(not only the bilinear form of the weights): the row-centred least-squares
``kappa``, each row's effective ``delta`` (half-range of the logit residual),
and the signal-to-noise numbers of Theorem D.7 (documented there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from theory.quantities import mean_variance

__all__ = ["fit_kappa", "half_range", "seq_range", "snr_numbers"]


def fit_kappa(scores: Tensor, a: Tensor, allowed: Tensor) -> Tensor:
    """Per-head least-squares ``kappa`` of the logits on ``a_i a_j``, each row centred.

    Softmax ignores a constant per row, so logits and ``a_i a_j`` are centred over
    each row's allowed keys before the slope is taken. scores: ``[N, H, T, T]``;
    allowed: ``[N, T, T]`` (query rows to use, keys they may attend). Returns ``[H]``.
    """
    m = allowed[:, None].to(a.dtype)
    n = m.sum(-1, keepdim=True).clamp_min(1)
    s = scores.nan_to_num(0.0, posinf=0.0, neginf=0.0) * m
    s = (s - s.sum(-1, keepdim=True) / n) * m
    aj = a[:, None, None, :] * m
    z = a[:, None, :, None] * (aj - aj.sum(-1, keepdim=True) / n) * m
    return (s * z).sum((0, 2, 3)) / (z * z).sum((0, 2, 3)).clamp_min(1e-300)


def half_range(eps: Tensor, block: Tensor) -> Tensor:
    """Row half-range of ``eps`` ``[N, H, T, T]`` over allowed keys: ``[N, H, T]``.

    The smallest ``delta`` with ``|eps_ij - m_i| <= delta`` for some row shift ``m_i``
    (softmax is shift-invariant per row, so this is the row's effective ``delta``).
    """
    b = block[:, None]
    hi = eps.masked_fill(b, -math.inf).amax(-1)
    lo = eps.masked_fill(b, math.inf).amin(-1)
    return ((hi - lo) / 2).nan_to_num(0.0, posinf=0.0, neginf=0.0)


def seq_range(a: Tensor, rows: Tensor) -> Tensor:
    """Range of ``a`` over each sequence's ``rows`` tokens, sequences with >= 2 of them: ``[S]``."""
    hi = a.masked_fill(~rows, -math.inf).amax(-1)
    lo = a.masked_fill(~rows, math.inf).amin(-1)
    return (hi - lo)[rows.sum(-1) >= 2]


def snr_numbers(kappa: Tensor, beta: Tensor, a: Tensor, half: Tensor, rows: Tensor) -> dict:
    """Theorem D.7's signal-to-noise numbers per head (see :func:`theory.heads.measure_layer`)."""
    H = kappa.shape[0]
    d_med = torch.stack([half[:, h][rows].median() for h in range(H)])
    r_med = seq_range(a, rows).median()
    snr = kappa.abs() * r_med**2 / (4 * torch.tanh(d_med).clamp_min(1e-300))
    ratios = []
    for n in range(a.shape[0]):
        tok = a[n][rows[n]]
        if tok.numel() < 2 or tok.max() == tok.min():
            continue
        lo, hi = tok.min().expand(H), tok.max().expand(H)
        vbar, _ = mean_variance(tok.expand(H, -1), lo, hi, kappa, rtol=1e-8)
        d_n = half[n][:, rows[n]].amax(-1)
        ratios.append(kappa.abs() * vbar / torch.tanh(d_n).clamp_min(1e-300))
    ratio = torch.stack(ratios)  # [S, H]
    signed = (beta * kappa > 0).to(a.dtype)
    return {
        "snr": snr * signed,
        "d7_ratio": ratio.median(0).values * signed,
        "d7_fraction": (ratio > 1).to(a.dtype).mean(0) * signed,
    }
