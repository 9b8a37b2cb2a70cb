"""Simulator of the scalar attention dynamics (SPEC §7, paper eq. (2)).

One layer maps concept activations ``a`` (``[..., T]``) to

    a'_i = a_i + beta * sum_j p_ij a_j + eta_i,   p_ij = softmax_j(kappa a_i a_j + eps_ij),

with ``|eps_ij| <= delta`` and ``|eta_i| <= eta``. Noise is either ``"uniform"``
(independent uniform draws every layer) or ``"adversarial"``: the choice that
shrinks gaps the most for ``beta kappa > 0`` — queries above the mean attend
preferentially to tokens below it and vice versa (``eps_ij = -delta s_i s_j``,
``s = sign(a - mean(a))``) and the additive term pulls towards the mean
(``eta_i = -eta s_i``). With ``delta = eta = 0`` the map is the deterministic
``F(a) = a + beta g(kappa a)`` of Appendix D.2.
"""

from __future__ import annotations

import torch
from torch import Tensor

from theory._ckernel import compiled_trajectory
from theory._fast import noiseless_trajectory

__all__ = ["layer_update", "sample_noise", "simulate"]

_NOISE_KINDS = ("uniform", "adversarial")


def _validate(a0: Tensor, n_layers: int, delta: float, eta: float, noise: str) -> None:
    if not isinstance(a0, Tensor):
        raise ValueError(f"a0: expected a tensor of shape [..., tokens], got {type(a0).__name__}")
    if a0.dim() < 1 or a0.shape[-1] < 1:
        raise ValueError(
            "a0: expected a tensor of shape [..., tokens] with at least one token, "
            f"got shape {tuple(a0.shape)}"
        )
    if not torch.is_floating_point(a0) or not torch.isfinite(a0).all():
        raise ValueError("a0: expected finite floating-point activations")
    if not isinstance(n_layers, int) or n_layers < 0:
        raise ValueError(f"n_layers: expected an int >= 0, got {n_layers!r}")
    if delta < 0:
        raise ValueError(f"delta: expected >= 0, got {delta}")
    if eta < 0:
        raise ValueError(f"eta: expected >= 0, got {eta}")
    if noise not in _NOISE_KINDS:
        raise ValueError(f"noise: expected one of {_NOISE_KINDS}, got {noise!r}")


def layer_update(
    a: Tensor,
    *,
    beta: float | Tensor,
    kappa: float | Tensor,
    eps: Tensor | None = None,
    eta: Tensor | None = None,
) -> Tensor:
    """One layer of eq. (2): ``a + beta * softmax(kappa a a^T + eps) a + eta``.

    a: ``[..., T]``; beta, kappa: scalars or ``[...]``; eps: ``[..., T, T]``
    (row = query) or None; eta: ``[..., T]`` or None. Returns ``[..., T]``.
    """
    b = torch.as_tensor(beta, dtype=a.dtype)
    k = torch.as_tensor(kappa, dtype=a.dtype)
    logits = (k[..., None, None] * a.unsqueeze(-1)) * a.unsqueeze(-2)
    if eps is not None:
        logits = logits + eps
    p = torch.softmax(logits, dim=-1)
    out = a + b[..., None] * (p @ a.unsqueeze(-1)).squeeze(-1)
    return out if eta is None else out + eta


def sample_noise(
    a: Tensor,
    delta: float,
    eta: float,
    *,
    noise: str = "uniform",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw one layer's noise for activations ``a`` ``[..., T]``.

    Returns ``eps`` ``[..., T, T]`` with ``|eps| <= delta`` and ``eta_vec`` ``[..., T]``
    with ``|eta_vec| <= eta`` (see the module docstring for the two kinds).
    """
    T = a.shape[-1]
    if noise == "adversarial":
        side = torch.sign(a - a.mean(-1, keepdim=True))
        eps = -delta * side.unsqueeze(-1) * side.unsqueeze(-2)
        return eps, -eta * side
    u = torch.rand(*a.shape, T, dtype=a.dtype, generator=generator)
    v = torch.rand(*a.shape, dtype=a.dtype, generator=generator)
    return delta * (2 * u - 1), eta * (2 * v - 1)


def simulate(
    a0: Tensor,
    n_layers: int,
    *,
    beta: float | Tensor,
    kappa: float | Tensor,
    delta: float = 0.0,
    eta: float = 0.0,
    seed: int | None = None,
    noise: str = "uniform",
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Trajectory of the scalar layer map over ``n_layers`` layers.

    a0: ``[..., T]`` initial activations; beta, kappa: scalars or tensors
    broadcastable to ``a0.shape[:-1]`` (one head strength per sequence); delta,
    eta: noise bounds; seed: seeds the noise (``None`` = fresh); noise:
    ``"uniform"`` or ``"adversarial"``. Returns ``[..., n_layers + 1, T]`` in
    ``dtype`` (float64 by default); index 0 is ``a0``. Deterministic when
    ``delta == eta == 0``.
    """
    _validate(a0, n_layers, float(delta), float(eta), noise)
    a0 = a0.to(dtype)
    batch, T = a0.shape[:-1], a0.shape[-1]
    beta_t = torch.as_tensor(beta, dtype=dtype).expand(batch).reshape(-1)
    kappa_t = torch.as_tensor(kappa, dtype=dtype).expand(batch).reshape(-1)
    for name, value in (("beta", beta_t), ("kappa", kappa_t)):
        bad = value[~torch.isfinite(value)]
        if bad.numel():
            raise ValueError(f"{name}: expected finite values, got {bad[0].item()}")
    flat = a0.reshape(-1, T)
    noiseless = delta == 0 and eta == 0
    grad = any(t.requires_grad for t in (flat, beta_t, kappa_t))
    if noiseless and dtype in (torch.float32, torch.float64) and not grad:
        # same map, ~1e-13 relative, skipping keys with negligible attention: a compiled
        # fused kernel on CPU float64 (theory/_ckernel.py), else blocked torch kernels
        # on worker threads (theory/_fast.py)
        traj = None
        if dtype == torch.float64 and flat.device.type == "cpu":
            traj = compiled_trajectory(flat, beta_t, kappa_t, n_layers)
        if traj is None:
            traj = noiseless_trajectory(flat, beta_t, kappa_t, n_layers)
    else:
        gen = torch.Generator().manual_seed(seed) if seed is not None and not noiseless else None
        a, steps = flat, [flat]
        for _ in range(n_layers):
            if noiseless:
                a = layer_update(a, beta=beta_t, kappa=kappa_t)
            else:
                eps, eta_vec = sample_noise(a, float(delta), float(eta), noise=noise, generator=gen)
                a = layer_update(a, beta=beta_t, kappa=kappa_t, eps=eps, eta=eta_vec)
            steps.append(a)
        traj = torch.stack(steps, dim=-2)
    _check_finite(traj, dtype)
    return traj.reshape(*batch, n_layers + 1, T)


def _check_finite(traj: Tensor, dtype: torch.dtype) -> None:
    """Raise if activations left the range of ``dtype`` (they grow ~(1 + beta)^layers).

    A non-finite value never becomes finite again under the map, so the last layer
    tells; the whole trajectory is scanned only to name the first bad layer.
    """
    if not bool(torch.isfinite(traj[:, -1].detach()).all()):
        finite = torch.isfinite(traj.detach()).all(-1).all(0)  # [n_layers + 1]
        layer = int((~finite).nonzero()[0])
        raise ValueError(
            f"n_layers: activations overflow {dtype} at layer {layer} (they grow about "
            "(1 + |beta|) per layer); use fewer layers, a smaller beta or smaller a0"
        )
