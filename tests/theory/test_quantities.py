"""Quantities: quadrature against the exact secant, moments, bounds."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import theory


@settings(max_examples=25, deadline=None)
@given(
    a=st.lists(st.floats(-4, 4), min_size=2, max_size=8),
    kappa=st.one_of(st.floats(1e-3, 30), st.just(1e3)),
    i=st.integers(0, 7),
    j=st.integers(0, 7),
)
def test_mean_variance_equals_secant_of_g(a, kappa, i, j):
    """FTC: int_lo^hi Var dt = (g(kappa hi) - g(kappa lo)) / (kappa (hi - lo))."""
    a = torch.tensor(a, dtype=torch.float64)
    lo, hi = a[i % len(a)], a[j % len(a)]
    if hi - lo < 1e-3:
        return
    vbar, err = theory.mean_variance(a, lo, hi, kappa)
    secant = (theory.g(kappa * hi, a) - theory.g(kappa * lo, a)) / (kappa * (hi - lo))
    scale = (a.max() - a.min()) ** 2
    # the secant divides two g's, each rounded to ~eps max|a|, by kappa (hi - lo)
    cancel = 8 * torch.finfo(torch.float64).eps * float(a.abs().max()) / float(kappa * (hi - lo))
    assert abs(float(vbar - secant)) <= 1e-11 * float(scale) + 1e-12 * abs(float(secant)) + cancel
    assert float(err) <= 1e-9 * float(scale)


def test_moments_match_naive_when_well_conditioned():
    a = torch.randn(5, 9, dtype=torch.float64)
    p = torch.softmax(torch.randn(5, 9, dtype=torch.float64), -1)
    mean, var, mu3 = theory.attention_moments(p, a)
    m = (p * a).sum(-1)
    torch.testing.assert_close(mean, m)
    torch.testing.assert_close(var, (p * (a - m[:, None]) ** 2).sum(-1))
    torch.testing.assert_close(mu3, (p * (a - m[:, None]) ** 3).sum(-1))


def test_pole_margins_and_remainder():
    a = torch.tensor([[3.0, 1.0, -2.0, -2.5]], dtype=torch.float64)
    up, down = theory.pole_margins(a)
    assert float(up) == 2.0 and float(down) == 0.5
    R = theory.noisy_remainder_bound(a, 2.0, 0.0, 0.25)
    assert float(R) == 0.5
    Rs = theory.sharp_remainder_bound(
        a, torch.tensor([2.0]), torch.tensor([0.1]), torch.tensor([0.0])
    )
    assert float(Rs) < float(theory.noisy_remainder_bound(a, 2.0, 0.1, 0.0))


def test_g_is_increasing():
    a = torch.randn(12, dtype=torch.float64)
    s = torch.linspace(-5, 5, 101, dtype=torch.float64)
    vals = theory.g(s, a.expand(101, 12))
    assert (vals.diff() >= 0).all()
