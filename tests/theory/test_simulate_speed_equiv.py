"""The fast noiseless simulator against the plain softmax layer map.

Every test runs twice: through the compiled kernel (theory/_ckernel.py, skipped only
where no kernel can be built) and through the pure-torch path (theory/_fast.py). The
reference is ``theory.layer_update`` (softmax of the full logits + matvec), iterated.
Differences are measured relative to the row scale ``max_j |a_j|`` of the reference.
"""

import pytest
import torch

import theory
from theory import _ckernel, _fast


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def kernel(request, monkeypatch):
    if request.param == "torch":
        monkeypatch.setitem(_ckernel._state, "lib", None)
        monkeypatch.setitem(_ckernel._state, "tried", True)
    elif _ckernel.load_kernel() is None:
        pytest.skip(_ckernel.kernel_status())
    return request.param


def _reference(a0, n_layers, beta, kappa):
    a, steps = a0, [a0]
    for _ in range(n_layers):
        a = theory.layer_update(a, beta=beta, kappa=kappa)
        steps.append(a)
    return torch.stack(steps, dim=-2)


def _rel_diff(x, ref):
    scale = ref.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    return float(((x - ref).abs() / scale).max())


def _batch(n, T, gen, *, ties=False):
    a = torch.randn(n, T, dtype=torch.float64, generator=gen) * torch.rand(
        n, 1, dtype=torch.float64, generator=gen
    ).mul(4)
    if ties:  # few distinct values: many exact ties, incl. at the max / min
        a = torch.round(a)
    beta = torch.rand(n, dtype=torch.float64, generator=gen) * 2 - 0.5
    kappa = torch.rand(n, dtype=torch.float64, generator=gen) * 4 - 1
    return a, beta, kappa


@pytest.mark.parametrize("T", [1, 2, 3, 8, 15, 16, 17, 40, 64, 128, 131])
@pytest.mark.parametrize("ties", [False, True])
def test_one_layer_matches_softmax_layer_map(T, ties):
    gen = torch.Generator().manual_seed(T + 1000 * ties)
    a, beta, kappa = _batch(200, T, gen, ties=ties)
    fast = theory.simulate(a, 1, beta=beta, kappa=kappa)[:, 1]
    ref = theory.layer_update(a, beta=beta, kappa=kappa)
    # summation-order level: the reference itself moves by ~1e-14 (up to 4e-14 at
    # T = 256) when the tokens are permuted; the fast path differs by 2-4x that
    assert _rel_diff(fast, ref) < 2e-13


@pytest.mark.parametrize("T", [1, 5, 16, 33, 128])
def test_trajectory_matches_softmax_layer_map(T):
    gen = torch.Generator().manual_seed(7 * T)
    a, beta, kappa = _batch(300, T, gen)
    fast = theory.simulate(a, 16, beta=beta, kappa=kappa)
    ref = _reference(a, 16, beta, kappa)
    # conditioning: how far the reference moves when only its summation order changes
    perm = torch.randperm(T, generator=gen)
    ref_perm = _reference(a[:, perm], 16, beta, kappa)[..., perm.argsort()]
    assert _rel_diff(fast, ref) < max(1e-12, 8 * _rel_diff(ref_perm, ref))
    assert _rel_diff(fast, ref) < 1e-11


@pytest.mark.parametrize("T", [5, 16, 33, 128])
def test_ties_stay_exact_and_short_trajectories_match(T):
    """Exact ties are kept exactly (as the reference does); a long tied trajectory is
    ill-conditioned (the reference itself diverges when its tokens are permuted), so
    only a few layers are compared."""
    gen = torch.Generator().manual_seed(7 * T + 1)
    a, beta, kappa = _batch(300, T, gen, ties=True)
    fast = theory.simulate(a, 3, beta=beta, kappa=kappa)
    assert _rel_diff(fast, _reference(a, 3, beta, kappa)) < 1e-13
    long = theory.simulate(a, 20, beta=beta, kappa=kappa)
    same = a.unsqueeze(-1) == a.unsqueeze(-2)
    last = long[:, -1]
    assert torch.equal((last.unsqueeze(-1) == last.unsqueeze(-2)) & same, same)


