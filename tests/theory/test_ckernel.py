"""The compiled simulator kernel itself: its exp, its build cache, its fallbacks.

Its trajectories are held to the reference in test_simulate_speed_equiv.py.
"""

import importlib
import math
import shutil

import pytest
import torch

import theory
from tests.theory.test_simulate_speed_equiv import _reference
from theory import _ckernel

needs_compiler = pytest.mark.skipif(_ckernel._compiler() is None, reason="no C compiler here")


def _fresh_state(monkeypatch):
    monkeypatch.setattr(_ckernel, "_state", {"lib": None, "tried": False, "status": ""})


@needs_compiler
def test_kernel_builds_where_a_compiler_exists():
    assert _ckernel.load_kernel() is not None, _ckernel.kernel_status()
    assert _ckernel.kernel_status().startswith("compiled")


@needs_compiler
def test_compiled_exp_within_one_ulp():
    gen = torch.Generator().manual_seed(4)
    x = torch.cat(
        (
            torch.linspace(-60, 0, 200_001, dtype=torch.float64),
            -60 * torch.rand(100_000, dtype=torch.float64, generator=gen),
            torch.tensor([0.0, -0.0, -1e-300, -math.log(2), -59.99999], dtype=torch.float64),
        )
    )
    got, ref = _ckernel.compiled_exp(x), torch.exp(x)
    ulp = torch.nextafter(ref, torch.full_like(ref, math.inf)) - ref
    assert float(((got - ref).abs() / ulp).max()) <= 1.0


@needs_compiler
def test_build_is_cached_and_falls_back_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPERACT_CACHE_DIR", str(tmp_path))
    cc = _ckernel._compiler()
    built = _ckernel._build(cc)
    assert built.parent == tmp_path / "kernels" and built.exists()
    stamp = built.stat().st_mtime_ns
    assert _ckernel._build(cc) == built and built.stat().st_mtime_ns == stamp  # reused
    a = torch.randn(6, 9, dtype=torch.float64)
    ref = _reference(a, 3, 0.4, 1.3)[..., -1, :]

    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    _fresh_state(monkeypatch)
    assert _ckernel.load_kernel() is None
    assert "build failed" in _ckernel.kernel_status()
    torch.testing.assert_close(theory.simulate(a, 3, beta=0.4, kappa=1.3)[..., -1, :], ref)

    monkeypatch.delenv("CC")
    monkeypatch.setenv("SUPERACT_SIMULATE_KERNEL", "torch")
    _fresh_state(monkeypatch)
    assert _ckernel.load_kernel() is None
    assert "off" in _ckernel.kernel_status()


def test_no_compiler_means_torch_path(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CC", raising=False)
    _fresh_state(monkeypatch)
    assert _ckernel._compiler() is None
    assert _ckernel.load_kernel() is None and "no C compiler" in _ckernel.kernel_status()
    a = torch.randn(4, 7, dtype=torch.float64)
    torch.testing.assert_close(
        theory.simulate(a, 2, beta=0.5, kappa=2.0)[..., -1, :],
        _reference(a, 2, 0.5, 2.0)[..., -1, :],
    )


def test_only_cpu_float64_without_grad_reaches_the_kernel(monkeypatch):
    sim_module = importlib.import_module("theory.simulate")  # the module, not the function
    calls = []

    def spy(a0, beta, kappa, n_layers):
        calls.append(a0.dtype)
        return _ckernel.compiled_trajectory(a0, beta, kappa, n_layers)

    monkeypatch.setattr(sim_module, "compiled_trajectory", spy)
    a = torch.randn(3, 5, dtype=torch.float64)
    theory.simulate(a, 2, beta=0.5, kappa=1.0, dtype=torch.float32)
    theory.simulate(a.clone().requires_grad_(True), 2, beta=0.5, kappa=1.0)
    theory.simulate(a, 2, beta=0.5, kappa=1.0, delta=0.1, seed=0)
    assert calls == []
    theory.simulate(a, 2, beta=0.5, kappa=1.0)
    assert calls == [torch.float64]
