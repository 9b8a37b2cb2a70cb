"""Solvers for bias-free, class-balanced linear separators (one per concept).

Both solvers take normalised embeddings ``z [n, d]`` and, per concept, a
positive mask and a negative mask ``[n, concepts]`` (tokens in neither mask are
ignored), and return the weight vectors ``W [concepts, d]`` (not unit-normalised).

- ``lbfgs`` (fast, default): L2-regularised logistic regression without intercept,
  classes balanced by weighting (each class carries half the loss of its concept),
  all concepts solved at once by full-batch L-BFGS on the summed (separable) loss.
- ``adam`` (paper recipe, appendix E.2): per concept, subsample the larger class to
  the smaller, hold out ``val_frac`` for early stopping, BCEWithLogits + Adam with
  weight decay, batch 32, up to 100 epochs, LR halved every 10 epochs, patience 15.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


def fit_lbfgs(
    z: Float[Tensor, "n d"],
    pos: Bool[Tensor, "n concepts"],
    neg: Bool[Tensor, "n concepts"],
    l2: float = 1e-3,
    max_iter: int = 100,
    tol: float = 1e-6,
    init: Float[Tensor, "concepts d"] | None = None,
) -> Float[Tensor, "concepts d"]:
    """Balanced, bias-free logistic regression for every concept at once.

    Minimises, for each concept ``c`` (the sum over concepts is separable):
    ``0.5 * mean_{pos} BCE + 0.5 * mean_{neg} BCE + l2/2 * |w_c|^2``.
    Deterministic (full batch; starts at ``init``, default zero). Tokens that are
    neither positive nor negative for any concept are dropped first.
    """
    used = (pos | neg).any(1)
    if not used.all():
        z, pos, neg = z[used], pos[used], neg[used]
    n_pos = pos.sum(0).clamp_min(1).to(z)
    n_neg = neg.sum(0).clamp_min(1).to(z)
    weight = pos.to(z) * (0.5 / n_pos) + neg.to(z) * (0.5 / n_neg)  # [n, C]
    target = pos.to(z)
    w = torch.zeros(pos.shape[1], z.shape[1], dtype=z.dtype, device=z.device)
    if init is not None:
        w = init.to(w).clone()
    w.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=tol,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        logits = torch.einsum("nd,cd->nc", z, w)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = (bce * weight).sum() + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach()


def fit_adam(
    z: Float[Tensor, "n d"],
    pos: Bool[Tensor, "n concepts"],
    neg: Bool[Tensor, "n concepts"],
    seed: int = 0,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    epochs: int = 100,
    batch_size: int = 32,
    lr_step: int = 10,
    lr_gamma: float = 0.5,
    patience: int = 15,
    min_delta: float = 1e-4,
    val_frac: float = 0.2,
) -> Float[Tensor, "concepts d"]:
    """The paper's recipe, one concept at a time (slow; kept as the reference)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = torch.zeros(pos.shape[1], z.shape[1], dtype=z.dtype, device=z.device)
    for c in range(pos.shape[1]):
        p_idx = torch.nonzero(pos[:, c]).flatten().cpu()
        n_idx = torch.nonzero(neg[:, c]).flatten().cpu()
        m = min(len(p_idx), len(n_idx))
        if m == 0:
            continue
        # Balance by subsampling the larger class; split each class into train/val.
        p_idx = p_idx[torch.randperm(len(p_idx), generator=gen)[:m]]
        n_idx = n_idx[torch.randperm(len(n_idx), generator=gen)[:m]]
        n_val = int(round(val_frac * m)) if m >= 5 else 0
        train = torch.cat([p_idx[n_val:], n_idx[n_val:]])
        y_train = torch.cat([torch.ones(m - n_val), torch.zeros(m - n_val)])
        val = torch.cat([p_idx[:n_val], n_idx[:n_val]])
        y_val = torch.cat([torch.ones(n_val), torch.zeros(n_val)]).to(z)
        out[c] = _adam_one(
            z,
            train,
            y_train,
            val,
            y_val,
            gen,
            lr,
            weight_decay,
            epochs,
            batch_size,
            lr_step,
            lr_gamma,
            patience,
            min_delta,
        )
    return out


def _adam_one(
    z: Tensor,
    train: Tensor,
    y_train: Tensor,
    val: Tensor,
    y_val: Tensor,
    gen: torch.Generator,
    lr: float,
    weight_decay: float,
    epochs: int,
    batch_size: int,
    lr_step: int,
    lr_gamma: float,
    patience: int,
    min_delta: float,
) -> Float[Tensor, " d"]:
    w = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
    z_val = z[val.to(z.device)]
    best, best_w, bad = float("inf"), w.detach().clone(), 0
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(train), generator=gen)
            for start in range(0, len(order), batch_size):
                b = order[start : start + batch_size]
                xb = z[train[b].to(z.device)]
                yb = y_train[b].to(z)
                loss = F.binary_cross_entropy_with_logits(xb @ w, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            if len(val) == 0:
                best_w = w.detach().clone()
                continue
            with torch.no_grad():
                v = F.binary_cross_entropy_with_logits(z_val @ w, y_val).item()
            if v < best - min_delta:
                best, best_w, bad = v, w.detach().clone(), 0
            else:
                bad += 1
                if bad >= patience:
                    break
    return best_w