def test_benchmark_regime_matches():
    """The benchmark's setting (128 tokens, 32 layers, beta 0.3, kappa 0.5) on a subset."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(200, 128, dtype=torch.float64, generator=gen)
    fast = theory.simulate(a, 32, beta=0.3, kappa=0.5)
    ref = _reference(a, 32, 0.3, 0.5)
    assert _rel_diff(fast, ref) < 1e-12


@pytest.mark.parametrize("kappa", [1e3, 1e6, -1e6, 0.0])
def test_extreme_kappa(kappa):
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(64, 48, dtype=torch.float64, generator=gen) * 3
    a[:8, :5] = a[:8, 5:6]  # ties
    fast = theory.simulate(a, 6, beta=0.7, kappa=kappa)
    ref = _reference(a, 6, 0.7, kappa)
    assert torch.isfinite(fast).all()
    assert _rel_diff(fast, ref) < 1e-12


def test_all_equal_and_single_token_exact():
    eq = torch.full((3, 20), -1.5, dtype=torch.float64)
    traj = theory.simulate(eq, 3, beta=0.5, kappa=50.0)
    assert torch.equal(
        traj, (-1.5 * 1.5 ** torch.arange(4.0, dtype=torch.float64))[:, None].expand(3, 4, 20)
    )
    assert _rel_diff(traj, _reference(eq, 3, 0.5, 50.0)) < 1e-15
    one = torch.randn(10, 1, dtype=torch.float64)
    assert torch.equal(theory.simulate(one, 4, beta=1.0, kappa=3.0)[..., -1, 0], one[:, 0] * 16)


def test_order_changing_dynamics_beta_kappa_negative():
    """beta * kappa < 0 can reorder tokens: the kernel must re-sort."""
    gen = torch.Generator().manual_seed(11)
    a = torch.randn(100, 32, dtype=torch.float64, generator=gen)
    fast = theory.simulate(a, 12, beta=-1.5, kappa=2.0)
    ref = _reference(a, 12, -1.5, 2.0)
    assert _rel_diff(fast, ref) < 1e-12


def test_chunks_threads_and_serial_agree(monkeypatch):
    gen = torch.Generator().manual_seed(5)
    a, beta, kappa = _batch(100, 64, gen)
    monkeypatch.setattr(_fast, "_CHUNK", 16)  # several work items -> worker threads
    monkeypatch.setattr(_ckernel, "_CHUNKS_PER_WORKER", 7)
    threads = torch.get_num_threads()
    many = theory.simulate(a, 10, beta=beta, kappa=kappa)
    assert torch.get_num_threads() == threads  # restored
    torch.set_num_threads(1)
    try:
        serial = theory.simulate(a, 10, beta=beta, kappa=kappa)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(many, serial)


@pytest.mark.parametrize("noise", ["uniform", "adversarial"])
def test_noisy_path_unchanged(noise):
    """Noise keeps the plain per-layer path and its RNG draw order."""
    gen = torch.Generator().manual_seed(9)
    a = torch.randn(5, 12, dtype=torch.float64, generator=gen)
    got = theory.simulate(a, 4, beta=0.4, kappa=1.1, delta=0.3, eta=0.2, seed=17, noise=noise)
    g = torch.Generator().manual_seed(17)
    x, steps = a, [a]
    for _ in range(4):
        eps, eta_vec = theory.sample_noise(x, 0.3, 0.2, noise=noise, generator=g)
        x = theory.layer_update(x, beta=0.4, kappa=1.1, eps=eps, eta=eta_vec)
        steps.append(x)
    assert torch.equal(got, torch.stack(steps, dim=-2))


def test_empty_batch_and_zero_layers():
    a = torch.randn(0, 16, dtype=torch.float64)
    assert theory.simulate(a, 3, beta=1.0, kappa=1.0).shape == (0, 4, 16)
    b = torch.randn(4, 16, dtype=torch.float64)
    assert torch.equal(theory.simulate(b, 0, beta=1.0, kappa=1.0)[:, 0], b)


def test_float32_and_autograd_fall_back_or_match():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(20, 24, dtype=torch.float64, generator=gen)
    f32 = theory.simulate(a, 5, beta=0.5, kappa=1.0, dtype=torch.float32)
    assert f32.dtype == torch.float32
    assert _rel_diff(f32.double(), _reference(a, 5, 0.5, 1.0)) < 1e-5
    x = a.clone().requires_grad_(True)  # autograd needs the plain (differentiable) path
    traj = theory.simulate(x, 3, beta=0.5, kappa=1.0)
    (grad,) = torch.autograd.grad(traj[:, -1].sum(), x)
    assert torch.isfinite(grad).all()
    assert _rel_diff(traj.detach(), _reference(a, 3, 0.5, 1.0)) < 1e-14


def test_overflow_is_an_error_naming_the_layer():
    a = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"overflow torch.float64 at layer \d+"):
        theory.simulate(a, 400, beta=10.0, kappa=1.0)
    with pytest.raises(ValueError, match="overflow"):  # the plain per-layer map too
        theory.simulate(a, 400, beta=10.0, kappa=1.0, delta=0.1, seed=0)
