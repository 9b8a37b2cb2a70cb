"""Streaming concept scores vs a bare forward, caching, and hidden states.

Setup (``--model``, ``--tokens``): all-MiniLM-L6-v2 (default; eager attention,
7 residual layers) or Gemma-3-270M (``--model gemma-270m``, the ``gemma``
extra; 19 residual layers), 32 texts x 128 tokens in one batch (``--tokens
512`` for the long setting, ``--texts`` for fewer texts), 64 random unit
concepts, every residual layer. Compared, in one run (``--methods`` picks a
subset; Gemma's default leaves out the ones that pay its 262k-word unembedding
or its ~1200-hook full cache, see ``DEFAULT_METHODS``):

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

Texts are random vocabulary words, truncated to exactly ``--tokens`` tokens
(special tokens included) by the tokenizer, the same way for the lens
(``max_length``) and the baselines.

Time (benchmarks/_timing.py): one untimed warm-up of every method, then
``--reps`` repetitions, each running every method once in a shuffled order.
Ratios are given as the median of per-repetition (paired) ratios -- the
``*_vs_*`` keys -- and as the ratio of minimums (``ratio_of_min``).
``--clock cpu --threads 1`` times CPU seconds of one intra-op thread instead
of wall seconds of torch's default thread count: the setting whose ratios
repeat across back-to-back runs on this shared 2-core machine (README,
Benchmarks); the default wall clock is what a user waits, and moves with load.

Memory: peak bytes of tensor storages newly allocated during one call and
alive together (``NewAllocationPeak``): weights, inputs and views of them
(e.g. ``weight.t()`` in ``F.linear``) are not counted; the call's result is.

Which pairs the headline keys compare (also in the JSON, ``pairs``): the
bridge lens against the TransformerLens baselines, the HF lens against the HF
baselines. ``max_abs_err_vs_cache`` is the largest error of any adapter's
scores against projecting the full cache (per adapter in
``max_abs_err_vs_cache_by_adapter``).

``--memory-only`` skips the timing (for settings where 15 repetitions would
take too long on a CPU, e.g. Gemma at 32 x 512): peak memory and errors only.

The last line of stdout is JSON. Usage: ``python benchmarks/bench_stream.py
[--quick] [--model gemma-270m] [--tokens 512] [--methods a,b] [--memory-only]``.
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

from _timing import CLOCKS, interleaved_times, peak_new_bytes, ratio, summary  # noqa: E402

from superact_lens.adapters.zoo import packaged_model, prepare  # noqa: E402
from superact_lens.concepts.bank import ConceptBank  # noqa: E402
from superact_lens.lens import ConceptLens  # noqa: E402

N_TEXTS, N_CONCEPTS = 32, 64
ADAPTERS = ("hf", "bridge", "bridge_hooks", "nnsight")
ALL_METHODS = (
    "bare_hf",
    *(f"stream_{a}" for a in ADAPTERS),
    "tokenize_lens",
    "bare_bridge",
    "cache_then_project",
    "cache_filtered_then_project",
    "hidden_states_then_project",
)
# Gemma: the bridge wraps Gemma3ForCausalLM, whose 262k x 640 unembedding costs more
# than the 18 blocks at these lengths, so bridge timings would measure the LM head.
DEFAULT_METHODS = {
    "minilm": ALL_METHODS,
    "gemma-270m": (
        "bare_hf",
        "stream_hf",
        "stream_nnsight",
        "tokenize_lens",
        "hidden_states_then_project",
    ),
}

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


def make_texts(tokenizer, n_tokens: int, seed: int = 0) -> list[str]:
    """``N_TEXTS`` texts of random whole-word vocabulary entries, each at least ``n_tokens``
    tokens long (the tokenizer truncates them to exactly ``n_tokens``)."""
    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and w.islower() and len(w) >= 3)
    texts = [" ".join(rng.choice(words) for _ in range(n_tokens)) for _ in range(N_TEXTS)]
    lengths = {
        len(ids) for ids in tokenizer(texts, truncation=True, max_length=n_tokens)["input_ids"]
    }
    if lengths != {n_tokens}:
        raise RuntimeError(f"benchmark texts tokenise to lengths {lengths}, expected {n_tokens}")
    return texts


def project_all(resids: list[torch.Tensor], bank: ConceptBank) -> torch.Tensor:
    """Reference projection of full residual tensors: [layers, batch, pos, concepts]."""
    return torch.stack(
        [
            torch.einsum("bpd,cd->bpc", r, bank.vectors[i]) + bank.bias[i]
            for i, r in enumerate(resids)
        ]
    )


def build(folder: str, n_tokens: int, wanted: tuple[str, ...]):
    """The models, lenses, texts, inputs, concept bank and the timed methods in ``wanted``.

    Models are only loaded when a wanted method needs them (the bridge, nnsight).
    """
    from transformers import AutoModel, AutoTokenizer

    need_bridge = any("bridge" in m or "cache" in m for m in wanted)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    hf = AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    lenses = {"hf": ConceptLens(hf, tokenizer=tokenizer, max_length=n_tokens)}
    if need_bridge:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(folder, device="cpu")
        lenses["bridge"] = ConceptLens(bridge, max_length=n_tokens)
        lenses["bridge_hooks"] = ConceptLens(bridge, fast_path=False, max_length=n_tokens)
    if "stream_nnsight" in wanted:
        import nnsight

        nn_model = nnsight.NNsight(
            AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
        )
        lenses["nnsight"] = ConceptLens(nn_model, tokenizer=tokenizer, max_length=n_tokens)
    texts = make_texts(tokenizer, n_tokens)
    enc = tokenizer(texts, return_tensors="pt", truncation=True, max_length=n_tokens)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    n_layers = lenses["hf"].n_layers
    vectors = torch.randn(n_layers, N_CONCEPTS, lenses["hf"].d_model)
    bank = ConceptBank(
        layers=list(range(n_layers)),
        names=[f"c{i}" for i in range(N_CONCEPTS)],
        vectors=vectors / vectors.norm(dim=-1, keepdim=True),
    )
    resid_names: list[str] = []
    if need_bridge:
        # exactly the hook points the bridge lens reads (hook-point path)
        hooks_adapter = lenses["bridge_hooks"].adapter
        resid_names = [hooks_adapter.layer0_name, *hooks_adapter.out_names]
        if len(resid_names) != n_layers:
            raise RuntimeError(f"expected {n_layers} residual hook names, got {resid_names}")

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
    return lenses, texts, ids, bank, {m: methods[m] for m in wanted}


def errors_vs_reference(lenses, texts, ids, bank, reference: torch.Tensor) -> dict[str, float]:
    """Max |score - projected reference residuals| per adapter, on each lens's own tokens.

    ``reference``: ``[layers, batch, pos, concepts]`` from ``cache_then_project``
    (or, without the bridge, ``hidden_states_then_project`` on every layer but the
    last, which Hugging Face decoders return after the final norm); every lens must
    tokenise the texts to the same ids, or the comparison is void.
    """
    errs = {}
    for name, lens in lenses.items():
        batch = lens.tokenize(texts)
        if not torch.equal(batch.input_ids.cpu(), ids):
            raise RuntimeError(f"the {name} lens tokenised the texts differently")
        scores = lens.scores(texts, bank, batch_size=N_TEXTS, progress=False)
        content = batch.content_mask.cpu()
        errs[name] = max(
            float((scores.tokens[i] - reference[i][content]).abs().max())
            for i in range(reference.shape[0])
        )
    return errs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="15 repetitions (~3 min for MiniLM, 2 idle cores)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 15 quick, 31)")
    parser.add_argument("--model", default="minilm", choices=sorted(DEFAULT_METHODS))
    parser.add_argument("--tokens", type=int, default=128, help="tokens per text (long: 512)")
    parser.add_argument("--texts", type=int, default=32, help="texts, all in one batch")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the methods")
    parser.add_argument(
        "--memory-only", action="store_true", help="peak memory and errors, no timing"
    )
    parser.add_argument(
        "--clock", default="wall", choices=sorted(CLOCKS), help="wall seconds or CPU seconds"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = parser.parse_args()
    global N_TEXTS
    N_TEXTS = args.texts
    reps = args.reps or (15 if args.quick else 31)
    wanted = DEFAULT_METHODS[args.model]
    if args.methods:
        wanted = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        unknown = sorted(set(wanted) - set(ALL_METHODS))
        if unknown or "bare_hf" not in wanted:
            raise SystemExit(f"--methods: unknown {unknown} or no bare_hf; from {ALL_METHODS}")
    warnings.simplefilter("ignore")
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"--threads: expected a positive int, got {args.threads}")
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    entry = packaged_model(args.model)
    if entry is None:
        raise SystemExit(f"--model: not a packaged model: {args.model}")
    lenses, texts, ids, bank, methods = build(str(prepare(entry)), args.tokens, wanted)
    n_layers = len(bank.layers)

    def progress(i: int) -> None:
        print(f"  repetition {i + 1}/{reps}", file=sys.stderr, flush=True)

    times = (
        {}
        if args.memory_only
        else interleaved_times(methods, reps, on_rep=progress, clock=args.clock)
    )
    if "bridge" in lenses and lenses["bridge"].adapter.path != "fast":
        raise RuntimeError("the bridge lens did not take its fast path")
    if "bridge_hooks" in lenses and lenses["bridge_hooks"].adapter.path != "hook_points":
        raise RuntimeError("the bridge_hooks lens did not take the hook-point path")
    peak = {name: peak_new_bytes(fn) for name, fn in methods.items()}
    if "cache_then_project" in methods:
        reference, reference_name = methods["cache_then_project"](), "cache_then_project"
    elif "cache_filtered_then_project" in methods:
        reference = methods["cache_filtered_then_project"]()
        reference_name = "cache_filtered_then_project"
    else:
        reference = methods["hidden_states_then_project"]()[:-1]  # last: after the final norm
        reference_name = "hidden_states_then_project (all layers but the last)"
    errs = errors_vs_reference(lenses, texts, ids, bank, reference)

    mb = 1024**2
    label = f"{args.model}, {N_TEXTS} x {args.tokens} tokens, {N_CONCEPTS} concepts"
    print(
        f"{label}, {n_layers} layers, {0 if args.memory_only else reps} reps, "
        f"{args.clock} clock, {torch.get_num_threads()} threads"
    )
    stats = {name: summary(t) for name, t in times.items()}
    vs_bare = {name: ratio(times[name], times["bare_hf"]) for name in times}
    print(
        f"{'method':30s} {'median s':>9s} {'min s':>7s} {'vs bare':>8s} {'min/min':>8s} "
        f"{'peak MB':>8s}"
    )
    for name in methods:
        if name in times:
            r = vs_bare[name]
            cells = (
                f"{stats[name]['median_s']:9.3f} {stats[name]['min_s']:7.3f} "
                f"{r['median_paired']:8.2f} {r['min_ratio']:8.2f}"
            )
        else:
            cells = f"{'—':>9s} {'—':>7s} {'—':>8s} {'—':>8s}"
        print(f"{name:30s} {cells} {peak[name] / mb:8.1f}")
    time_pairs = {k: (a, b) for k, (a, b) in TIME_PAIRS.items() if a in times and b in times}
    mem_pairs = {k: (a, b) for k, (a, b) in MEM_PAIRS.items() if a in peak and b in peak}
    time_ratios = {key: ratio(times[a], times[b]) for key, (a, b) in time_pairs.items()}
    for key, r in time_ratios.items():
        print(f"{key:30s} median paired {r['median_paired']:.3f}   min/min {r['min_ratio']:.3f}")
    for name, err in errs.items():
        print(f"max |stream_{name} - {reference_name}| = {err:.2e}")

    result: dict = {
        "model": args.model,
        "texts": N_TEXTS,
        "tokens": args.tokens,
        "n_layers": n_layers,
    }
    result |= {key: r["median_paired"] for key, r in time_ratios.items()}
    result |= {key: peak[a] / peak[b] for key, (a, b) in mem_pairs.items()}
    if "stream_bridge" in peak and "cache_then_project" in peak:
        # the same, counting only memory above what the bare forward itself needs
        result["extra_mem_vs_cache"] = (peak["stream_bridge"] - peak["bare_hf"]) / (
            peak["cache_then_project"] - peak["bare_hf"]
        )
    result |= {
        "max_abs_err_vs_cache": max(errs.values()),
        "max_abs_err_vs_cache_by_adapter": errs,
        "error_reference": reference_name,
        "ratio_of_min": {key: r["min_ratio"] for key, r in time_ratios.items()},
        f"{args.clock}_s": {k: round(v["median_s"], 4) for k, v in stats.items()},
        f"{args.clock}_min_s": {k: round(v["min_s"], 4) for k, v in stats.items()},
        "peak_mb": {k: round(v / mb, 1) for k, v in peak.items()},
        "pairs": {key: f"{a} / {b}" for key, (a, b) in {**time_pairs, **mem_pairs}.items()},
        "memory_method": "peak bytes of tensor storages newly allocated during one call and "
        "alive together (NewAllocationPeak: weights, inputs and views of them excluded)",
        "reps": 0 if args.memory_only else reps,
        "ratio_method": "*_vs_*: median over repetitions of the paired ratio "
        "(every method once per repetition, shuffled order, after one warm-up); "
        "ratio_of_min: min over repetitions of each side",
        "clock": args.clock,
        "threads": torch.get_num_threads(),
        "load_average": round(os.getloadavg()[0], 2),
        "bench_wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
