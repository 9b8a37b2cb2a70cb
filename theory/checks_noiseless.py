"""Executable checks of the noiseless statements (Lemma D.1 - Theorem D.5).

Each ``check_*`` takes a :class:`theory.configs.Config` (its noise fields are
ignored: these statements are about ``F(a) = a + beta g(kappa a)``) and returns a
:class:`theory.configs.CheckResult`. Identities are measured as relative
residuals ``|lhs - rhs| / max(|lhs|, |rhs|, floor)``, where ``floor`` is
``FLOOR`` times the natural scale of the quantity (built from ``range(a)``, or
``max|a|`` when all activations are equal): below it the quantity is
smaller than the float64 resolution of the terms it is computed from (e.g. a
gap ``a_i' - a_j'`` below ``1e-5 max|a'|``), and a relative error is meaningless.
Derivatives are taken by automatic differentiation (independent of the closed
forms they are compared with) of a function centred on the attention mode.
"""

from __future__ import annotations

import torch
from torch import Tensor

from theory.configs import ROUNDING, CheckResult, Config, sorted_pairs
from theory.quantities import (
    attention,
    attention_moments,
    g,
    mean_variance,
    off_pole_attention,
    off_pole_bound,
    pole_margins,
)
from theory.simulate import layer_update

__all__ = ["check_d1", "check_d2", "check_d3", "check_d4", "check_d5"]

IDENTITY_TOL = 1e-9
FLOOR = 1e-5


def _rel(lhs: Tensor, rhs: Tensor, floor: Tensor) -> Tensor:
    den = torch.maximum(torch.maximum(lhs.abs(), rhs.abs()), floor)
    out = (lhs - rhs).abs() / den
    return torch.where(den > 0, out, torch.zeros_like(out))


def _range(a: Tensor) -> Tensor:
    return a.max(-1).values - a.min(-1).values


def _spread(a: Tensor) -> Tensor:
    """``range(a)``, or ``max|a|`` when all activations are equal (floors of residuals)."""
    rng = _range(a)
    return torch.where(rng > 0, rng, a.abs().amax(-1))


def _worst(values: Tensor, mask: Tensor, *, largest: bool) -> Tensor:
    """Per-problem max (or min) over masked entries; 0 (or +inf) when none."""
    fill = float("-inf") if largest else float("inf")
    v = torch.where(mask, values, torch.full_like(values, fill))
    out = v.max(-1).values if largest else v.min(-1).values
    empty = torch.zeros_like(out) if largest else torch.full_like(out, float("inf"))
    return torch.where(mask.any(-1), out, empty)


def centred_g(s: Tensor, a: Tensor, eps: Tensor | None = None, xi: Tensor | None = None) -> Tensor:
    """``sum_j p_j(s) (w_j - w_k)`` with ``w = a`` (or ``xi``), ``k`` the attention mode.

    s: ``[B, N]`` arguments, a: ``[B, T]``, eps: ``[B, N, T]`` or None. The constant
    ``w_k`` shift leaves every derivative in ``s`` unchanged and keeps automatic
    differentiation accurate when attention is concentrated. Returns ``[B, N]``.
    """
    logits = s.unsqueeze(-1) * a.unsqueeze(-2)
    if eps is not None:
        logits = logits + eps
    p = torch.softmax(logits, dim=-1)
    w = (a if xi is None else xi).unsqueeze(-2).expand_as(p)
    k = logits.detach().argmax(-1, keepdim=True)
    return (p * (w - w.gather(-1, k))).sum(-1)


