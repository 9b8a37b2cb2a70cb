"""Streaming concept scores vs a bare forward, caching, and hidden states, on MiniLM.

Setup: all-MiniLM-L6-v2 (eager attention), 32 texts x 128 tokens, 64 random
unit concepts, all 7 residual layers. Compared, in one run:

  (a) ``bare_hf``: bare Hugging Face forward (``AutoModel``, pre-tokenised, no_grad)
  (b) ``stream_*``: ``ConceptLens.scores`` end to end (tokenisation included) via
      each adapter: Hugging Face model (``hf``), TransformerBridge fast path
      (``bridge``), TransformerBridge through its hook points (``bridge_hooks``),
      nnsight (``nnsight``)
  (c) ``bare_bridge``: bare TransformerBridge forward (its hook points idle),
      for context: the TransformerLens baselines below pay its cost
  (d) ``cache_then_project``: TransformerLens ``run_with_cache`` on every hook
      point, then projection of the residuals
  (e) ``cache_filtered_then_project``: ``run_with_cache(names_filter=...)`` with
      exactly the residual hook names the lens reads, then projection (the fair
      TransformerLens baseline)
  (f) ``hidden_states_then_project``: Hugging Face ``output_hidden_states=True``,
      then projection (the fair Hugging Face baseline)
  (g) ``tokenize_lens``: the lens's tokenisation alone. The ``stream_*`` methods
      include it, the baselines get pre-tokenised ids: every ``stream_vs_*``
      ratio is conservative by about ``tokenize_vs_bare``.

Time (benchmarks/_timing.py): one untimed warm-up of every method, then
``--reps`` repetitions, each running every method once in a shuffled order.
Ratios are given as the median of per-repetition (paired) ratios -- the
``*_vs_*`` keys -- and as the ratio of minimums (``ratio_of_min``).

Memory: peak bytes of tensor storages newly allocated during one call and
alive together (``NewAllocationPeak``): weights, inputs and views of them
(e.g. ``weight.t()`` in ``F.linear``) are not counted; the call's result is.

Which pairs the headline keys compare (also in the JSON, ``pairs``): the
bridge lens against the TransformerLens baselines, the HF lens against the HF
baselines. ``max_abs_err_vs_cache`` is the largest error of any adapter's
scores against projecting the full cache (per adapter in
``max_abs_err_vs_cache_by_adapter``).

The last line of stdout is JSON. Usage: ``python benchmarks/bench_stream.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import interleaved_times, peak_new_bytes, ratio, summary  # noqa: E402

from superact_lens.adapters import minilm_folder  # noqa: E402
from superact_lens.concepts.bank import ConceptBank  # noqa: E402
from superact_lens.lens import ConceptLens  # noqa: E402

N_TEXTS, N_TOKENS, N_CONCEPTS = 32, 128, 64
ADAPTERS = ("hf", "bridge", "bridge_hooks", "nnsight")

# headline ratio -> (numerator, denominator); time ratios are "*_vs_*" on wall time
TIME_PAIRS = {
    "stream_vs_bare": ("stream_bridge", "bare_hf"),
    "stream_vs_bare_hf": ("stream_hf", "bare_hf"),
    "stream_vs_bare_nnsight": ("stream_nnsight", "bare_hf"),
    "stream_vs_bare_bridge_hooks": ("stream_bridge_hooks", "bare_hf"),
    "cache_vs_bare": ("cache_then_project", "bare_hf"),
    "cache_filtered_vs_bare": ("cache_filtered_then_project", "bare_hf"),
    "hidden_states_vs_bare": ("hidden_states_then_project", "bare_hf"),
    "bare_bridge_vs_bare": ("bare_bridge", "bare_hf"),
    "tokenize_vs_bare": ("tokenize_lens", "bare_hf"),
    "stream_vs_cache_filtered": ("stream_bridge", "cache_filtered_then_project"),
    "stream_vs_hidden_states": ("stream_hf", "hidden_states_then_project"),
}
MEM_PAIRS = {
    "peak_mem_vs_cache": ("stream_bridge", "cache_then_project"),
    "peak_mem_vs_cache_hf": ("stream_hf", "cache_then_project"),
    "peak_mem_vs_cache_filtered": ("stream_bridge", "cache_filtered_then_project"),
    "peak_mem_vs_hidden_states": ("stream_hf", "hidden_states_then_project"),
}


def make_texts(tokenizer, seed: int = 0) -> list[str]:
    """32 texts of whole-word vocabulary entries, each exactly 128 tokens with [CLS]/[SEP]."""
    rng = random.Random(seed)
    words = [w for w in tokenizer.vocab if w.isalpha() and w.islower() and len(w) >= 3]
    texts = [" ".join(rng.choice(words) for _ in range(N_TOKENS - 2)) for _ in range(N_TEXTS)]
    lengths = {len(ids) for ids in tokenizer(texts)["input_ids"]}
    if lengths != {N_TOKENS}:
        raise RuntimeError(f"benchmark texts tokenise to lengths {lengths}, expected {N_TOKENS}")
    return texts


def project_all(resids: list[torch.Tensor], bank: ConceptBank) -> torch.Tensor:
    """Reference projection of full residual tensors: [layers, batch, pos, concepts]."""
    return torch.stack(
        [
            torch.einsum("bpd,cd->bpc", r, bank.vectors[i]) + bank.bias[i]
            for i, r in enumerate(resids)
        ]
    )


def build(folder: str):
    """The models, lenses, texts, inputs, concept bank and every timed method."""
    import nnsight
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    hf = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    bridge = TransformerBridge.boot_transformers(folder, device="cpu")
    nn_model = nnsight.NNsight(
        AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    )
    lenses = {
        "hf": ConceptLens(hf, tokenizer=tokenizer),
        "bridge": ConceptLens(bridge),
        "bridge_hooks": ConceptLens(bridge, fast_path=False),
        "nnsight": ConceptLens(nn_model, tokenizer=tokenizer),
    }
    texts = make_texts(tokenizer)
    enc = tokenizer(texts, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    vectors = torch.randn(7, N_CONCEPTS, 384)
    bank = ConceptBank(
        layers=list(range(7)),
        names=[f"c{i}" for i in range(N_CONCEPTS)],
        vectors=vectors / vectors.norm(dim=-1, keepdim=True),
    )
    # exactly the hook points the bridge lens reads (hook-point path)
    hooks_adapter = lenses["bridge_hooks"].adapter
    resid_names = [hooks_adapter.layer0_name, *hooks_adapter.out_names]
    if len(resid_names) != 7:
        raise RuntimeError(f"expected 7 residual hook names, got {resid_names}")

    def bare():
        with torch.no_grad():
            return hf(**enc)

    def bare_bridge():
        with torch.no_grad():
            return bridge(ids, attention_mask=mask)

    def cache_then_project():
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids, attention_mask=mask)
            return project_all([cache[n] for n in resid_names], bank)

    def cache_filtered_then_project():
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids, attention_mask=mask, names_filter=resid_names)
            # TransformerLens also files each tensor under its aliases (hook_resid_post
            # for hook_out): the same storage, no extra memory; anything else is a bug here
            ptrs = {cache[n].untyped_storage().data_ptr() for n in resid_names}
            extra = [n for n in cache.keys() if cache[n].untyped_storage().data_ptr() not in ptrs]
            if extra:
                raise RuntimeError(f"names_filter also cached {extra}")
            return project_all([cache[n] for n in resid_names], bank)

    def hidden_then_project():
        with torch.no_grad():
            hidden = hf(**enc, output_hidden_states=True).hidden_states
            return project_all(list(hidden), bank)

    methods: dict[str, Callable[[], object]] = {"bare_hf": bare}
    for name, lens in lenses.items():
        methods[f"stream_{name}"] = lambda lens=lens: lens.scores(
            texts, bank, batch_size=N_TEXTS, progress=False
        )
    methods["tokenize_lens"] = lambda: lenses["hf"].tokenize(texts)
    methods["bare_bridge"] = bare_bridge
    methods["cache_then_project"] = cache_then_project
    methods["cache_filtered_then_project"] = cache_filtered_then_project
    methods["hidden_states_then_project"] = hidden_then_project
    return lenses, texts, ids, bank, methods


def errors_vs_cache(lenses, texts, ids, bank, reference: torch.Tensor) -> dict[str, float]:
    """Max |score - projected full cache| per adapter, on each lens's own tokens.

    ``reference``: ``[layers, batch, pos, concepts]`` from ``cache_then_project``;
    every lens must tokenise the texts to the same ids, or the comparison is void.
    """
    errs = {}
    for name, lens in lenses.items():
        batch = lens.tokenize(texts)
        if not torch.equal(batch.input_ids.cpu(), ids):
            raise RuntimeError(f"the {name} lens tokenised the texts differently")
        scores = lens.scores(texts, bank, batch_size=N_TEXTS, progress=False)
        content = batch.content_mask.cpu()
        errs[name] = max(
            float((scores.tokens[i] - reference[i][content]).abs().max()) for i in range(7)
        )
    return errs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="15 repetitions (~3 min, 2 idle cores)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 15 quick, 31)")
    args = parser.parse_args()
    reps = args.reps or (15 if args.quick else 31)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    start = time.perf_counter()
    lenses, texts, ids, bank, methods = build(str(minilm_folder()))

    def progress(i: int) -> None:
        print(f"  repetition {i + 1}/{reps}", file=sys.stderr, flush=True)

    times = interleaved_times(methods, reps, on_rep=progress)
    if lenses["bridge"].adapter.path != "fast":
        raise RuntimeError("the bridge lens did not take its fast path")
    if lenses["bridge_hooks"].adapter.path != "hook_points":
        raise RuntimeError("the bridge_hooks lens did not take the hook-point path")
    peak = {name: peak_new_bytes(fn) for name, fn in methods.items()}
    errs = errors_vs_cache(lenses, texts, ids, bank, methods["cache_then_project"]())

    stats = {name: summary(t) for name, t in times.items()}
    vs_bare = {name: ratio(times[name], times["bare_hf"]) for name in methods}
    mb = 1024**2
    print(f"MiniLM, {N_TEXTS} x {N_TOKENS} tokens, {N_CONCEPTS} concepts, 7 layers, {reps} reps")
    print(
        f"{'method':30s} {'median s':>9s} {'min s':>7s} {'vs bare':>8s} {'min/min':>8s} "
        f"{'peak MB':>8s}"
    )
    for name in methods:
        r = vs_bare[name]
        print(
            f"{name:30s} {stats[name]['median_s']:9.3f} {stats[name]['min_s']:7.3f} "
            f"{r['median_paired']:8.2f} {r['min_ratio']:8.2f} {peak[name] / mb:8.1f}"
        )
    time_ratios = {key: ratio(times[a], times[b]) for key, (a, b) in TIME_PAIRS.items()}
    for key, r in time_ratios.items():
        print(f"{key:30s} median paired {r['median_paired']:.3f}   min/min {r['min_ratio']:.3f}")
    for name, err in errs.items():
        print(f"max |stream_{name} - cache| = {err:.2e}")

    result: dict = {key: r["median_paired"] for key, r in time_ratios.items()}
    result |= {key: peak[a] / peak[b] for key, (a, b) in MEM_PAIRS.items()}
    result |= {
        # the same, counting only memory above what the bare forward itself needs
        "extra_mem_vs_cache": (peak["stream_bridge"] - peak["bare_hf"])
        / (peak["cache_then_project"] - peak["bare_hf"]),
        "max_abs_err_vs_cache": max(errs.values()),
        "max_abs_err_vs_cache_by_adapter": errs,
        "ratio_of_min": {key: r["min_ratio"] for key, r in time_ratios.items()},
        "wall_s": {k: round(v["median_s"], 4) for k, v in stats.items()},
        "wall_min_s": {k: round(v["min_s"], 4) for k, v in stats.items()},
        "peak_mb": {k: round(v / mb, 1) for k, v in peak.items()},
        "pairs": {key: f"{a} / {b}" for key, (a, b) in {**TIME_PAIRS, **MEM_PAIRS}.items()},
        "memory_method": "peak bytes of tensor storages newly allocated during one call and "
        "alive together (NewAllocationPeak: weights, inputs and views of them excluded)",
        "reps": reps,
        "ratio_method": "*_vs_*: median over repetitions of the paired ratio "
        "(every method once per repetition, shuffled order, after one warm-up); "
        "ratio_of_min: min over repetitions of each side",
        "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
        "bench_wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
