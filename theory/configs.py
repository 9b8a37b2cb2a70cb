"""Configurations the statement checks run on, and the result they return.

A :class:`Config` is a batch of ``B`` one-layer problems: activations ``a``
``[B, T]``, head strengths ``beta``, ``kappa`` ``[B]``, noise bounds ``delta``,
``eta`` ``[B]`` and one realised draw of the noise (``eps`` ``[B, T, T]``,
``eta_vec`` ``[B, T]``, value noise ``xi`` ``[B, T]`` for Theorem D.10).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from theory.simulate import sample_noise

__all__ = ["ROUNDING", "CheckResult", "Config", "random_configs", "sorted_pairs"]

# Inequalities are compared after normalising by their natural scale; a deficit
# below this many float64 ulps is rounding, not a violation.
ROUNDING = 64 * torch.finfo(torch.float64).eps


Scalar = float | Tensor


@dataclass(init=False)
class Config:
    """A batch of one-layer problems (shapes in the module docstring).

    ``beta``, ``kappa``, ``delta``, ``eta`` may be given as scalars or ``[B]``;
    missing bounds are 0 and missing noise draws are zeros. Everything is stored
    as float64 tensors and validated (bounds respected, shapes right).
    """

    a: Tensor
    beta: Tensor
    kappa: Tensor
    delta: Tensor
    eta: Tensor
    eps: Tensor
    eta_vec: Tensor
    xi: Tensor

    def __init__(
        self,
        a: Tensor,
        beta: Scalar,
        kappa: Scalar,
        delta: Scalar | None = None,
        eta: Scalar | None = None,
        eps: Tensor | None = None,
        eta_vec: Tensor | None = None,
        xi: Tensor | None = None,
    ) -> None:
        if not isinstance(a, Tensor) or a.dim() != 2 or a.shape[-1] < 1:
            raise ValueError("a: expected a [B, T] tensor with T >= 1")
        if not bool(torch.isfinite(a).all()):
            raise ValueError("a: expected finite activations (found NaN or inf)")
        B, T = a.shape
        self.a = a.to(torch.float64)
        self.beta = _per_problem("beta", beta, B)
        self.kappa = _per_problem("kappa", kappa, B)
        self.delta = _per_problem("delta", delta, B)
        self.eta = _per_problem("eta", eta, B)
        if bool((self.beta < 0).any()) or bool((self.kappa < 0).any()):
            raise ValueError("beta, kappa: the statements assume beta >= 0 and kappa >= 0")
        if bool((self.delta < 0).any()) or bool((self.eta < 0).any()):
            raise ValueError("delta, eta: expected noise bounds >= 0")
        self.eps = _draw("eps", eps, (B, T, T))
        self.eta_vec = _draw("eta_vec", eta_vec, (B, T))
        self.xi = _draw("xi", xi, (B, T))
        if bool((self.eps.abs() > self.delta[:, None, None] * (1 + 1e-12)).any()):
            raise ValueError("eps: entries exceed the bound delta")
        if bool((self.eta_vec.abs() > self.eta[:, None] * (1 + 1e-12)).any()):
            raise ValueError("eta_vec: entries exceed the bound eta")

    @property
    def noiseless(self) -> bool:
        return bool((self.delta == 0).all() and (self.eta == 0).all())


def _per_problem(name: str, v: Scalar | None, B: int) -> Tensor:
    t = (
        torch.zeros(B, dtype=torch.float64)
        if v is None
        else torch.as_tensor(v, dtype=torch.float64)
    )
    t = t.to(torch.float64).expand(B).clone()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values")
    return t


def _draw(name: str, v: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    if v is None:
        return torch.zeros(shape, dtype=torch.float64)
    if tuple(v.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(v.shape)}")
    return v.to(torch.float64)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one statement check on a :class:`Config` batch.

    ``values`` ``[B]``: for identities (``kind="identity"``) the worst relative
    residual per problem (``tolerance`` 1e-9); for inequalities
    (``kind="inequality"``) the worst normalised slack ``(bound - measured) /
    scale`` (``>= 0`` holds; a deficit below ``tolerance = ROUNDING`` is float64
    rounding). Non-finite values: a slack of ``+inf`` means there was nothing to
    check (e.g. no untied pair) and is skipped; any other non-finite value (a
    residual of ``±inf`` or NaN, a slack of ``-inf`` or NaN) is an infinite
    violation. ``details`` holds the secondary quantities of the statement.
    """

    statement: str
    kind: str
    values: Tensor
    tolerance: float
    details: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("identity", "inequality"):
            raise ValueError(f"kind: expected 'identity' or 'inequality', got {self.kind!r}")

    @property
    def max_violation(self) -> float:
        """Identity: max residual. Inequality: max deficit ``max(0, -slack)``.

        ``inf`` when any value is a violation that cannot be measured (see the
        class docstring); 0 when there is nothing to check.
        """
        v = self.values
        if self.kind == "inequality":
            v = -v[v != float("inf")]  # deficits; +inf slack: nothing to check
        if not bool(torch.isfinite(v).all()):
            return float("inf")
        if v.numel() == 0:
            return 0.0
        return float(v.max().clamp_min(0))

    @property
    def passed(self) -> bool:
        return self.max_violation <= self.tolerance


