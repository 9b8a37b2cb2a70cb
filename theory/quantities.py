"""Quantities of the scalar attention dynamics (SPEC §7, paper Appendix D).

Notation: ``a`` holds the concept activations of one sequence, shape ``[..., T]``;
``s`` is a softmax argument (``s = kappa * x`` for a query with activation ``x``);
``p(s) = softmax(s * a + eps_row)`` is the attention distribution of that query.

Every moment is computed *centred on the attention mode*: with ``k = argmax p``,
``mean = a_k + sum_j p_j (a_j - a_k)``. This keeps the variance and third moment
accurate to a few ulps of ``range(a)`` even when the attention is concentrated
(naive ``E[a^2] - E[a]^2`` loses everything there).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "attention",
    "attention_moments",
    "g",
    "mean_variance",
    "noisy_remainder_bound",
    "off_pole_attention",
    "off_pole_bound",
    "pole_margins",
]

# Gauss-Legendre rule used by the composite quadrature in `mean_variance`.
_GL_ORDER = 10


def _as_float(x: Tensor | float, like: Tensor) -> Tensor:
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _check(a: Tensor, **values: Tensor | float | None) -> None:
    """ValueError naming the argument unless ``a`` ``[..., T]`` has ``T >= 1`` tokens and
    ``a`` and every given value are finite (an infinite ``kappa`` gives NaN attention)."""
    if a.dim() < 1 or a.shape[-1] < 1:
        raise ValueError(
            f"a: expected activations [..., T] with at least one token, got shape {tuple(a.shape)}"
        )
    for name, value in {"a": a, **values}.items():
        if value is not None and not bool(torch.isfinite(torch.as_tensor(value)).all()):
            raise ValueError(f"{name}: expected finite values (found NaN or inf)")


def attention(a: Tensor, s: Tensor | float, eps: Tensor | None = None) -> Tensor:
    """Attention distribution ``p(s) = softmax_j(s * a_j + eps_j)``.

    a: ``[..., T]``; s: broadcastable to ``a.shape[:-1]`` (one argument per row);
    eps: ``[..., T]`` logit perturbation of the query row or None. Returns ``[..., T]``.
    """
    _check(a, s=s, eps=eps)
    s = _as_float(s, a)
    logits = s.unsqueeze(-1) * a
    if eps is not None:
        logits = logits + eps
    return torch.softmax(logits, dim=-1)


def attention_moments(p: Tensor, a: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Attention-weighted mean, variance and third central moment of ``a``.

    p, a: ``[..., T]`` (p sums to one over the last axis). Returns three ``[...]``
    tensors ``(mean, var, mu3)``; see the module docstring for the centring.
    """
    k = p.argmax(dim=-1, keepdim=True)
    ref = a.expand_as(p).gather(-1, k)
    dev_ref = a - ref
    shift = (p * dev_ref).sum(-1, keepdim=True)
    d = dev_ref - shift
    var = (p * d * d).sum(-1)
    mu3 = (p * d * d * d).sum(-1)
    return (ref + shift).squeeze(-1), var, mu3


def g(s: Tensor | float, a: Tensor, eps: Tensor | None = None) -> Tensor:
    """Softmax-weighted mean ``g(s) = sum_j softmax(s a + eps)_j a_j`` (Lemma D.1).

    a: ``[..., T]``; s broadcastable to ``a.shape[:-1]``. Returns ``[...]``.
    """
    return attention_moments(attention(a, s, eps), a)[0]


def _variance_at(a: Tensor, s: Tensor, eps: Tensor | None) -> Tensor:
    """``Var_{p(s)}[a]`` for a ``[B, T]`` and ``s`` of shape ``[B, N]``: ``[B, N]``."""
    logits = s.unsqueeze(-1) * a.unsqueeze(-2)
    if eps is not None:
        logits = logits + eps.unsqueeze(-2)
    p = torch.softmax(logits, dim=-1)
    return attention_moments(p, a.unsqueeze(-2).expand_as(p))[1]


