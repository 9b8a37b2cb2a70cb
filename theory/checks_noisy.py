"""Executable checks of the bounded-noise statements (Lemma D.6 - Theorem D.10).

Each ``check_*`` takes a :class:`theory.configs.Config` and uses its realised
noise (``eps`` ``[B, T, T]`` with ``|eps| <= delta``, ``eta_vec`` with
``|eta_vec| <= eta``, value noise ``xi`` for D.10). Residual and slack
conventions as in :mod:`theory.checks_noiseless`.

Constants (see also :func:`theory.quantities.noisy_remainder_bound`): the
remainder ``R = beta range(a)/2 (exp(4 delta) - 1) + 2 eta`` read from the proof
of Theorem D.7 is valid but not sharp. Sharp form: the two attention rows differ
by logit perturbations ``d_k = eps_ik - eps_jk`` of range at most ``4 delta``. For
a fixed set ``S``, ``q(S) - r(S)`` with ``q ∝ r e^d`` is largest when ``d`` is
maximal on ``S`` and minimal off it; with ``w = r(S)`` that gives
``w e^D / (1 - w + w e^D) - w``, maximised at ``w = 1 / (1 + e^{D/2})`` to
``tanh(D / 4)``. So ``|q - r|_1 <= 2 tanh(delta)`` and
``R* = beta range(a) tanh(delta) + 2 eta <= R`` (about half of ``R`` for small
``delta``, exponentially smaller for large), attained by two tokens at
``kappa -> 0`` under the adversarial noise. Likewise Lemma D.6's L1 bound
``exp(2 delta) - 1`` is valid; the sharp one is ``2 tanh(delta / 2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from theory.checks_noiseless import (
    FLOOR,
    IDENTITY_TOL,
    _range,
    _rel,
    _spread,
    _worst,
    centred_g,
    masked_mean_variance,
)
from theory.configs import ROUNDING, CheckResult, Config, sorted_pairs
from theory.quantities import (
    attention,
    attention_moments,
    g,
    noisy_remainder_bound,
    off_pole_attention,
    off_pole_bound,
)
from theory.simulate import layer_update

__all__ = ["check_d6", "check_d7", "check_d8", "check_d9", "check_d10", "sharp_remainder_bound"]


def sharp_remainder_bound(a: Tensor, beta: Tensor, delta: Tensor, eta: Tensor) -> Tensor:
    """Sharp remainder ``R* = beta range(a) tanh(delta) + 2 eta`` (module docstring).

    a: ``[B, T]``; beta, delta, eta: ``[B]``. Returns ``[B]``.
    """
    return beta * _range(a) * torch.tanh(delta) + 2 * eta


def _logits(cfg: Config) -> Tensor:
    return cfg.kappa[:, None, None] * cfg.a.unsqueeze(-1) * cfg.a.unsqueeze(-2)


def _noisy_update(cfg: Config) -> Tensor:
    return layer_update(cfg.a, beta=cfg.beta, kappa=cfg.kappa, eps=cfg.eps, eta=cfg.eta_vec)


def _rows(eps: Tensor, idx: Tensor) -> Tensor:
    """Noise rows ``eps[b, idx[b, n], :]``: ``[B, N, T]``."""
    return eps.gather(1, idx.unsqueeze(-1).expand(-1, -1, eps.shape[-1]))


def check_d6(cfg: Config) -> CheckResult:
    """Lemma D.6: ``p~/p in [e^{-2 delta}, e^{2 delta}]`` and ``|p~ - p|_1 <= e^{2 delta} - 1``.

    Every attention row of the problem, clean logits ``kappa a_i a_j`` vs
    perturbed by ``eps``. values: min of ``2 delta - max|log p~ - log p|`` and of
    the L1 slack; the log-ratio slack is divided by ``1 + max|logit|``, the scale
    of its float64 rounding. details: ``sharp_l1_slack`` against ``2 tanh(delta / 2)``.
    """
    clean = _logits(cfg)
    lp = torch.log_softmax(clean, -1)
    lq = torch.log_softmax(clean + cfg.eps, -1)
    delta = cfg.delta
    logit_scale = 1 + clean.abs().amax((-1, -2))
    ratio_slack = (2 * delta - (lq - lp).abs().amax((-1, -2))) / logit_scale
    l1 = (lq.exp() - lp.exp()).abs().sum(-1).amax(-1)
    l1_slack = torch.expm1(2 * delta) - l1
    sharp = 2 * torch.tanh(delta / 2) - l1
    return CheckResult(
        "D.6",
        "inequality",
        torch.minimum(ratio_slack, l1_slack),
        ROUNDING,
        {"sharp_l1_slack": sharp},
    )


def _pair_decomposition(cfg: Config, hi: Tensor, lo: Tensor, new: Tensor, mask: Tensor):
    """Theorem D.7's split of ``a_hi' - a_lo'`` with ``hi``'s noisy rule held fixed.

    ``V~`` is computed where ``mask`` ``[B, P]`` is True (zero elsewhere).
    Returns ``(gap, gap_new, vtilde, remainder)`` ``[B, P]`` with
    ``gap_new = gap (1 + beta kappa V~) + remainder`` and
    ``remainder = beta (g~_hi(kappa a_lo) - g~_lo(kappa a_lo)) + eta_hi - eta_lo``.
    """
    a, beta, kappa = cfg.a, cfg.beta[:, None], cfg.kappa[:, None]
    a_hi, a_lo = a.gather(-1, hi), a.gather(-1, lo)
    e_hi, e_lo = _rows(cfg.eps, hi), _rows(cfg.eps, lo)
    vt, _ = masked_mean_variance(a, a_lo, a_hi, cfg.kappa, mask, e_hi)
    a_rows = a.unsqueeze(-2)
    term2 = beta * (g(kappa * a_lo, a_rows, e_hi) - g(kappa * a_lo, a_rows, e_lo))
    rem = term2 + cfg.eta_vec.gather(-1, hi) - cfg.eta_vec.gather(-1, lo)
    return a_hi - a_lo, new.gather(-1, hi) - new.gather(-1, lo), vt, rem


def check_d7(cfg: Config) -> CheckResult:
    """Theorem D.7: ``|a_i' - a_j'| >= |a_i - a_j| (1 + beta kappa V~) - R``.

    ``V~`` is the mean variance under query ``i``'s noisy attention rule (the
    higher token's row; the proof needs one fixed row). values: normalised slack
    ``(lhs - rhs) / max|a'|`` over the sorted-neighbour and extreme pairs.
    details: ``sharp_slack`` with ``R*`` (:func:`sharp_remainder_bound`),
    ``remainder_over_R`` and ``remainder_over_sharp`` (how tight each bound is).
    """
    hi, lo = sorted_pairs(cfg.a)
    new = _noisy_update(cfg)
    a = cfg.a
    valid = a.gather(-1, hi) > a.gather(-1, lo)
    gap, gap_new, vt, rem = _pair_decomposition(cfg, hi, lo, new, valid)
    scale = new.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    base = gap * (1 + cfg.beta[:, None] * cfg.kappa[:, None] * vt)
    R = noisy_remainder_bound(cfg.a, cfg.beta, cfg.delta, cfg.eta)[:, None]
    Rs = sharp_remainder_bound(cfg.a, cfg.beta, cfg.delta, cfg.eta)[:, None]
    slack = _worst((gap_new.abs() - (base - R)) / scale, valid, largest=False)
    sharp = _worst((gap_new.abs() - (base - Rs)) / scale, valid, largest=False)
    tiny = torch.finfo(torch.float64).tiny
    details = {
        "sharp_slack": sharp,
        "remainder_over_R": _worst(rem.abs() / R.clamp_min(tiny), valid & (R > 0), largest=True),
        "remainder_over_sharp": _worst(
            rem.abs() / Rs.clamp_min(tiny), valid & (Rs > 0), largest=True
        ),
    }
    return CheckResult("D.7", "inequality", slack, ROUNDING, details)


def check_d8(cfg: Config) -> CheckResult:
    """Corollary D.8: noisy off-pole attention ``<= e^{2 delta}`` times the D.3 bound.

    values: ``min_i (bound_i - off_pole_i)`` under the noisy rows (``>= 0``).
    """
    p = torch.softmax(_logits(cfg) + cfg.eps, -1)
    off = off_pole_attention(p, cfg.a, cfg.kappa)
    slack = (off_pole_bound(cfg.a, cfg.kappa, cfg.delta) - off).min(-1).values
    return CheckResult("D.8", "inequality", slack, ROUNDING)


def check_d9(cfg: Config) -> CheckResult:
    """Corollary D.9: the noisy within-tail deviation identity.

    For tokens on the pole's side of zero, ``r = (a_pole - a_i) / a_pole`` obeys
    ``r' = (r (1 + beta kappa V~) + rho / a_pole) / (1 + (beta g~_pole(kappa a_pole)
    + eta_pole) / a_pole)`` with ``V~``, ``rho`` the Theorem D.7 split using the
    pole's noisy row. values: relative residual (floor ``FLOOR``). details:
    ``remainder_slack``: ``min (R - |rho|) / max|a'|`` (``>= 0``).
    """
    a, beta, kappa = cfg.a, cfg.beta[:, None], cfg.kappa[:, None]
    new = _noisy_update(cfg)
    T = a.shape[-1]
    R = noisy_remainder_bound(a, cfg.beta, cfg.delta, cfg.eta)[:, None]
    scale = new.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    res = torch.zeros(a.shape[0], dtype=a.dtype)
    rem_slack = torch.full_like(res, float("inf"))
    others = torch.arange(T).expand(a.shape[0], T)
    for pick in (torch.argmax, torch.argmin):
        k = pick(a, dim=-1, keepdim=True)
        pole = k.expand(-1, T)
        a_pole = a.gather(-1, k)
        same = (a * a_pole > 0) & (a != a_pole)
        gap, gap_new, vt, rho = _pair_decomposition(cfg, pole, others, new, same)
        e_pole = _rows(cfg.eps, k)
        g_pole = g(kappa * a_pole, a.unsqueeze(-2), e_pole)
        eta_pole = cfg.eta_vec.gather(-1, k)
        # the identity in r = gap / a_pole, multiplied through by a_pole: no division
        # by a pole near zero (as in check_d4)
        rhs = (gap * (1 + beta * kappa * vt) + rho) / (a_pole + beta * g_pole + eta_pole)
        lhs = gap_new / new.gather(-1, k)
        checked = same & torch.isfinite(gap / a_pole)  # r is a float64 (as in check_d4)
        res = torch.maximum(
            res, _worst(_rel(lhs, rhs, torch.full_like(lhs, FLOOR)), checked, largest=True)
        )
        slack = _worst((R - rho.abs()) / scale, same, largest=False)
        rem_slack = torch.minimum(rem_slack, slack)
    return CheckResult("D.9", "identity", res, IDENTITY_TOL, {"remainder_slack": rem_slack})


def check_d10(cfg: Config) -> CheckResult:
    """Theorem D.10: curvature of the noisy per-token map.

    ``F_i(x) = x + sum_k p~_ik(kappa x) (beta a_k + xi_k) + eta_i`` with
    ``p~_ik(s) = softmax_k(s a_k + eps_ik)`` has
    ``F_i''(x) = kappa^2 (beta mu3(p~_i) + E_{p~_i}[(a - abar)^2 (xi - xibar)])``:
    the D.5 term under the noisy rule plus the value-noise term. Checked at
    ``x = a_i``; ``F_i''`` by double automatic differentiation. values: relative
    residual, floor ``FLOOR kappa^2 range(a)^2 (beta range(a) + max|xi|)``.
    """
    a, beta, kappa, xi = cfg.a, cfg.beta[:, None], cfg.kappa[:, None], cfg.xi

    def fmap(x: Tensor) -> Tensor:
        s = kappa * x
        return x + beta * centred_g(s, a, cfg.eps) + centred_g(s, a, cfg.eps, xi)

    x = a
    x_req = x.detach().clone().requires_grad_(True)
    (d1,) = torch.autograd.grad(fmap(x_req).sum(), x_req, create_graph=True)
    (lhs,) = torch.autograd.grad(d1.sum(), x_req)
    p = attention(a.unsqueeze(-2), kappa * x, cfg.eps)
    mean, _, mu3 = attention_moments(p, a.unsqueeze(-2))
    dev = a.unsqueeze(-2) - mean.unsqueeze(-1)
    xi_dev = xi.unsqueeze(-2) - (p * xi.unsqueeze(-2)).sum(-1, keepdim=True)
    value_term = (p * dev**2 * xi_dev).sum(-1)
    rhs = kappa**2 * (beta * mu3 + value_term)
    spread = _spread(a)
    scale = cfg.kappa**2 * spread**2 * (cfg.beta * spread + xi.abs().amax(-1))
    res = _rel(lhs, rhs, FLOOR * scale[:, None]).max(-1).values
    return CheckResult(
        "D.10", "identity", res, IDENTITY_TOL, {"value_term": value_term.abs().amax(-1)}
    )
