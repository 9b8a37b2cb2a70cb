"""Exactness check on a TransformerLens native model built to satisfy (A1)-(A2).

We boot a small attention-only, LayerNorm-free TL-native model
(``transformer_lens.model_bridge.sources.native.boot``) and overwrite one
head's weights so that, for a unit vector ``c``,

    W_Q W_K^T = alpha c c^T,   W_V W_O = beta c c^T,

with all biases zero. The other heads write only orthogonally to ``c`` (their
``W_O`` rows are projected off ``c``), so (A3) holds with ``eta = 0``. Then the
change of the residual stream along ``c`` across the attention sublayer
(``hook_resid_post - hook_resid_pre``, attention-only so nothing else) must
equal the scalar map ``beta * sum_j softmax_j(kappa a_i a_j) a_j`` with
``kappa = alpha / sqrt(d_head)`` and the model's causal mask, for every layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from theory.heads import AttentionWeights

__all__ = ["aligned_native_model", "native_exactness", "tl_attention_weights"]


def aligned_native_model(
    *,
    alpha: float = 3.0,
    beta: float = 0.7,
    n_layers: int = 2,
    d_model: int = 16,
    n_heads: int = 2,
    d_head: int = 8,
    n_ctx: int = 32,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
):
    """Boot the aligned model; returns ``(bridge, c)`` with ``c`` ``[d_model]`` unit."""
    from transformer_lens.model_bridge.sources.native import boot

    cfg = {
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "d_head": d_head,
        "d_vocab": 50,
        "n_ctx": n_ctx,
        "attn_only": True,
        "normalization_type": None,
        "seed": seed,
    }
    model = boot(cfg, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(d_model, dtype=dtype, generator=gen)
    c = c / c.norm()
    u = torch.randn(d_head, dtype=dtype, generator=gen)
    u = u / u.norm()
    proj = torch.eye(d_model, dtype=dtype) - torch.outer(c, c)
    with torch.no_grad():
        for layer in range(n_layers):
            attn = model.blocks[layer].attn.original_component
            for lin in (attn.q, attn.k, attn.v, attn.o):
                lin.bias.zero_()
            # nn.Linear stores weight = W^T; head 0 occupies the first d_head rows
            attn.o.weight.copy_(proj @ attn.o.weight)  # every head writes off c ...
            s = math.sqrt(abs(alpha))
            attn.q.weight[:d_head] = math.copysign(s, alpha) * torch.outer(u, c)
            attn.k.weight[:d_head] = s * torch.outer(u, c)
            attn.v.weight[:d_head] = beta * torch.outer(u, c)
            attn.o.weight[:, :d_head] = torch.outer(c, u)  # ... except head 0, along c
    return model, c


def tl_attention_weights(model, layer: int) -> AttentionWeights:
    """Layer ``layer`` of a TL-native bridge as :class:`AttentionWeights`."""
    attn = model.blocks[layer].attn.original_component
    H, dh = attn.n_heads, attn.d_head
    d = attn.d_model

    def split_in(lin) -> tuple[Tensor, Tensor]:
        w = lin.weight.detach().T.reshape(d, H, dh).transpose(0, 1)
        return w, lin.bias.detach().reshape(H, dh)

    W_Q, b_Q = split_in(attn.q)
    W_K, b_K = split_in(attn.k)
    W_V, b_V = split_in(attn.v)
    W_O = attn.o.weight.detach().T.reshape(H, dh, d)
    return AttentionWeights(
        W_Q,
        W_K,
        W_V,
        W_O,
        b_Q,
        b_K,
        b_V,
        attn.o.bias.detach(),
        float(attn.scale),
        causal=attn.causal,
    )


def native_exactness(
    *, alpha: float = 3.0, beta: float = 0.7, n_seq: int = 8, seq_len: int = 24, seed: int = 0
) -> dict:
    """Max error between measured and predicted updates along ``c``, every layer.

    Returns ``{"max_abs_err", "max_rel_err", "per_layer": [...], "kappa", "beta"}``;
    relative errors are divided by ``max |update|`` of the layer.
    """
    model, c = aligned_native_model(alpha=alpha, beta=beta, seed=seed)
    d_head = model.cfg.d_head
    kappa = alpha / math.sqrt(d_head)
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, model.cfg.d_vocab, (n_seq, seq_len), generator=gen)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    per_layer = []
    for layer in range(model.cfg.n_layers):
        a = cache[f"blocks.{layer}.hook_resid_pre"].to(torch.float64) @ c
        after = cache[f"blocks.{layer}.hook_resid_post"].to(torch.float64) @ c
        logits = kappa * a[:, :, None] * a[:, None, :]
        causal = torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool), 1)
        p = torch.softmax(logits.masked_fill(causal, float("-inf")), -1)
        pred = beta * (p @ a[..., None])[..., 0]
        err = (after - a - pred).abs().max()
        per_layer.append(
            {"max_abs_err": float(err), "max_rel_err": float(err / (after - a).abs().max())}
        )
    return {
        "max_abs_err": max(r["max_abs_err"] for r in per_layer),
        "max_rel_err": max(r["max_rel_err"] for r in per_layer),
        "per_layer": per_layer,
        "kappa": kappa,
        "beta": beta,
    }