def mean_variance(
    a: Tensor,
    lo: Tensor,
    hi: Tensor,
    kappa: Tensor | float,
    eps: Tensor | None = None,
    *,
    rtol: float = 1e-13,
    max_panels: int = 4096,
) -> tuple[Tensor, Tensor]:
    """``Vbar = int_0^1 Var_{p(kappa (lo + t (hi - lo)))}[a] dt`` (Theorem D.2, D.7).

    a: ``[..., T]``; lo, hi: ``[...]`` query activations (``a_j`` and ``a_i``);
    kappa: scalar or ``[...]``; eps: ``[..., T]`` logit noise of the query row for
    the noisy variance ``V~`` of Theorem D.7, or None.

    Quadrature: with ``s = kappa x`` the integral is ``int V(s) ds / (s_hi - s_lo)``.
    We substitute ``s = S sinh(u)`` with ``S = 1 / range(a)`` (uniform resolution
    ``~1/range`` near ``s = 0``, where the variance has its structure, and
    geometrically coarser far out, where ``V`` decays exponentially), and apply a
    composite 10-point Gauss-Legendre rule, starting from about one panel per
    unit of ``u`` and doubling the panel count until two successive estimates
    agree to ``rtol`` relative (absolute floor ``1e-16 range(a)^2``). ``V(s)``
    is analytic in ``|Im s| < pi / (2 range(a))``, so the rule converges
    geometrically; the returned error estimate is the last difference, which
    bounds the error of the coarser estimate and overestimates that of the
    returned (finer) one.

    Returns ``(vbar, err)``, both ``[...]``. When ``kappa (hi - lo) == 0`` the
    average is the point value ``Var_{p(kappa lo)}[a]`` with zero error.
    """
    _check(a, lo=lo, hi=hi, kappa=kappa, eps=eps)
    batch = torch.broadcast_shapes(a.shape[:-1], lo.shape, hi.shape, torch.as_tensor(kappa).shape)
    T = a.shape[-1]
    a_f = a.expand(*batch, T).reshape(-1, T)
    kap = _as_float(kappa, a).expand(batch).reshape(-1)
    s_lo = kap * lo.expand(batch).reshape(-1)
    s_hi = kap * hi.expand(batch).reshape(-1)
    eps_f = None if eps is None else eps.expand(*batch, T).reshape(-1, T)
    rng = (a_f.max(-1).values - a_f.min(-1).values).clamp_min(1e-300)
    scale = 1.0 / rng
    u_lo = torch.asinh(s_lo / scale)
    u_hi = torch.asinh(s_hi / scale)
    width = s_hi - s_lo

    x, w = _gauss_legendre(_GL_ORDER, a.dtype, a.device)
    out = torch.empty_like(s_lo)
    err = torch.zeros_like(s_lo)
    degenerate = width == 0
    if degenerate.any():
        e = None if eps_f is None else eps_f[degenerate]
        out[degenerate] = _variance_at(a_f[degenerate], s_lo[degenerate, None], e)[:, 0]
    # first panel count: about one panel per unit of u (the structure scale)
    span = (u_hi - u_lo).abs().clamp_min(1.0)
    start = torch.exp2(torch.ceil(torch.log2(span))).clamp_max(max_panels // 2)
    prev = torch.full_like(s_lo, float("nan"))
    pending = ~degenerate
    panels = 1
    while pending.any():
        active = (pending & (start <= panels)).nonzero().squeeze(-1)
        if active.numel():
            est = _composite(a_f, eps_f, scale, u_lo, u_hi, active, panels, x, w) / width[active]
            old = prev[active]
            diff = (est - old).abs()
            tol = rtol * est.abs() + 1e-16 * rng[active] ** 2
            done = ~torch.isnan(old) & ((diff <= tol) | (panels >= max_panels))
            out[active[done]] = est[done]
            err[active[done]] = diff[done]
            pending[active[done]] = False
            prev[active] = est
        panels *= 2
    return out.reshape(batch), err.reshape(batch)


def _composite(a_f, eps_f, scale, u_lo, u_hi, idx, panels, x, w, chunk=1 << 22) -> Tensor:
    """Composite Gauss-Legendre of ``V(S sinh u) S cosh u`` over ``[u_lo, u_hi]``."""
    total = torch.zeros(idx.numel(), dtype=a_f.dtype, device=a_f.device)
    T = a_f.shape[-1]
    per_item = panels * x.numel() * T
    step = max(1, chunk // per_item)
    frac = (
        torch.arange(panels, dtype=a_f.dtype, device=a_f.device)[:, None] + (x + 1) / 2
    ) / panels
    frac = frac.reshape(-1)
    wt = (w / 2).repeat(panels) / panels
    for start in range(0, idx.numel(), step):
        sel = idx[start : start + step]
        du = (u_hi[sel] - u_lo[sel])[:, None]
        u = u_lo[sel][:, None] + du * frac
        s = scale[sel][:, None] * torch.sinh(u)
        e = None if eps_f is None else eps_f[sel]
        v = _variance_at(a_f[sel], s, e) * scale[sel][:, None] * torch.cosh(u)
        total[start : start + step] = (v * wt).sum(-1) * du[:, 0]
    return total


_GL_CACHE: dict = {}


def _gauss_legendre(n: int, dtype, device) -> tuple[Tensor, Tensor]:
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1] (Golub-Welsch)."""
    key = (n, dtype, device)
    if key not in _GL_CACHE:
        k = torch.arange(1, n, dtype=torch.float64)
        off = k / torch.sqrt(4 * k * k - 1)
        jac = torch.diag(off, 1) + torch.diag(off, -1)
        nodes, vecs = torch.linalg.eigh(jac)
        weights = 2 * vecs[0] ** 2
        _GL_CACHE[key] = (
            nodes.to(dtype=dtype, device=device),
            weights.to(dtype=dtype, device=device),
        )
    return _GL_CACHE[key]


def pole_margins(a: Tensor) -> tuple[Tensor, Tensor]:
    """Pole margins (Corollary D.3): ``a_max - a_second`` and ``a_second_min - a_min``.

    a: ``[..., T]`` with ``T >= 2``. Returns two ``[...]`` tensors; a tied pole has
    margin zero.
    """
    if a.shape[-1] < 2:
        raise ValueError(f"a: pole margins need at least 2 tokens, got shape {tuple(a.shape)}")
    top = a.topk(2, dim=-1).values
    bot = (-a).topk(2, dim=-1).values
    return top[..., 0] - top[..., 1], bot[..., 0] - bot[..., 1]


def _pole_index(a: Tensor, x: Tensor, kappa: Tensor | float) -> Tensor:
    """Index of the token with the largest noiseless logit ``kappa x a_j``: ``[..., Q, 1]``."""
    logits = _as_float(kappa, a)[..., None, None] * x.unsqueeze(-1) * a.unsqueeze(-2)
    return logits.argmax(-1, keepdim=True)


def off_pole_attention(p: Tensor, a: Tensor, kappa: Tensor | float) -> Tensor:
    """Attention each query puts off its same-sign pole (Corollaries D.3, D.8).

    p: ``[..., Q, T]`` attention rows of queries whose activations are ``a``
    (``Q == T``); the pole of query ``i`` is the token with the largest noiseless
    logit ``kappa a_i a_j`` (``argmax a`` for ``kappa a_i > 0``, ``argmin`` for
    ``< 0``). Returns ``1 - p_{i, pole(i)}``, shape ``[..., Q]``.
    """
    k = _pole_index(a, a, kappa)
    # sum the other entries rather than 1 - p_k, so tiny off-pole mass is not lost
    return p.scatter(-1, k, torch.zeros_like(p)).sum(-1)


def off_pole_bound(a: Tensor, kappa: Tensor | float, delta: Tensor | float = 0.0) -> Tensor:
    """Right side of Corollaries D.3 / D.8 for every query ``i`` of ``a`` ``[..., T]``.

    ``exp(2 delta) * sum_{j != pole(i)} exp(-kappa |a_i| |a_pole - a_j|)``; ``delta = 0``
    gives Corollary D.3. Returns ``[..., T]``.
    """
    _check(a, kappa=kappa, delta=delta)
    kap = _as_float(kappa, a)[..., None, None]
    k = _pole_index(a, a, kappa)
    logits = kap * a.unsqueeze(-1) * a.unsqueeze(-2)
    gap = logits.gather(-1, k) - logits  # >= 0; equals kappa |a_i| |a_pole - a_j|
    terms = torch.exp(-gap)
    terms = terms.scatter(-1, k, torch.zeros_like(terms))
    return torch.exp(2 * _as_float(delta, a)).unsqueeze(-1) * terms.sum(-1)


def noisy_remainder_bound(
    a: Tensor, beta: Tensor | float, delta: Tensor | float, eta: Tensor | float
) -> Tensor:
    """Noise remainder ``R`` of Theorem D.7, read from its proof (SPEC §7).

    ``R = beta * range(a)/2 * (exp(4 delta) - 1) + 2 eta``: the attention rows of
    queries ``i`` and ``j`` see logit noise differing by at most ``2 delta``, so
    Lemma D.6 (applied with ``2 delta``) bounds their L1 distance by
    ``exp(4 delta) - 1``; centring at the mid-range bounds the change of the
    weighted mean by ``range/2`` times that; the additive terms differ by at most
    ``2 eta``. a: ``[..., T]``; returns ``[...]``.
    """
    rng = a.max(-1).values - a.min(-1).values
    b = _as_float(beta, a)
    return b.abs() * rng / 2 * torch.expm1(4 * _as_float(delta, a)) + 2 * _as_float(eta, a)
