"""Measured heads of any supported Hugging Face model: the scalar map against real heads.

Model-agnostic: :func:`theory.specs.spec_for` says where a model's attention lives
(post-LN BERT encoders; pre-LN Llama-style decoders such as Gemma 3 with
grouped-query attention, q/k norms, RoPE and sliding windows). For each layer we
capture, in one forward pass with our own hooks (removed in ``finally``):

- the attention input ``x`` (the ``hidden_states`` the attention module receives:
  for a pre-LN decoder the ``input_layernorm`` output, so ``a = c . x`` is the
  concept coordinate in the normalised input the heads read), and the
  ``position_embeddings`` (RoPE cos, sin) it receives;
- ``attn_out``, the output projection, and the spec's stream update (Gemma 3:
  ``post_attention_layernorm(attn_out)``, what is added to the residual stream);
- the model's own attention probabilities (``output_attentions``, eager attention).

The logits are recomputed from ``x`` by the spec as the module forms them (for
Gemma 3 from the actual RMS-normalised, rotated ``q`` and ``k``) and checked
against the model's probabilities (``pattern_err``). Where the logits are not the
bilinear form of the weights (q/k norms, RoPE) ``kappa_h`` is fitted to them
(:func:`theory.heads.measure_layer`, ``kappa="fit"``): the scalar map has no
positions, so its relative-position dependence lands in ``eps`` and ``delta``.
Decoders: BOS is excluded from the concept and from the statistics (it stays a
key, as the model attends to it).

Run ``python -m theory.measured --model gemma-270m`` (or ``minilm``) for the report.
"""

from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch
from torch import Tensor

from theory.heads import measure_layer
from theory.minilm import dataset_concept_data, difference_of_means, token_mask
from theory.specs import AttentionSpec, spec_for

__all__ = ["capture_layers", "head_report", "learn_concepts", "summarise"]


@contextmanager
def _hooks(spec: AttentionSpec, blocks: list, outputs: bool):
    """Record each layer's attention input, RoPE and (``outputs``) ``attn_out``, ``post``."""
    store: dict[str, dict[int, object]] = {"x": {}, "pos": {}, "attn_out": {}, "post": {}}
    handles = []
    try:
        for i, blk in enumerate(blocks):

            def pre(_m, args, kwargs, i=i):
                x = kwargs.get("hidden_states", args[0] if args else None)
                store["x"][i] = x.detach()
                pos = kwargs.get("position_embeddings")
                store["pos"][i] = None if pos is None else tuple(t.detach() for t in pos)

            def out(_m, _inp, o, i=i):
                store["attn_out"][i] = o.detach()

            def post(_m, _inp, o, i=i):
                store["post"][i] = o.detach()

            handles.append(spec.attention(blk).register_forward_pre_hook(pre, with_kwargs=True))
            if not outputs:
                continue
            handles.append(spec.out_proj(blk).register_forward_hook(out))
            post_module = spec.post(blk)
            if post_module is not None:
                handles.append(post_module.register_forward_hook(post))
        yield store
    finally:
        for h in handles:
            h.remove()


def capture_layers(
    model, tokenizer, texts: list[str], *, max_length: int = 64, outputs: bool = True
) -> dict:
    """One forward pass (right padding); every layer's activations, lists over layers.

    Keys: ``x``, ``attn_out``, ``post`` (None where the spec has no post module)
    ``[N, T, d]`` each; ``pos`` (RoPE cos, sin or None); ``attentions``
    ``[N, H, T, T]`` (the model's own); ``pad``, ``content`` ``[N, T]`` (real
    tokens; real tokens without BOS for decoders); ``offsets`` ``[N, T, 2]``.
    ``outputs=False`` keeps only ``x`` (and ``pos``, masks, offsets): enough to
    learn concepts, at a fraction of the memory.
    """
    spec = spec_for(model)
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_offsets_mapping=True,
        padding_side="right",
    )
    offsets = enc.pop("offset_mapping")
    blocks = spec.blocks(model)
    with _hooks(spec, blocks, outputs) as store, torch.no_grad():
        out = model(**enc, output_attentions=outputs)
    L = len(blocks)
    pad = enc["attention_mask"].bool()
    content = pad.clone()
    if spec.causal and tokenizer.bos_token_id is not None:
        content &= enc["input_ids"] != tokenizer.bos_token_id
    return {
        "x": [store["x"][i] for i in range(L)],
        "pos": [store["pos"][i] for i in range(L)],
        "attn_out": [store["attn_out"].get(i) for i in range(L)],
        "post": [store["post"].get(i) for i in range(L)],
        "attentions": list(out.attentions) if outputs else None,
        "pad": pad,
        "content": content,
        "offsets": offsets,
    }


