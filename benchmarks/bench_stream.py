"""Streaming concept scores vs a bare forward and vs caching, on MiniLM.

Setup: all-MiniLM-L6-v2 (eager attention), 32 texts x 128 tokens, 64 random
unit concepts, all 7 residual layers. Compared, in one run:

  (a) bare Hugging Face forward (``AutoModel``, pre-tokenised inputs, no_grad)
  (b) ``ConceptLens.scores`` end to end (tokenisation included) via each adapter:
      Hugging Face model, TransformerBridge (fast path), TransformerBridge forced
      through its hook points, nnsight
  (c) TransformerLens ``run_with_cache`` (all hook points), then projection
  (d) Hugging Face ``output_hidden_states=True``, then projection

Wall time: ``--reps`` repetitions after one warm-up; each repetition runs
every method once in a shuffled order. Ratios ("vs bare", and the JSON
``*_vs_bare``) are medians of the per-repetition ratios to the bare forward
of the same repetition (paired), so that load from other processes on the
shared cores cancels out as far as it can; absolute medians are printed too.

Memory: peak bytes of live tensors allocated during one call (weights and
inputs excluded), tracked by a ``TorchDispatchMode`` that follows every
tensor storage an op creates until it is freed.

The last line of stdout is JSON. Usage: ``python benchmarks/bench_stream.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from superact_lens.adapters import minilm_folder  # noqa: E402
from superact_lens.concepts.bank import ConceptBank  # noqa: E402
from superact_lens.lens import ConceptLens  # noqa: E402

N_TEXTS, N_TOKENS, N_CONCEPTS = 32, 128, 64


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storages created inside the context and still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                if size == 0 or key in self._sizes:
                    continue
                self._sizes[key] = size
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key)
        return out


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


def measure(
    methods: dict[str, Callable[[], object]], reps: int, seed: int = 0
) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Median wall time, median per-repetition ratio to ``bare_hf``, and peak memory.

    Every repetition runs each method once, in a shuffled order; ratios are taken
    within a repetition (paired), which cancels most of the drift when other
    processes share the cores.
    """
    for fn in methods.values():  # warm-up
        fn()
    rng = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(reps):
        order = list(methods)
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            methods[name]()
            times[name].append(time.perf_counter() - start)
    ratios = {
        name: statistics.median(t / b for t, b in zip(times[name], times["bare_hf"], strict=True))
        for name in methods
    }
    peaks = {}
    for name, fn in methods.items():
        with PeakTensorMemory() as tracker:
            out = fn()
        del out
        peaks[name] = tracker.peak
    return {name: statistics.median(t) for name, t in times.items()}, ratios, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repetitions (< 2 min on 2 cores)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5 quick, 11)")
    args = parser.parse_args()
    reps = args.reps or (5 if args.quick else 11)
    warnings.simplefilter("ignore")
    torch.manual_seed(0)

    import nnsight
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModel, AutoTokenizer

    folder = str(minilm_folder())
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
    resid_names = ["blocks.0.hook_in"] + [f"blocks.{i}.hook_out" for i in range(6)]

    def bare():
        with torch.no_grad():
            return hf(**enc)

    def cache_then_project():
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids, attention_mask=mask)
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
    methods["cache_then_project"] = cache_then_project
    methods["hidden_states_then_project"] = hidden_then_project

    wall, ratio, peak = measure(methods, reps)
    if lenses["bridge"].adapter.path != "fast":
        raise RuntimeError("the bridge lens did not take its fast path")

    reference = cache_then_project()  # [layers, batch, pos, concepts]
    content = lenses["bridge"].tokenize(texts).content_mask
    streamed = lenses["bridge"].scores(texts, bank, batch_size=N_TEXTS, progress=False)
    max_err = max(float((streamed.tokens[i] - reference[i][content]).abs().max()) for i in range(7))
    mb = 1024**2
    print(f"MiniLM, {N_TEXTS} x {N_TOKENS} tokens, {N_CONCEPTS} concepts, 7 layers, {reps} reps")
    print(f"{'method':30s} {'median s':>9s} {'vs bare':>8s} {'peak MB':>9s}")
    for name in methods:
        print(f"{name:30s} {wall[name]:9.3f} {ratio[name]:8.2f} {peak[name] / mb:9.1f}")
    result = {
        "stream_vs_bare": ratio["stream_bridge"],
        "stream_vs_bare_hf": ratio["stream_hf"],
        "stream_vs_bare_nnsight": ratio["stream_nnsight"],
        "stream_vs_bare_bridge_hooks": ratio["stream_bridge_hooks"],
        "cache_vs_bare": ratio["cache_then_project"],
        "hidden_states_vs_bare": ratio["hidden_states_then_project"],
        "peak_mem_vs_cache": peak["stream_bridge"] / peak["cache_then_project"],
        "peak_mem_vs_cache_hf": peak["stream_hf"] / peak["cache_then_project"],
        # the same, counting only memory above what the bare forward itself needs
        "extra_mem_vs_cache": (peak["stream_bridge"] - peak["bare_hf"])
        / (peak["cache_then_project"] - peak["bare_hf"]),
        "max_abs_err_vs_cache": max_err,
        "wall_s": {k: round(v, 4) for k, v in wall.items()},
        "peak_mb": {k: round(v / mb, 1) for k, v in peak.items()},
        "memory_method": "peak live tensor bytes allocated during one call (TorchDispatchMode)",
        "reps": reps,
        "ratio_method": "median over repetitions of the paired ratio to bare_hf",
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
