"""Measured heads: the scalar model (A1)-(A3) read off a real attention layer.

Model-agnostic core: it works on one attention layer's weights in
TransformerLens convention and on captured activations; the adapters that
produce them live in :mod:`theory.minilm` (Hugging Face BERT) and
:mod:`theory.native` (TransformerLens native models). No model import here.

For a unit concept vector ``c`` and head ``h``:

- ``alpha_h = c^T W_Q^h W_K^h^T c``, ``kappa_h = alpha_h / scale`` (A1);
- ``beta_h = c^T W_V^h W_O^h c`` (A2);
- ``qk_cos`` / ``ov_cos``: how much of the head's concept reading is
  concept-aligned (cosine of ``W_Q^T c`` and ``W_K^T c``; share of the value
  write of ``c`` that lands on ``c``); heads are ranked by ``beta_h kappa_h``,
  the per-layer gap gain of Theorem D.2 per unit variance.

Layer norm: the activations ``x`` passed in must be the attention sublayer's
*input* (after any pre-LN, with its scale and bias applied, i.e. exactly what
``W_Q``, ``W_K``, ``W_V`` multiply), and ``a = x c``. For a pre-LN model that
means the concept is read in the normalised coordinates; folding the LN gain
``gamma`` into ``W_*`` instead (``W <- diag(gamma) W``) gives the same numbers.
For post-LN models (BERT) the input is the previous block's LN output, so no
folding is needed, and the update we compare is ``c . attn_out``, the attention
output projection *before* the residual add and the following LN (see
:mod:`theory.minilm` for how that LN rescales it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

__all__ = ["AttentionWeights", "LayerReport", "head_alignment", "measure_layer"]


@dataclass
class AttentionWeights:
    """One attention layer, TransformerLens convention (``q = x W_Q + b_Q``).

    W_Q, W_K, W_V: ``[H, d_model, d_head]``; W_O: ``[H, d_head, d_model]``;
    b_Q, b_K, b_V: ``[H, d_head]``; b_O: ``[d_model]``; ``scale``: the score
    divisor (``sqrt(d_head)``); ``causal``: causal mask.
    """

    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    W_O: Tensor
    b_Q: Tensor
    b_K: Tensor
    b_V: Tensor
    b_O: Tensor
    scale: float
    causal: bool = False

    def __post_init__(self) -> None:
        H, d, dh = self.W_Q.shape
        for name in ("W_K", "W_V"):
            if tuple(getattr(self, name).shape) != (H, d, dh):
                raise ValueError(f"{name}: expected shape {(H, d, dh)}")
        if tuple(self.W_O.shape) != (H, dh, d):
            raise ValueError(f"W_O: expected shape {(H, dh, d)}, got {tuple(self.W_O.shape)}")
        if self.scale <= 0:
            raise ValueError(f"scale: expected > 0, got {self.scale}")

    def to(self, dtype: torch.dtype) -> AttentionWeights:
        return AttentionWeights(
            W_Q=self.W_Q.to(dtype),
            W_K=self.W_K.to(dtype),
            W_V=self.W_V.to(dtype),
            W_O=self.W_O.to(dtype),
            b_Q=self.b_Q.to(dtype),
            b_K=self.b_K.to(dtype),
            b_V=self.b_V.to(dtype),
            b_O=self.b_O.to(dtype),
            scale=self.scale,
            causal=self.causal,
        )


def _unit(c: Tensor, d: int) -> Tensor:
    if c.dim() != 1 or c.shape[0] != d or not torch.isfinite(c).all() or c.norm() == 0:
        raise ValueError(f"c: expected a finite non-zero vector of length d_model={d}")
    return c / c.norm()


def head_alignment(w: AttentionWeights, c: Tensor) -> dict[str, Tensor]:
    """Per-head ``alpha``, ``kappa``, ``beta``, ``gain = beta kappa``, cosines, ranking.

    c: ``[d_model]`` (normalised here). Returns ``[H]`` tensors and ``rank``
    (head indices by decreasing ``gain``).
    """
    c = _unit(c.to(w.W_Q.dtype), w.W_Q.shape[1])
    qc = torch.einsum("d,hde->he", c, w.W_Q)
    kc = torch.einsum("d,hde->he", c, w.W_K)
    vo = torch.einsum("d,hde,hef->hf", c, w.W_V, w.W_O)  # value write of c, [H, d_model]
    alpha = (qc * kc).sum(-1)
    beta = vo @ c
    kappa = alpha / w.scale
    gain = beta * kappa
    return {
        "alpha": alpha,
        "kappa": kappa,
        "beta": beta,
        "gain": gain,
        "qk_cos": alpha / (qc.norm(dim=-1) * kc.norm(dim=-1)).clamp_min(1e-30),
        "ov_cos": beta / vo.norm(dim=-1).clamp_min(1e-30),
        "rank": gain.argsort(descending=True),
    }


def _scores(w: AttentionWeights, x: Tensor, pad: Tensor) -> Tensor:
    """Attention scores ``[N, H, T, T]`` with padding / causal positions at ``-inf``."""
    q = torch.einsum("ntd,hde->nhte", x, w.W_Q) + w.b_Q[None, :, None]
    k = torch.einsum("ntd,hde->nhte", x, w.W_K) + w.b_K[None, :, None]
    s = q @ k.transpose(-1, -2) / w.scale
    return s.masked_fill(_blocked(pad, w.causal)[:, None], float("-inf"))


def _blocked(pad: Tensor, causal: bool) -> Tensor:
    """``[N, T, T]`` True where query ``i`` may not attend key ``j``."""
    T = pad.shape[-1]
    block = ~pad[:, None, :].expand(-1, T, -1)
    if causal:
        block = block | torch.triu(torch.ones(T, T, dtype=torch.bool, device=pad.device), 1)
    return block


def _scalar_update(a: Tensor, kappa: Tensor, beta: Tensor, block: Tensor) -> Tensor:
    """Scalar map update ``sum_h beta_h sum_j softmax_j(kappa_h a_i a_j) a_j``: ``[N, T]``."""
    logits = kappa[None, :, None, None] * a[:, None, :, None] * a[:, None, None, :]
    p = torch.softmax(logits.masked_fill(block[:, None], float("-inf")), -1)
    return torch.einsum("h,nhij,nj->ni", beta, p, a)


def _fit_scalar_map(a: Tensor, delta: Tensor, block: Tensor, valid: Tensor) -> dict[str, float]:
    """Least-squares fit of ``delta ≈ b0 + beta g(kappa a)`` over a log grid of ``kappa``."""
    best = {"r2": -math.inf, "beta": 0.0, "kappa": 0.0}
    y = delta[valid]
    var_y = float(((y - y.mean()) ** 2).sum()) or 1.0
    grid = torch.cat([torch.zeros(1), torch.logspace(-4, 1, 61)]).to(a.dtype)
    for kappa in grid:
        gx = _scalar_update(a, kappa[None], torch.ones(1, dtype=a.dtype), block)[valid]
        design = torch.stack([torch.ones_like(gx), gx], -1)
        coef = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
        r2 = 1 - float(((design @ coef - y) ** 2).sum()) / var_y
        if r2 > best["r2"] + 1e-12:
            best = {"r2": r2, "beta": float(coef[1]), "kappa": float(kappa)}
    best["beta_kappa"] = best["beta"] * best["kappa"]
    return best


def _corr(x: Tensor, y: Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = float(x.norm() * y.norm())
    return float((x * y).sum()) / den if den > 0 else float("nan")


@dataclass
class LayerReport:
    """Per-layer comparison of the measured update along ``c`` with the scalar map.

    ``corr_scalar``: correlation of ``c . attn_out`` with the scalar prediction
    (all heads' ``beta_h g(kappa_h a)``); ``corr_measured_attention``: same with
    each head's actual attention pattern; ``corr_top_head``: scalar prediction of
    the top-ranked head alone; ``fit``: best single-head scalar map fitted to
    the measured update (``beta``, ``kappa``, ``beta_kappa``, ``r2``);
    ``delta_median`` / ``delta_p95``: row-centred half-range of the QK residual
    ``eps_ij`` of the top head (the smallest ``delta`` that bounds that row);
    ``eta_std`` / ``eta_max``: size of everything along ``c`` not explained by
    the aligned value terms with measured attention, relative to ``std(a)``;
    ``exact_err``: max error of recomputing ``c . attn_out`` from the weights
    (checks the capture, ~float rounding).
    """

    layer: int
    heads: dict
    corr_scalar: float
    corr_measured_attention: float
    corr_top_head: float
    fit: dict
    delta_median: float
    delta_p95: float
    eta_std: float
    eta_max: float
    std_a: float
    std_update: float
    exact_err: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_layer(
    w: AttentionWeights,
    c: Tensor,
    x: Tensor,
    attn_out: Tensor,
    pad: Tensor | None = None,
    *,
    layer: int = 0,
) -> LayerReport:
    """Compare the measured attention update along ``c`` with the scalar prediction.

    w: the layer's weights; c: ``[d_model]`` concept vector; x: ``[N, T, d_model]``
    attention input; attn_out: ``[N, T, d_model]`` attention sublayer output
    (output projection incl. bias, before residual add / LN); pad: ``[N, T]``
    True for real tokens (default all). All statistics use real tokens only.
    """
    if x.dim() != 3 or attn_out.shape != x.shape:
        raise ValueError("x, attn_out: expected equal shapes [N, T, d_model]")
    dtype = torch.float64
    w = w.to(dtype)
    x, attn_out = x.to(dtype), attn_out.to(dtype)
    c = _unit(c.to(dtype), x.shape[-1])
    pad = torch.ones(x.shape[:2], dtype=torch.bool) if pad is None else pad.bool()
    al = head_alignment(w, c)
    a = x @ c
    delta = attn_out @ c
    block = _blocked(pad, w.causal)
    scores = _scores(w, x, pad)
    pattern = torch.softmax(scores, -1).nan_to_num(0.0)
    values = torch.einsum("ntd,hde->nhte", x, w.W_V) + w.b_V[None, :, None]
    writes = torch.einsum("nhte,hef,f->nht", values, w.W_O, c)  # value write along c
    recomputed = torch.einsum("nhij,nhj->ni", pattern, writes) + w.b_O @ c
    aligned = torch.einsum("h,nhij,nj->ni", al["beta"], pattern, a)
    scalar = _scalar_update(a, al["kappa"], al["beta"], block)
    top = int(al["rank"][0])
    top_only = _scalar_update(a, al["kappa"][top : top + 1], al["beta"][top : top + 1], block)
    eps = scores[:, top] - al["kappa"][top] * a[:, :, None] * a[:, None, :]
    eps = eps.masked_fill(block, float("nan"))
    half_range = (eps.nan_to_num(-math.inf).amax(-1) - eps.nan_to_num(math.inf).amin(-1)) / 2
    half_range = half_range[pad]
    std_a = float(a[pad].std())
    resid = (delta - aligned)[pad]
    return LayerReport(
        layer=layer,
        heads={k: v.tolist() for k, v in al.items()},
        corr_scalar=_corr(delta[pad], scalar[pad]),
        corr_measured_attention=_corr(delta[pad], aligned[pad]),
        corr_top_head=_corr(delta[pad], top_only[pad]),
        fit=_fit_scalar_map(a, delta, block, pad),
        delta_median=float(half_range.median()),
        delta_p95=float(torch.quantile(half_range, 0.95)),
        eta_std=float(resid.std()) / std_a,
        eta_max=float((resid - resid.mean()).abs().max()) / std_a,
        std_a=std_a,
        std_update=float(delta[pad].std()),
        exact_err=float((recomputed - delta)[pad].abs().max()),
    )