def sorted_pairs(a: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs ``(hi, lo)`` the gap statements are checked on: ``[B, T]`` each.

    The ``T - 1`` neighbours in sorted order (the smallest, most fragile gaps)
    plus the extreme pair ``(argmax, argmin)``; tied pairs are kept (callers mask
    ``a_hi == a_lo``, where the gap statements say nothing).
    """
    order = a.argsort(-1, descending=True)
    if a.shape[-1] < 2:
        return order, order
    hi = torch.cat([order[:, :-1], order[:, :1]], dim=-1)
    lo = torch.cat([order[:, 1:], order[:, -1:]], dim=-1)
    return hi, lo


def random_configs(
    n: int,
    tokens: int | tuple[int, int] = (1, 24),
    *,
    seed: int = 0,
    noise: str = "mixed",
    max_delta: float = 0.5,
    max_eta: float = 0.5,
) -> Config:
    """``n`` random problems mixing the regimes the statements must survive.

    Activations: Gaussian, positively skewed (log-normal), heavy ties (rounded
    to a coarse grid), all-equal and single tokens; ``kappa`` log-uniform on
    ``[1e-3, 1e2]`` with 5 % huge (``1e4``); ``beta`` log-uniform on
    ``[1e-3, 10]``; noise bounds uniform on ``[0, max_*]`` (a quarter of the
    problems noiseless), drawn ``"uniform"``, ``"adversarial"`` or ``"mixed"``
    (half each). All problems share one ``T``, drawn once from the range
    ``tokens`` (an int fixes it); vary ``seed`` to cover several lengths.
    """
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    if noise not in ("uniform", "adversarial", "mixed"):
        raise ValueError(f"noise: expected uniform, adversarial or mixed, got {noise!r}")
    gen = torch.Generator().manual_seed(seed)
    if isinstance(tokens, int):
        T = tokens
    else:
        T = int(torch.randint(tokens[0], tokens[1] + 1, (1,), generator=gen))
    if T < 1:
        raise ValueError(f"tokens: expected >= 1, got {tokens}")
    kind = torch.randint(0, 5, (n,), generator=gen)
    scale = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-2, 1.5, generator=gen))
    z = torch.randn(n, T, dtype=torch.float64, generator=gen)
    a = torch.where((kind == 1)[:, None], torch.exp(z) - 1.0, z)
    a = torch.where((kind == 2)[:, None], torch.round(2 * z) / 2, a)
    a = torch.where((kind == 3)[:, None], z[:, :1].expand(n, T), a)
    a = a * scale[:, None]
    log_k = torch.empty(n, dtype=torch.float64).uniform_(-3, 2, generator=gen)
    kappa = torch.where(torch.rand(n, generator=gen) < 0.05, torch.full_like(log_k, 4.0), log_k)
    kappa = 10**kappa
    beta = 10 ** torch.empty(n, dtype=torch.float64).uniform_(-3, 1, generator=gen)
    quiet = torch.rand(n, generator=gen) < 0.25
    delta = torch.where(quiet, 0.0, max_delta * torch.rand(n, dtype=torch.float64, generator=gen))
    eta = torch.where(quiet, 0.0, max_eta * torch.rand(n, dtype=torch.float64, generator=gen))
    eps_u, eta_u = sample_noise(a, 1.0, 1.0, generator=gen)
    eps_a, eta_a = sample_noise(a, 1.0, 1.0, noise="adversarial")
    adv = (
        torch.rand(n, generator=gen) < 0.5
        if noise == "mixed"
        else torch.full((n,), noise == "adversarial")
    )
    eps = torch.where(adv[:, None, None], eps_a, eps_u) * delta[:, None, None]
    eta_vec = torch.where(adv[:, None], eta_a, eta_u) * eta[:, None]
    xi = 0.3 * scale[:, None] * torch.randn(n, T, dtype=torch.float64, generator=gen)
    return Config(a, beta, kappa, delta, eta, eps, eta_vec, xi)