def learn_concepts(model, tokenizer, data: tuple[list[str], list[list[tuple[int, int]]]]):
    """Unit concept vectors ``[L, d]`` at each attention input, difference of means.

    Learned on ``data``'s even-indexed samples: in-concept tokens (overlapping a
    span) against every content token of the samples without a span.
    """
    texts, spans = data
    cap = capture_layers(model, tokenizer, texts, outputs=False)
    inside = token_mask(cap["offsets"], spans) & cap["content"]
    negative = torch.tensor([not s for s in spans])[:, None] & cap["content"]
    learn = torch.zeros(len(texts), dtype=torch.bool)
    learn[::2] = True
    hidden = torch.stack(cap["x"])
    return difference_of_means(hidden, inside & learn[:, None], negative & learn[:, None])


def _layer(model, spec: AttentionSpec, cap: dict, layer: int, c: Tensor, kappa: str) -> dict:
    blk = spec.blocks(model)[layer]
    x, pad = cap["x"][layer], cap["pad"]
    with torch.no_grad():
        logits = spec.logits(blk, x, cap["pos"][layer])
    blocked = spec.blocked(blk, pad)
    stream = spec.stream_update(x, cap["attn_out"][layer], cap["post"][layer])
    rep = measure_layer(
        spec.weights(blk),
        c,
        x,
        cap["attn_out"][layer],
        pad,
        layer=layer,
        scores=logits,
        blocked=blocked,
        rows=cap["content"],
        kappa=kappa,
        stream=stream,
    ).to_dict()
    mine = torch.softmax(logits.double().masked_fill(blocked[:, None], float("-inf")), -1)
    theirs = cap["attentions"][layer].double()
    rows = cap["content"][:, None, :, None]
    rep["pattern_err"] = float(((mine - theirs) * rows).nan_to_num(0.0).abs().max())
    return rep


def head_report(
    model,
    tokenizer,
    *,
    data: tuple[list[str], list[list[tuple[int, int]]]] | None = None,
    texts: list[str] | None = None,
    concepts: Tensor | None = None,
    source: str = "given",
    kappa: str | None = None,
) -> dict:
    """Per-layer :class:`theory.heads.LayerReport` dicts of ``model`` for one concept.

    Concepts ``[L, d]`` (or ``[d]``) are given or learned from ``data`` (texts and
    spans, :func:`learn_concepts`); heads are measured on ``texts`` (default
    ``data``'s texts). ``kappa``: ``"weights"`` or ``"fit"`` (default: weights
    where the spec's logits are the exact bilinear form, else fit). Each layer
    adds ``pattern_err``: max difference between the recomputed attention
    probabilities and the model's own over content query rows.
    """
    spec = spec_for(model)
    L = len(spec.blocks(model))
    kappa = kappa or ("weights" if spec.exact_bilinear else "fit")
    if concepts is None:
        if data is None:
            raise ValueError("data: required when concepts are not given")
        concepts = learn_concepts(model, tokenizer, data)
        texts = texts if texts is not None else data[0]
    if texts is None:
        raise ValueError("texts: required when concepts are given")
    concepts = concepts.expand(L, -1) if concepts.dim() == 1 else concepts
    if concepts.dim() != 2 or concepts.shape[0] != L:
        raise ValueError(f"concepts: expected [{L}, d_model] or [d_model]")
    cap = capture_layers(model, tokenizer, texts)
    layers = [_layer(model, spec, cap, i, concepts[i].double(), kappa) for i in range(L)]
    return {
        "layers": layers,
        "concept_source": source,
        "model_type": model.config.model_type,
        "kappa_source": kappa,
    }


