"""Property tests: every Appendix D statement holds on random one-layer problems."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import theory
from theory.configs import CheckResult, Config

_values = st.one_of(
    st.floats(-5, 5, allow_nan=False),
    st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]),  # frequent exact ties
)


@st.composite
def problems(draw):
    T = draw(st.integers(1, 8))
    a = draw(st.lists(_values, min_size=T, max_size=T))
    if draw(st.booleans()) and T > 1 and draw(st.integers(0, 4)) == 0:
        a = [a[0]] * T  # all equal
    beta = draw(st.one_of(st.just(0.0), st.floats(1e-6, 5)))
    kappa = draw(st.one_of(st.just(0.0), st.floats(1e-6, 20), st.just(1e4)))  # huge kappa too
    delta = draw(st.one_of(st.just(0.0), st.floats(0, 1)))
    eta = draw(st.one_of(st.just(0.0), st.floats(0, 1)))
    noise = draw(st.sampled_from(["uniform", "adversarial"]))
    seed = draw(st.integers(0, 2**16))
    at = torch.tensor([a], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    eps, eta_vec = theory.sample_noise(at, delta, eta, noise=noise, generator=gen)
    xi = torch.randn(1, T, dtype=torch.float64, generator=gen)
    return Config(at, beta, kappa, delta, eta, eps, eta_vec, xi)


_fast = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", list(theory.CHECKS))
@_fast
@given(cfg=problems())
def test_statement_holds(name, cfg):
    result = theory.CHECKS[name](cfg)
    assert result.passed, (name, result.values, cfg.a, cfg.beta, cfg.kappa, cfg.delta)


@pytest.mark.parametrize("name, delta, eta", [("D.4", 0.0, 0.0), ("D.9", 0.2, 0.1)])
@pytest.mark.parametrize("pole", [-2.2250738585072014e-308, -1e-300, 1e-300, 5e-324])
@pytest.mark.parametrize("kappa", [0.0, 1.0, 1e4])
def test_ratio_identities_hold_with_a_pole_next_to_zero(name, delta, eta, pole, kappa):
    """The ratio identities divide by the pole in their statements; computed that way,
    a pole of -2.2e-308 (found by hypothesis) overflowed to -inf and a NaN residual. A
    subnormal pole (5e-324, also found) makes r itself no float: nothing to check."""
    a = torch.tensor([[3.0 if pole > 0 else -3.0, pole]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    eps, eta_vec = theory.sample_noise(a, delta, eta, generator=gen)
    result = theory.CHECKS[name](Config(a, 1.0, kappa, delta, eta, eps, eta_vec))
    assert result.passed, result.values


def test_batched_random_configs_all_pass():
    cfg = theory.random_configs(64, tokens=6, seed=1)
    for name, result in theory.run_checks(cfg).items():
        assert result.passed, (name, result.max_violation)


def test_sharp_remainder_is_attained_and_never_exceeded():
    """Two tokens, kappa -> 0, adversarial noise: |remainder| = R* exactly, R* < R."""
    a = torch.tensor([[-1.0, 2.0]], dtype=torch.float64)
    delta, eta = 0.3, 0.1
    eps, eta_vec = theory.sample_noise(a, delta, eta, noise="adversarial")
    cfg = Config(a, 1.5, 0.0, delta, eta, eps, eta_vec)
    res = theory.check_d7(cfg)
    assert res.passed
    assert float(res.details["remainder_over_sharp"]) == pytest.approx(1.0, rel=1e-12)
    assert float(res.details["remainder_over_R"]) < 0.5


def test_off_pole_bound_can_loosen():
    """Counter-example to "the off-pole bound tightens with depth" for every token."""
    a = torch.tensor([[0.3, -1.0, -1.2, -1.5]], dtype=torch.float64)
    res = theory.check_d3(Config(a, 1.0, 0.5))
    assert res.passed
    assert float(res.details["bound_loosens"]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_sweep_random_configs(seed):
    cfg = theory.random_configs(1000, seed=100 + seed)
    for name, result in theory.run_checks(cfg).items():
        assert result.passed, (name, result.max_violation)


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"a": torch.zeros(3)}, "a"),
        ({"a": torch.zeros(1, 3), "beta": -1.0}, "beta"),
        ({"a": torch.zeros(1, 3), "delta": -1.0}, "delta"),
        ({"a": torch.zeros(1, 3), "eps": torch.zeros(1, 2, 2)}, "eps"),
        ({"a": torch.zeros(1, 3), "eta": 0.1, "eta_vec": torch.ones(1, 3)}, "eta_vec"),
    ],
)
def test_config_validation_names_argument(kwargs, arg):
    kwargs = {"beta": 1.0, "kappa": 1.0, **kwargs}
    with pytest.raises(ValueError, match=arg):
        Config(**kwargs)


def test_unknown_statement():
    with pytest.raises(ValueError, match="statements"):
        theory.run_checks(theory.random_configs(2, tokens=3), ["D.11"])


_INF, _NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "kind, values, violation",
    [
        ("inequality", [0.5, -_INF], _INF),  # bound infinitely violated
        ("inequality", [0.5, _NAN], _INF),  # slack not measurable
        ("inequality", [_INF, -1e-3], 1e-3),  # +inf skipped, the real deficit kept
        ("identity", [0.0, _INF], _INF),  # residual infinitely large
        ("identity", [0.0, -_INF], _INF),
        ("identity", [0.0, _NAN], _INF),
    ],
)
def test_non_finite_violations_fail(kind, values, violation):
    res = CheckResult("D.x", kind, torch.tensor(values, dtype=torch.float64), 1e-9)
    assert res.max_violation == pytest.approx(violation)
    assert not res.passed


@pytest.mark.parametrize("values", [[_INF, _INF], [_INF, 0.5], [_INF, 0.0]])
def test_infinite_slack_means_nothing_to_check(values):
    res = CheckResult("D.x", "inequality", torch.tensor(values, dtype=torch.float64), 1e-9)
    assert res.max_violation == 0.0
    assert res.passed


def test_statement_check_reports_infinite_deficit(monkeypatch):
    """A real check whose bound evaluates to -inf (D.8's off-pole bound) fails."""
    import theory.checks_noisy as noisy

    monkeypatch.setattr(noisy, "off_pole_bound", lambda a, *_: torch.full_like(a, -_INF))
    res = noisy.check_d8(theory.random_configs(4, tokens=5))
    assert res.max_violation == _INF
    assert not res.passed


def test_check_result_kind_validated():
    with pytest.raises(ValueError, match="kind"):
        CheckResult("D.x", "equality", torch.zeros(1), 1e-9)
