"""Where a model's attention lives: one small spec per architecture family.

The measured-heads code (:mod:`theory.measured`) is model-agnostic; what differs
between architectures is only where the weights sit and how a head forms its
logits. A spec answers, for one layer (a block of ``model.encoder.layer`` or
``model.layers``):

- ``attention(block)``: the module whose ``hidden_states`` input is the attention
  input ``x`` (what ``W_Q``, ``W_K``, ``W_V`` multiply; for a pre-LN decoder that is
  the ``input_layernorm`` output, so ``a = c . x`` is read in normalised
  coordinates);
- ``out_proj(block)``: the output projection, whose output is ``attn_out``;
- ``post(block)``: a module applied after it (or ``None``), and
  ``stream_update(x, attn_out, post)``: what the attention sublayer adds to the
  residual stream;
- ``weights(block)``: :class:`theory.heads.AttentionWeights`, one entry per query
  head (grouped-query K/V heads repeated for the query heads that share them);
- ``logits(block, x, position_embeddings)``: the head logits ``[N, H, T, T]``
  before masking, computed the way the module does (q/k norms, RoPE, scaling);
- ``blocked(block, pad)``: ``[N, T, T]`` True where a query may not attend a key
  (padding, causal mask, sliding window).

``exact_bilinear``: the logits are the bilinear form ``x W_Q W_K^T x / scale``
(BERT). Without it (q/k norms, RoPE) ``alpha_h = c^T W_Q W_K^T c`` does not give
the concept term of the logits and ``kappa`` is measured from the logits instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from theory.heads import AttentionWeights, _blocked

__all__ = ["AttentionSpec", "BertSpec", "DecoderSpec", "spec_for"]


def _split(lin: nn.Linear, heads: int, d_head: int) -> tuple[Tensor, Tensor]:
    """``nn.Linear`` (``y = x W^T + b``) as per-head ``[H, d_in, d_head]`` and ``[H, d_head]``."""
    d = lin.in_features
    w = lin.weight.detach().T.reshape(d, heads, d_head).transpose(0, 1)
    b = lin.bias.detach() if lin.bias is not None else torch.zeros(heads * d_head)
    return w, b.reshape(heads, d_head).to(w.dtype)


class AttentionSpec:
    """Base of the per-architecture specs (see the module docstring)."""

    name = "?"
    causal = False
    exact_bilinear = False

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        raise NotImplementedError

    def attention(self, block: nn.Module) -> nn.Module:
        raise NotImplementedError

    def out_proj(self, block: nn.Module) -> nn.Module:
        raise NotImplementedError

    def post(self, block: nn.Module) -> nn.Module | None:
        return None

    def stream_update(self, x: Tensor, attn_out: Tensor, post: Tensor | None) -> Tensor:
        return attn_out

    def weights(self, block: nn.Module) -> AttentionWeights:
        raise NotImplementedError

    def logits(self, block: nn.Module, x: Tensor, position_embeddings=None) -> Tensor:
        raise NotImplementedError

    def blocked(self, block: nn.Module, pad: Tensor) -> Tensor:
        return _blocked(pad, self.causal)


@dataclass
class BertSpec(AttentionSpec):
    """Post-LN BERT encoders (``encoder.layer[i].attention.{self,output}``).

    The attention input is the previous block's LayerNorm output; ``attn_out`` is
    ``attention.output.dense`` (before the residual add); the stream update is
    ``LN(x + attn_out) - x`` (``post`` = ``attention.output``, the LayerNorm).
    """

    name = "bert"
    exact_bilinear = True

    def blocks(self, model):
        return list(model.encoder.layer)

    def attention(self, block):
        return block.attention.self

    def out_proj(self, block):
        return block.attention.output.dense

    def post(self, block):
        return block.attention.output

    def stream_update(self, x, attn_out, post):
        return post - x

    def weights(self, block):
        att = block.attention
        H, dh = att.self.num_attention_heads, att.self.attention_head_size
        W_Q, b_Q = _split(att.self.query, H, dh)
        W_K, b_K = _split(att.self.key, H, dh)
        W_V, b_V = _split(att.self.value, H, dh)
        dense = att.output.dense
        W_O = dense.weight.detach().T.reshape(H, dh, dense.out_features)
        return AttentionWeights(W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, dense.bias.detach(), dh**0.5)

    def logits(self, block, x, position_embeddings=None):
        w, x = self.weights(block).to(torch.float64), x.double()  # exact form: no rounding
        q = torch.einsum("ntd,hde->nhte", x, w.W_Q) + w.b_Q[None, :, None]
        k = torch.einsum("ntd,hde->nhte", x, w.W_K) + w.b_K[None, :, None]
        return q @ k.transpose(-1, -2) / w.scale


def _rotate_half(x: Tensor) -> Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


@dataclass
class DecoderSpec(AttentionSpec):
    """Pre-LN Llama-style decoders (``layers[i].self_attn.{q,k,v,o}_proj``): Llama, Gemma 3.

    Grouped-query attention: query head ``h`` reads K/V head ``h // (H / H_kv)``.
    Logits are formed as the module does: ``q_norm``/``k_norm`` on each head's
    query and key when present (Gemma 3), RoPE from the ``position_embeddings`` the
    module receives, then ``scaling`` (Gemma 3: ``query_pre_attn_scalar ** -0.5``).
    No soft-cap: Gemma 3's config carries ``attn_logit_softcapping`` but the
    transformers 5 module never passes it to the attention function, so the
    model's logits are uncapped (tested: same pattern with and without it). ``post`` is Gemma 3's
    ``post_attention_layernorm`` (applied to ``attn_out`` before the residual
    add); Llama adds ``attn_out`` directly.
    """

    name = "llama-style decoder"
    causal = True

    def blocks(self, model):
        return list(model.layers)

    def attention(self, block):
        return block.self_attn

    def out_proj(self, block):
        return block.self_attn.o_proj

    def post(self, block):
        return getattr(block, "post_attention_layernorm", None)

    def stream_update(self, x, attn_out, post):
        return attn_out if post is None else post

    def _heads(self, attn) -> tuple[int, int, int]:
        cfg = attn.config
        return cfg.num_attention_heads, cfg.num_key_value_heads, attn.head_dim

    def weights(self, block):
        attn = block.self_attn
        H, H_kv, dh = self._heads(attn)
        rep = H // H_kv
        W_Q, b_Q = _split(attn.q_proj, H, dh)
        W_K, b_K = (t.repeat_interleave(rep, 0) for t in _split(attn.k_proj, H_kv, dh))
        W_V, b_V = (t.repeat_interleave(rep, 0) for t in _split(attn.v_proj, H_kv, dh))
        o = attn.o_proj
        W_O = o.weight.detach().T.reshape(H, dh, o.out_features)
        b_O = o.bias.detach() if o.bias is not None else torch.zeros(o.out_features)
        scale = 1 / attn.scaling
        return AttentionWeights(W_Q, W_K, W_V, W_O, b_Q, b_K, b_V, b_O, scale, causal=True)

    def logits(self, block, x, position_embeddings=None):
        attn = block.self_attn
        H, H_kv, dh = self._heads(attn)
        N, T, _ = x.shape
        x = x.to(attn.q_proj.weight.dtype)
        q = attn.q_proj(x).view(N, T, H, dh).transpose(1, 2)
        k = attn.k_proj(x).view(N, T, H_kv, dh).transpose(1, 2)
        if getattr(attn, "q_norm", None) is not None:
            q, k = attn.q_norm(q), attn.k_norm(k)
        if position_embeddings is None:
            raise ValueError("position_embeddings: required for a RoPE decoder (cos, sin)")
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k = k.repeat_interleave(H // H_kv, 1)
        return (q @ k.transpose(-1, -2)) * attn.scaling

    def blocked(self, block, pad):
        block_mask = _blocked(pad, True)
        window = getattr(block.self_attn, "sliding_window", None)
        if window is not None:
            T = pad.shape[-1]
            i = torch.arange(T, device=pad.device)
            block_mask = block_mask | ((i[:, None] - i[None, :]) >= window)
        return block_mask


_SPECS: dict[str, type[AttentionSpec]] = {
    "bert": BertSpec,
    "llama": DecoderSpec,
    "gemma3_text": DecoderSpec,
}


def spec_for(model: nn.Module) -> AttentionSpec:
    """The spec of ``model`` by its ``config.model_type``; a clear error for others."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in _SPECS:
        known = ", ".join(sorted(_SPECS))
        raise ValueError(
            f"model: no attention spec for model_type {model_type!r} (known: {known}); "
            "add one in theory/specs.py"
        )
    return _SPECS[model_type]()