def summarise(report: dict, top: int = 5) -> dict:
    """Top heads by ``beta kappa``, Theorem D.7's regime, correlation ranges."""
    rows = []
    for r in report["layers"]:
        h = r["heads"]
        for i in range(len(h["gain"])):
            rows.append({"layer": r["layer"], "head": i, **{k: h[k][i] for k in _HEAD_KEYS}})
    rows.sort(key=lambda t: -t["gain"])
    corr = [r["corr_scalar"] for r in report["layers"]]
    return {
        "top_heads": rows[:top],
        "in_regime": [t for t in rows if t["d7_fraction"] > 0.5],
        "any_d7_sequence": [t for t in rows if t["d7_fraction"] > 0],
        "corr_scalar_range": (min(corr), max(corr)),
        "best_head_corr": max(rows, key=lambda t: abs(t["corr"])),
        "max_pattern_err": max(r["pattern_err"] for r in report["layers"]),
        "max_exact_err": max(r["exact_err"] for r in report["layers"]),
    }


_HEAD_KEYS = ("gain", "kappa", "beta", "delta_median", "eta_std", "corr", "snr", "d7_ratio")
_HEAD_KEYS = (*_HEAD_KEYS, "d7_fraction")


def _print(report: dict, seconds: float) -> None:
    print(f"{report['model_type']}: {report['concept_source']}; kappa {report['kappa_source']}")
    print("layer head   beta*kappa   kappa     beta   delta   eta   corr    snr  d7_ratio  d7_frac")
    for r in report["layers"]:
        h = r["heads"]
        for i in range(len(h["gain"])):
            print(
                f"{r['layer']:5d} {i:4d} {h['gain'][i]:12.2e} {h['kappa'][i]:8.4f} "
                f"{h['beta'][i]:8.4f} {h['delta_median'][i]:6.2f} {h['eta_std'][i]:5.2f} "
                f"{h['corr'][i]:6.3f} {h['snr'][i]:6.3f} {h['d7_ratio'][i]:9.2e} "
                f"{h['d7_fraction'][i]:8.2f}"
            )
    print(
        "layer corr_scalar corr_kappa0 corr_stream corr_meas_attn  fit_R2  eta_std"
        "  pattern_err exact_err"
    )
    for r in report["layers"]:
        print(
            f"{r['layer']:5d} {r['corr_scalar']:11.3f} {r['corr_scalar_kappa0']:11.3f} "
            f"{r['corr_scalar_stream']:11.3f} "
            f"{r['corr_measured_attention']:14.3f} {r['fit']['r2']:7.3f} {r['eta_std']:8.3f} "
            f"{r['pattern_err']:12.1e} {r['exact_err']:9.1e}"
        )
    s = summarise(report)
    print("top heads by beta*kappa:")
    for t in s["top_heads"]:
        print(
            f"  layer {t['layer']} head {t['head']}: beta*kappa {t['gain']:.2e}, "
            f"delta {t['delta_median']:.2f}, d7_ratio {t['d7_ratio']:.2e}, corr {t['corr']:.3f}"
        )
    print(f"heads in Theorem D.7's regime (d7_fraction > 0.5): {len(s['in_regime'])}")
    print(f"heads with any sequence in the regime: {len(s['any_d7_sequence'])}")
    lo, hi = s["corr_scalar_range"]
    print(f"layer correlation of the scalar prediction with c.attn_out: {lo:.3f} to {hi:.3f}")
    b = s["best_head_corr"]
    print(f"largest single-head |corr|: {b['corr']:.3f} (layer {b['layer']} head {b['head']})")
    print(f"max pattern_err {s['max_pattern_err']:.1e}, max exact_err {s['max_exact_err']:.1e}")
    print(f"time: {seconds:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-270m", help="packaged name, folder or HF id")
    parser.add_argument("--concept", default="noun.animal")
    parser.add_argument("--learn", type=int, default=200, help="train samples for the concept")
    parser.add_argument("--measure", type=int, default=100, help="cal samples measured")
    parser.add_argument("--kappa", choices=("weights", "fit"), default=None)
    args = parser.parse_args(argv)
    from superact_lens.adapters.loading import load_model

    start = time.perf_counter()
    model, tokenizer = load_model(args.model, dtype=torch.float32)
    learn = dataset_concept_data(args.concept, split="train", limit=args.learn)
    texts, _ = dataset_concept_data(args.concept, split="cal", limit=args.measure)
    source = f"wordnet-supersenses {args.concept}"
    report = head_report(model, tokenizer, data=learn, texts=texts, source=source, kappa=args.kappa)
    _print(report, time.perf_counter() - start)


if __name__ == "__main__":
    main()
