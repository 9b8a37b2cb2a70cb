"""Measured heads: the scalar model (A1)-(A3) read off a real attention layer.

Model-agnostic core: it works on one attention layer's weights in
TransformerLens convention and on captured activations (optionally the model's
own logits, mask and query rows, for heads whose logits are not the bilinear
form of the weights: q/k norms, RoPE). What produces them lives in
:mod:`theory.measured` with :mod:`theory.specs` (Hugging Face BERT, Llama,
Gemma 3) and :mod:`theory.native` (TransformerLens native models). No model
import here.

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

from theory.head_stats import fit_kappa, half_range, seq_range, snr_numbers

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


def _scores(w: AttentionWeights, x: Tensor) -> Tensor:
    """Bilinear attention logits ``[N, H, T, T]`` from the weights (no mask)."""
    q = torch.einsum("ntd,hde->nhte", x, w.W_Q) + w.b_Q[None, :, None]
    k = torch.einsum("ntd,hde->nhte", x, w.W_K) + w.b_K[None, :, None]
    return q @ k.transpose(-1, -2) / w.scale


def _blocked(pad: Tensor, causal: bool) -> Tensor:
    """``[N, T, T]`` True where query ``i`` may not attend key ``j``."""
    T = pad.shape[-1]
    block = ~pad[:, None, :].expand(-1, T, -1)
    if causal:
        block = block | torch.triu(torch.ones(T, T, dtype=torch.bool, device=pad.device), 1)
    return block


def _scalar_heads(a: Tensor, kappa: Tensor, beta: Tensor, block: Tensor) -> Tensor:
    """Per-head scalar map update ``beta_h sum_j softmax_j(kappa_h a_i a_j) a_j``: ``[N, H, T]``."""
    logits = kappa[None, :, None, None] * a[:, None, :, None] * a[:, None, None, :]
    p = torch.softmax(logits.masked_fill(block[:, None], float("-inf")), -1).nan_to_num(0.0)
    return beta[None, :, None] * torch.einsum("nhij,nj->nhi", p, a)


def _scalar_update(a: Tensor, kappa: Tensor, beta: Tensor, block: Tensor) -> Tensor:
    """Scalar map update summed over heads: ``[N, T]``."""
    return _scalar_heads(a, kappa, beta, block).sum(1)


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
    (all heads' ``beta_h g(kappa_h a)``); ``corr_scalar_kappa0``: the same at
    ``kappa = 0`` (each head averaging ``a`` over the keys it may attend: what the
    prediction gets without any concept-driven attention); ``corr_measured_attention``: same with
    each head's actual attention pattern; ``corr_top_head``: scalar prediction of
    the top-ranked head alone; ``fit``: best single-head scalar map fitted to
    the measured update (``beta``, ``kappa``, ``beta_kappa``, ``r2``);
    ``delta_median`` / ``delta_p95``: row-centred half-range of the QK residual
    ``eps_ij`` of the top head (the smallest ``delta`` that bounds that row);
    ``eta_std`` / ``eta_max``: size of everything along ``c`` not explained by
    the aligned value terms with measured attention, relative to ``std(a)``;
    ``exact_err``: max error of recomputing ``c . attn_out`` from the weights
    (checks the capture, ~float rounding).

    ``heads`` holds ``[H]`` lists: :func:`head_alignment`'s numbers (``kappa`` is
    the one used: from the weights or fitted to the logits, see
    :func:`measure_layer`; both are kept as ``kappa_weights`` / ``kappa_fit``) and,
    taking each head in turn as *the* aligned head of (A1)-(A3):
    ``delta_median`` / ``delta_p95`` (its logit residual), ``eta_std`` (the update
    minus its aligned value term, over ``std(a)``), ``corr`` (update vs its scalar
    prediction ``beta_h g(kappa_h a)``), ``snr``, ``d7_ratio``, ``d7_fraction`` (see
    :func:`measure_layer`). With ``stream`` given: ``corr_scalar_stream`` (the
    all-heads prediction vs ``c . stream``), ``stream_slope`` / ``stream_corr``
    (regression of ``c . stream`` on ``c . attn_out``).
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
    range_a: float = math.nan
    kappa_source: str = "weights"
    corr_scalar_kappa0: float = math.nan
    corr_scalar_stream: float | None = None
    stream_slope: float | None = None
    stream_corr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _slope(x: Tensor, y: Tensor) -> float:
    x0, y0 = x - x.mean(), y - y.mean()
    return float((x0 * y0).sum() / (x0 * x0).sum().clamp_min(1e-300))


def measure_layer(
    w: AttentionWeights,
    c: Tensor,
    x: Tensor,
    attn_out: Tensor,
    pad: Tensor | None = None,
    *,
    layer: int = 0,
    scores: Tensor | None = None,
    blocked: Tensor | None = None,
    rows: Tensor | None = None,
    kappa: str = "weights",
    stream: Tensor | None = None,
) -> LayerReport:
    """Compare the measured attention update along ``c`` with the scalar prediction.

    w: the layer's weights; c: ``[d_model]`` concept vector; x: ``[N, T, d_model]``
    attention input; attn_out: ``[N, T, d_model]`` attention sublayer output
    (output projection incl. bias, before residual add / LN); pad: ``[N, T]``
    True for real tokens (default all). Optional, for models whose logits are not
    the bilinear form of ``w`` (q/k norms, RoPE): ``scores`` ``[N, H, T, T]`` the
    model's own logits before masking; ``blocked`` ``[N, T, T]`` the mask (default
    padding + ``w.causal``; pass it for sliding windows); ``rows`` ``[N, T]`` the
    query tokens the statistics use (default ``pad``; e.g. without BOS, which
    stays a key); ``kappa``: ``"weights"`` (``alpha_h / scale``) or ``"fit"`` (row-
    centred least-squares slope of the logits on ``a_i a_j``); ``stream``: what the
    sublayer adds to the residual stream, if not ``attn_out``.

    Theorem D.7 per head: a gap is guaranteed to grow only where ``|a_i - a_j| beta
    kappa V~ > R* = |beta| range(a) tanh(delta) + 2 eta`` (sharp remainder,
    :func:`theory.sharp_remainder_bound`), which needs ``beta kappa > 0``. Over a
    sequence's ``rows`` tokens, with ``delta`` its largest row half-range (the
    theorem's uniform bound) and ``eta = 0`` (generous): ``d7_ratio`` is the
    median over sequences of gain / ``R*`` at the widest pair (``|a_i - a_j| =
    range(a)``, so the ratio is ``|kappa| Vbar / tanh(delta)``, with the noiseless
    ``Vbar`` of Theorem D.2 standing in for ``V~``); ``d7_fraction`` the share of
    sequences where it exceeds 1; ``snr = |kappa| range(a)^2 / (4 tanh(delta))``
    an upper bound on any pair's ratio (``V~ <= range(a)^2 / 4``) at the median
    range and median row ``delta``. All three are 0 where ``beta kappa <= 0``.
    """
    if x.dim() != 3 or attn_out.shape != x.shape:
        raise ValueError("x, attn_out: expected equal shapes [N, T, d_model]")
    if kappa not in ("weights", "fit"):
        raise ValueError(f"kappa: expected 'weights' or 'fit', got {kappa!r}")
    dtype = torch.float64
    w = w.to(dtype)
    x, attn_out = x.to(dtype), attn_out.to(dtype)
    c = _unit(c.to(dtype), x.shape[-1])
    pad = torch.ones(x.shape[:2], dtype=torch.bool) if pad is None else pad.bool()
    rows = pad if rows is None else rows.bool() & pad
    block = _blocked(pad, w.causal) if blocked is None else blocked.bool()
    al = head_alignment(w, c)
    a = x @ c
    delta = attn_out @ c
    raw = _scores(w, x) if scores is None else scores.to(dtype)
    scores = raw.masked_fill(block[:, None], float("-inf"))
    al["kappa_weights"] = al["kappa"]
    al["kappa_fit"] = fit_kappa(scores, a, ~block & rows[:, :, None])
    if kappa == "fit":
        al["kappa"] = al["kappa_fit"]
        al["gain"] = al["beta"] * al["kappa"]
        al["rank"] = al["gain"].argsort(descending=True)
    pattern = torch.softmax(scores, -1).nan_to_num(0.0)
    values = torch.einsum("ntd,hde->nhte", x, w.W_V) + w.b_V[None, :, None]
    writes = torch.einsum("nhte,hef,f->nht", values, w.W_O, c)  # value write along c
    recomputed = torch.einsum("nhij,nhj->ni", pattern, writes) + w.b_O @ c
    aligned_h = al["beta"][None, :, None] * torch.einsum("nhij,nj->nhi", pattern, a)
    scalar_h = _scalar_heads(a, al["kappa"], al["beta"], block)
    scalar0 = _scalar_heads(a, torch.zeros_like(al["kappa"]), al["beta"], block)
    top = int(al["rank"][0])
    eps = scores - al["kappa"][None, :, None, None] * a[:, None, :, None] * a[:, None, None, :]
    half = half_range(eps, block)  # [N, H, T]
    std_a = float(a[rows].std())
    resid = (delta - aligned_h.sum(1))[rows]
    H = half.shape[1]
    al["delta_median"] = torch.stack([half[:, h][rows].median() for h in range(H)])
    al["delta_p95"] = torch.stack([torch.quantile(half[:, h][rows], 0.95) for h in range(H)])
    al["eta_std"] = torch.stack([(delta - aligned_h[:, h])[rows].std() / std_a for h in range(H)])
    al["corr"] = torch.tensor(
        [_corr(delta[rows], scalar_h[:, h][rows]) for h in range(H)], dtype=dtype
    )
    al.update(snr_numbers(al["kappa"], al["beta"], a, half, rows))
    extra = {}
    if stream is not None:
        s = stream.to(dtype) @ c
        extra = {
            "corr_scalar_stream": _corr(s[rows], scalar_h.sum(1)[rows]),
            "stream_slope": _slope(delta[rows], s[rows]),
            "stream_corr": _corr(delta[rows], s[rows]),
        }
    return LayerReport(
        layer=layer,
        heads={k: v.tolist() for k, v in al.items()},
        corr_scalar=_corr(delta[rows], scalar_h.sum(1)[rows]),
        corr_measured_attention=_corr(delta[rows], aligned_h.sum(1)[rows]),
        corr_top_head=_corr(delta[rows], scalar_h[:, top][rows]),
        fit=_fit_scalar_map(a, delta, block, rows),
        delta_median=float(al["delta_median"][top]),
        delta_p95=float(al["delta_p95"][top]),
        eta_std=float(resid.std()) / std_a,
        eta_max=float((resid - resid.mean()).abs().max()) / std_a,
        std_a=std_a,
        std_update=float(delta[rows].std()),
        exact_err=float((recomputed - delta)[rows].abs().max()),
        range_a=float(seq_range(a, rows).median()),
        kappa_source=kappa,
        corr_scalar_kappa0=_corr(delta[rows], (scalar0.sum(1))[rows]),
        **extra,
    )