def masked_mean_variance(
    a: Tensor, lo: Tensor, hi: Tensor, kappa: Tensor, mask: Tensor, eps: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """:func:`mean_variance` for the pairs selected by ``mask`` only (zeros elsewhere).

    a: ``[B, T]``; lo, hi, mask: ``[B, P]``; kappa: ``[B]``; eps: ``[B, P, T]`` or None.
    Returns ``(vbar, err)`` ``[B, P]``.
    """
    b, n = mask.nonzero(as_tuple=True)
    vbar = torch.zeros(mask.shape, dtype=a.dtype)
    err = torch.zeros_like(vbar)
    if b.numel():
        e = None if eps is None else eps[b, n]
        vbar[b, n], err[b, n] = mean_variance(a[b], lo[b, n], hi[b, n], kappa[b], e)
    return vbar, err


def _derivatives(fn, s: Tensor, order: int) -> Tensor:
    s = s.detach().clone().requires_grad_(True)
    out = fn(s)
    for _ in range(order):
        (out,) = torch.autograd.grad(out.sum(), s, create_graph=True)
    return out.detach()


def check_d1(cfg: Config) -> CheckResult:
    """Lemma D.1: ``g'(s) = Var_{p(s)}[a] >= 0`` at every query argument ``s = kappa a_i``.

    values: relative residual of ``g'`` (autograd) vs the attention variance,
    floor ``FLOOR range(a)^2``. details: ``min_var`` (must be ``>= 0``).
    """
    a = cfg.a
    s = cfg.kappa[:, None] * a
    lhs = _derivatives(lambda t: centred_g(t, a), s, 1)
    var = attention_moments(attention(a.unsqueeze(-2), s), a.unsqueeze(-2))[1]
    res = _rel(lhs, var, FLOOR * _spread(a)[:, None] ** 2).max(-1).values
    return CheckResult("D.1", "identity", res, IDENTITY_TOL, {"min_var": var.min(-1).values})


def _gap_terms(cfg: Config):
    a = cfg.a
    hi, lo = sorted_pairs(a)
    a_hi, a_lo = a.gather(-1, hi), a.gather(-1, lo)
    vbar, err = masked_mean_variance(a, a_lo, a_hi, cfg.kappa, a_hi > a_lo)
    return a, hi, lo, a_hi, a_lo, vbar, err


def check_d2(cfg: Config) -> CheckResult:
    """Theorem D.2: ``a_i' - a_j' = (a_i - a_j)(1 + beta kappa Vbar_ij)`` for ``a_i > a_j``.

    ``a'`` from the simulator's layer map, ``Vbar`` by quadrature
    (:func:`theory.quantities.mean_variance`). values: relative residual over the
    sorted-neighbour and extreme pairs, floor ``FLOOR max|a'|``. details:
    ``order_slack`` (``min (a_i' - a_j') >= 0``), ``quad_err`` (max quadrature
    error estimate of ``beta kappa Vbar`` relative to the gap factor).
    """
    a, hi, lo, a_hi, a_lo, vbar, err = _gap_terms(cfg)
    new = layer_update(a, beta=cfg.beta, kappa=cfg.kappa)
    lhs = new.gather(-1, hi) - new.gather(-1, lo)
    factor = 1 + cfg.beta[:, None] * cfg.kappa[:, None] * vbar
    rhs = (a_hi - a_lo) * factor
    valid = a_hi > a_lo
    floor = FLOOR * new.abs().amax(-1, keepdim=True)
    res = _worst(_rel(lhs, rhs, floor), valid, largest=True)
    quad = _worst(cfg.beta[:, None] * cfg.kappa[:, None] * err / factor, valid, largest=True)
    order = _worst(lhs, valid, largest=False)
    return CheckResult(
        "D.2", "identity", res, IDENTITY_TOL, {"order_slack": order, "quad_err": quad}
    )


def check_d3(cfg: Config) -> CheckResult:
    """Corollary D.3: off-pole attention bound, and pole margins grow over a layer.

    values: ``min`` of (bound - off-pole attention) over queries and of the
    margin growth ``(Delta' - Delta) / max|a'|``; both must be ``>= 0``.
    details: ``bound_loosens``, the fraction of queries whose bound *grows*
    over the layer. The paper's "the bound tightens with depth" needs ``|a_i|``
    not to shrink, which Theorem D.2 does not give: a small positive token
    among mostly negative ones moves towards (and across) zero.
    """
    a, kappa = cfg.a, cfg.kappa
    logits = kappa[:, None, None] * a.unsqueeze(-1) * a.unsqueeze(-2)
    p = torch.softmax(logits, dim=-1)
    off = off_pole_attention(p, a, kappa)
    slack = (off_pole_bound(a, kappa) - off).min(-1).values
    details = {"off_pole_slack": slack}
    if a.shape[-1] >= 2:
        new = layer_update(a, beta=cfg.beta, kappa=kappa)
        scale = new.abs().amax(-1).clamp_min(1e-300)
        up0, dn0 = pole_margins(a)
        up1, dn1 = pole_margins(new)
        margin = torch.minimum(up1 - up0, dn1 - dn0) / scale
        details["margin_growth"] = margin
        loosens = off_pole_bound(new, kappa) > off_pole_bound(a, kappa) * (1 + 1e-12)
        details["bound_loosens"] = loosens.double().mean(-1)
        slack = torch.minimum(slack, margin)
    return CheckResult("D.3", "inequality", slack, ROUNDING, details)


def check_d4(cfg: Config) -> CheckResult:
    """Corollary D.4: the within-tail ratio identity behind equalisation.

    With ``r_i = (a_pole - a_i) / a_pole`` for tokens on the pole's side of zero,
    ``r_i' = r_i (1 + beta kappa Vbar_{pole,i}) / (1 + beta g(kappa a_pole) / a_pole)``.
    values: relative residual (floor ``FLOOR``). details: ``pole_slack``, the
    proof's bound ``|g(kappa a_max) - a_max| <= off_pole(max) * range(a)``,
    normalised by ``range(a)`` (``>= 0``). The asymptotic rate ``1 / (1 + beta)``
    is measured over depth by :func:`theory.population.equalisation_rate`.
    """
    a, beta, kappa = cfg.a, cfg.beta, cfg.kappa
    new = layer_update(a, beta=beta, kappa=kappa)
    res = torch.zeros(a.shape[0], dtype=a.dtype)
    pole_slack = torch.full_like(res, float("inf"))
    rng = _range(a)
    for pick in (torch.argmax, torch.argmin):
        k = pick(a, dim=-1, keepdim=True)
        a_pole = a.gather(-1, k)
        same = (a * a_pole > 0) & (a != a_pole)
        vbar, _ = masked_mean_variance(a, a, a_pole.expand_as(a), kappa, same)
        g_pole = g(kappa[:, None] * a_pole, a.unsqueeze(-2))
        # r (1 + b k Vbar) / (1 + b g / a_pole) with r = (a_pole - a) / a_pole, multiplied
        # through by a_pole: no division by a pole near zero (a_pole = -2.2e-308
        # overflowed r to -1e308 and the product to -inf)
        rhs = (
            (a_pole - a)
            * (1 + beta[:, None] * kappa[:, None] * vbar)
            / (a_pole + beta[:, None] * g_pole)
        )
        pole_new = new.gather(-1, k)
        lhs = (pole_new - new) / pole_new
        # the statement is about r = (a_pole - a) / a_pole: where r is no float64 (a
        # subnormal pole: a = [1, 4.9e-324] gives r = -inf) there is nothing to check
        checked = same & torch.isfinite((a_pole - a) / a_pole)
        res = torch.maximum(
            res, _worst(_rel(lhs, rhs, torch.full_like(lhs, FLOOR)), checked, largest=True)
        )
        p_pole = attention(a, kappa * a_pole[:, 0])
        off = p_pole.scatter(-1, k, torch.zeros_like(p_pole)).sum(-1)
        bound_slack = (off * rng - (g_pole[:, 0] - a_pole[:, 0]).abs()) / rng.clamp_min(1e-300)
        pole_slack = torch.minimum(pole_slack, bound_slack)
    return CheckResult("D.4", "identity", res, IDENTITY_TOL, {"pole_slack": pole_slack})


def check_d5(cfg: Config) -> CheckResult:
    """Theorem D.5: ``F''(x) = beta kappa^2 mu3(p(kappa x))``.

    Checked at every token ``x = a_i`` and every midpoint of sorted neighbours;
    ``F''`` by double automatic differentiation of ``x + beta g(kappa x)``.
    values: relative residual, floor ``FLOOR beta kappa^2 range(a)^3``.
    """
    a, beta, kappa = cfg.a, cfg.beta, cfg.kappa
    srt = a.sort(-1).values
    x = torch.cat([a, (srt[:, 1:] + srt[:, :-1]) / 2], dim=-1)
    lhs = _derivatives(lambda t: t + beta[:, None] * centred_g(kappa[:, None] * t, a), x, 2)
    p = attention(a.unsqueeze(-2), kappa[:, None] * x)
    mu3 = attention_moments(p, a.unsqueeze(-2))[2]
    rhs = beta[:, None] * kappa[:, None] ** 2 * mu3
    floor = FLOOR * (beta * kappa**2 * _spread(a) ** 3)[:, None]
    res = _rel(lhs, rhs, floor).max(-1).values
    return CheckResult(
        "D.5", "identity", res, IDENTITY_TOL, {"max_abs_mu3": mu3.abs().max(-1).values}
    )
