"""Population dynamics: the mechanism behind the paper's Figures 3-4.

Positive sequences hold a few in-concept tokens (activations with a small
positive shift and positive skew) among out-of-concept tokens; negative
sequences hold out-of-concept tokens only (``D_out`` is measured on negative
sequences, as in SPEC §2). All sequences run through the same scalar map
(:func:`theory.simulate`) and we track, per layer:

- ``sep95`` / ``sep99``: fraction of ``D_in`` above the 95th / 99th percentile of
  ``D_out`` (SPEC §5 separability), and ``coverage99`` (positive sequences with at
  least one in-concept token above it);
- ``tail_gap_growth`` / ``bulk_gap_growth``: mean per-layer log growth of the
  gaps between sorted neighbours in the top 10 % vs the middle 40-60 % of each
  positive sequence (Theorems D.2 + D.5: the tail amplifies faster);
- ``tail_ratio``: median within-tail ratio ``(a_max - a_i) / a_max`` over the
  positive tokens of the top 10 %: rises while skew amplification dominates,
  then contracts towards 0 at rate ``1 / (1 + beta)`` once attention has
  concentrated (Corollary D.4): the end of the finite-depth window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from theory.simulate import simulate

__all__ = [
    "PopulationParams",
    "PopulationResult",
    "equalisation_rate",
    "plot_population",
    "run_population",
]


@dataclass(frozen=True)
class PopulationParams:
    """Parameters of :func:`run_population` (defaults used in the notebook).

    tokens per sequence, in-concept tokens per positive sequence, the
    in-concept shift (in out-of-concept standard deviations) and log-normal skew
    ``sigma`` (in = shift + (exp(sigma z) - E exp(sigma z)) / sigma), the skew
    of the out-of-concept tokens (same form; 0 = standard normal), head
    strengths and noise bounds, depth, and the seed.
    """

    n_pos: int = 400
    n_neg: int = 400
    tokens: int = 64
    in_tokens: int = 6
    shift: float = 0.5
    skew: float = 0.8
    out_skew: float = 0.0
    beta: float = 0.4
    kappa: float = 0.15
    delta: float = 0.05
    eta: float = 0.05
    n_layers: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_pos", "n_neg", "tokens", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1")
        if not 1 <= self.in_tokens <= self.tokens:
            raise ValueError("in_tokens: expected between 1 and tokens")
        if self.skew <= 0 or self.out_skew < 0:
            raise ValueError("skew, out_skew: expected skew > 0 and out_skew >= 0")


@dataclass
class PopulationResult:
    """Per-layer curves ``[n_layers + 1]`` and the trajectories behind them."""

    params: PopulationParams
    pos: Tensor  # [n_pos, L + 1, T]
    neg: Tensor  # [n_neg, L + 1, T]
    in_mask: Tensor  # [n_pos, T]
    sep95: Tensor
    sep99: Tensor
    coverage99: Tensor
    tail_gap_growth: Tensor  # [L]
    bulk_gap_growth: Tensor  # [L]
    tail_ratio: Tensor

    def to_dict(self) -> dict:
        keys = ("sep95", "sep99", "coverage99", "tail_gap_growth", "bulk_gap_growth", "tail_ratio")
        return {k: getattr(self, k).tolist() for k in keys}

    def summary(self) -> dict:
        """Headline numbers: separability growth, overlap, tail-first layers, window end.

        ``window_end``: first layer at which the within-tail ratio has fallen below
        half its peak (equalisation has taken over; Corollary D.4).
        """
        peak = int(self.tail_ratio.argmax())
        below = (self.tail_ratio[peak:] < self.tail_ratio[peak] / 2).nonzero()
        tail_first = (self.tail_gap_growth > self.bulk_gap_growth).nonzero().squeeze(-1) + 1
        return {
            "sep99_first": float(self.sep99[0]),
            "sep99_last": float(self.sep99[-1]),
            "overlapped_last": float(1 - self.sep99[-1]),
            "tail_faster_layers": tail_first.tolist(),
            "window_end": int(peak + below[0]) if below.numel() else None,
        }


def _initial(p: PopulationParams) -> tuple[Tensor, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(p.seed)
    pos = _skewed(torch.randn(p.n_pos, p.tokens, dtype=torch.float64, generator=gen), p.out_skew)
    neg = _skewed(torch.randn(p.n_neg, p.tokens, dtype=torch.float64, generator=gen), p.out_skew)
    z = torch.randn(p.n_pos, p.in_tokens, dtype=torch.float64, generator=gen)
    pos[:, : p.in_tokens] = p.shift + _skewed(z, p.skew)
    mask = torch.zeros(p.n_pos, p.tokens, dtype=torch.bool)
    mask[:, : p.in_tokens] = True
    return pos, neg, mask


def _skewed(z: Tensor, sigma: float) -> Tensor:
    """Centred log-normal ``(exp(sigma z) - E exp(sigma z)) / sigma``; ``z`` when ``sigma = 0``."""
    if sigma == 0:
        return z
    return (torch.exp(sigma * z) - torch.exp(torch.tensor(sigma**2 / 2))) / sigma


def _gap_growth(traj: Tensor, lo_q: float, hi_q: float) -> Tensor:
    """Mean log growth per layer of sorted-neighbour gaps in a rank band: ``[L]``."""
    srt = traj.sort(-1).values  # ranks fixed by order preservation (noiseless)
    T = srt.shape[-1]
    lo, hi = int(lo_q * (T - 1)), max(int(hi_q * (T - 1)), int(lo_q * (T - 1)) + 1)
    gaps = (srt[..., lo + 1 : hi + 1] - srt[..., lo:hi]).clamp_min(1e-300)
    return torch.log(gaps[:, 1:] / gaps[:, :-1]).mean((0, 2))


def run_population(params: PopulationParams | None = None) -> PopulationResult:
    """Simulate the population and compute the per-layer curves (module docstring)."""
    p = params or PopulationParams()
    pos0, neg0, mask = _initial(p)
    pos = simulate(
        pos0, p.n_layers, beta=p.beta, kappa=p.kappa, delta=p.delta, eta=p.eta, seed=p.seed + 1
    )
    neg = simulate(
        neg0, p.n_layers, beta=p.beta, kappa=p.kappa, delta=p.delta, eta=p.eta, seed=p.seed + 2
    )
    sep95, sep99, cov = [], [], []
    for layer in range(p.n_layers + 1):
        out = neg[:, layer].reshape(-1)
        d_in = pos[:, layer][mask].reshape(p.n_pos, p.in_tokens)
        q95, q99 = torch.quantile(out, torch.tensor([0.95, 0.99], dtype=out.dtype))
        sep95.append((d_in > q95).double().mean())
        sep99.append((d_in > q99).double().mean())
        cov.append((d_in > q99).any(-1).double().mean())
    top = pos.sort(-1, descending=True).values[..., : max(2, p.tokens // 10)]
    ratio = (top[..., :1] - top[..., 1:]) / top[..., :1]
    ratio = torch.where((top[..., 1:] > 0) & (top[..., :1] > 0), ratio, torch.nan)
    return PopulationResult(
        params=p,
        pos=pos,
        neg=neg,
        in_mask=mask,
        sep95=torch.stack(sep95),
        sep99=torch.stack(sep99),
        coverage99=torch.stack(cov),
        tail_gap_growth=_gap_growth(pos, 0.9, 1.0),
        bulk_gap_growth=_gap_growth(pos, 0.4, 0.6),
        tail_ratio=ratio.nanmedian(-1).values.nanmedian(0).values,
    )


def equalisation_rate(traj: Tensor, *, last: int = 5) -> Tensor:
    """Measured contraction of within-tail ratios over the last ``last`` layers.

    traj: ``[S, L + 1, T]``. For each sequence, the positive token nearest below
    the maximum defines ``r_l = (a_max - a_i) / a_max``; returns the median over
    sequences of ``(r_L / r_{L - last}) ** (1 / last)``, to compare with the
    asymptotic rate ``1 / (1 + beta)`` of Corollary D.4. ``[]`` scalar tensor.
    """
    if traj.dim() != 3 or traj.shape[1] <= last:
        raise ValueError("traj: expected [S, L + 1, T] with L >= last")
    srt = traj.sort(-1, descending=True).values
    r = (srt[..., 0] - srt[..., 1]) / srt[..., 0]
    ok = (srt[:, -1 - last, 1] > 0) & (r[:, -1 - last] > 0)
    rate = (r[:, -1] / r[:, -1 - last]) ** (1.0 / last)
    return rate[ok].median()


def plot_population(result: PopulationResult, layers: tuple[int, ...] | None = None):
    """Three panels: separability by depth, tail vs bulk gap growth, ``D_in`` vs ``D_out``.

    Returns the matplotlib figure (matplotlib is imported here, not at import time).
    """
    import matplotlib.pyplot as plt

    L = result.params.n_layers
    layers = layers or (0, L // 2, L)
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    depth = range(L + 1)
    ax[0].plot(depth, result.sep99, label="D_in above q99(D_out)")
    ax[0].plot(depth, result.sep95, label="D_in above q95(D_out)")
    ax[0].plot(depth, result.coverage99, "--", label="coverage (q99)")
    ax[0].set(xlabel="layer", ylabel="fraction", title="separability by depth")
    ax[0].legend()
    ax[1].plot(range(1, L + 1), result.tail_gap_growth, label="top-10% gaps")
    ax[1].plot(range(1, L + 1), result.bulk_gap_growth, label="bulk (40-60%) gaps")
    ax[1].set(xlabel="layer", ylabel="log gap growth per layer", title="tail vs bulk")
    ax[1].legend()
    for layer in layers:
        out = result.neg[:, layer].reshape(-1)
        d_in = result.pos[:, layer][result.in_mask]
        scale = out.std()
        ax[2].hist(
            (out / scale).numpy(), bins=80, density=True, histtype="step", label=f"out L{layer}"
        )
        ax[2].hist(
            (d_in / scale).numpy(), bins=80, density=True, histtype="step", label=f"in L{layer}"
        )
    ax[2].set(xlabel="activation / std(D_out)", yscale="log", title="D_in vs D_out")
    ax[2].legend(fontsize=7)
    fig.tight_layout()
    return fig
