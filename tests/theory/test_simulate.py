"""Simulator: shapes, determinism, noise bounds, batched = looped, regression fixtures."""

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import theory
from tests.theory._make_fixtures import CASES, compute


def test_shape_dtype_and_initial_row():
    a0 = torch.randn(2, 3, 5)
    traj = theory.simulate(a0, 4, beta=0.5, kappa=2.0)
    assert traj.shape == (2, 3, 5, 5) and traj.dtype == torch.float64
    assert torch.equal(traj[..., 0, :], a0.double())


def test_noiseless_is_deterministic_and_matches_layer_update():
    a0 = torch.randn(4, 7, dtype=torch.float64)
    t1 = theory.simulate(a0, 6, beta=0.3, kappa=1.5)
    assert torch.equal(t1, theory.simulate(a0, 6, beta=0.3, kappa=1.5))
    a = a0
    for layer in range(6):
        a = theory.layer_update(a, beta=0.3, kappa=1.5)
        torch.testing.assert_close(t1[:, layer + 1], a, rtol=1e-12, atol=1e-12)


def test_per_sequence_parameters_equal_separate_runs():
    a0 = torch.randn(3, 5, dtype=torch.float64)
    beta, kappa = torch.tensor([0.1, 1.0, 2.0]), torch.tensor([3.0, 0.5, 0.0])
    batched = theory.simulate(a0, 3, beta=beta, kappa=kappa)
    for i in range(3):
        one = theory.simulate(a0[i], 3, beta=float(beta[i]), kappa=float(kappa[i]))
        torch.testing.assert_close(batched[i], one, rtol=1e-13, atol=1e-13)


@settings(max_examples=15, deadline=None)
@given(
    delta=st.floats(0, 2),
    eta=st.floats(0, 2),
    seed=st.integers(0, 1000),
    noise=st.sampled_from(["uniform", "adversarial"]),
)
def test_noise_within_bounds(delta, eta, seed, noise):
    a = torch.randn(4, 6, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    eps, eta_vec = theory.sample_noise(a, delta, eta, noise=noise, generator=gen)
    assert eps.shape == (4, 6, 6) and eta_vec.shape == (4, 6)
    assert eps.abs().max() <= delta and eta_vec.abs().max() <= eta
    t1 = theory.simulate(a, 3, beta=1.0, kappa=1.0, delta=delta, eta=eta, seed=seed, noise=noise)
    t2 = theory.simulate(a, 3, beta=1.0, kappa=1.0, delta=delta, eta=eta, seed=seed, noise=noise)
    assert torch.equal(t1, t2)


def test_single_token_and_all_equal():
    one = theory.simulate(torch.tensor([2.0]), 3, beta=1.0, kappa=5.0)
    torch.testing.assert_close(one[:, 0], torch.tensor([2.0, 4.0, 8.0, 16.0], dtype=torch.float64))
    eq = theory.simulate(torch.full((4,), -1.0), 2, beta=0.5, kappa=100.0)
    assert torch.equal(eq[-1], torch.full((4,), -2.25, dtype=torch.float64))


def test_huge_kappa_is_finite():
    traj = theory.simulate(torch.randn(8, 16) * 3, 10, beta=1.0, kappa=1e6)
    assert torch.isfinite(traj).all()


def test_regression_fixtures():
    """Seeded trajectories: a change in numerics shows up here first."""
    stored = json.loads((Path(__file__).parent / "fixtures" / "trajectories.json").read_text())
    assert set(stored) == set(CASES)
    now = compute()
    for key, value in stored.items():
        torch.testing.assert_close(
            torch.tensor(now[key]), torch.tensor(value), rtol=1e-12, atol=1e-12, msg=key
        )


@pytest.mark.parametrize(
    "kwargs, arg",
    [
        ({"a0": torch.zeros(())}, "a0"),
        ({"a0": torch.tensor([float("nan")])}, "a0"),
        ({"n_layers": -1}, "n_layers"),
        ({"delta": -0.1}, "delta"),
        ({"eta": -0.1}, "eta"),
        ({"noise": "gaussian"}, "noise"),
        ({"kappa": float("inf")}, "kappa"),
    ],
)
def test_validation_names_argument(kwargs, arg):
    args = {"a0": torch.zeros(3), "n_layers": 2, "beta": 1.0, "kappa": 1.0, **kwargs}
    a0, n = args.pop("a0"), args.pop("n_layers")
    with pytest.raises(ValueError, match=arg):
        theory.simulate(a0, n, **args)
