"""Greedy generation with a ConceptMonitor attached vs plain generation.

Setup: a calibrated linsep SuperActivator detector (15 wordnet-supersenses
concepts, calibrated by ``run_experiment`` on a slice of the shipped dataset:
``--n-cal`` texts each for train, cal and test, or loaded with ``--detector``),
a left-padded batch of ``--batch`` prompts (the first words of test texts),
greedy ``generate`` with the KV cache, exactly ``--new`` new tokens
(``min_new_tokens`` = ``max_new_tokens``, so EOS cannot shorten either variant).

Models (``--model``):

* ``small`` (default): a random Llama built in memory (``superact_lens.testing``:
  d_model 256, 4 blocks, 512-word byte-level BPE). No download; its detector is
  calibrated on random features, which is all the timing needs.
* ``tiny``: the 32-wide, 2-block Llama of the tests (the monitor's fixed Python
  cost per step, nearly alone).
* ``gemma-270m``: Gemma-3-270M (the ``gemma`` extra), the real case.

Compared in one run, interleaved (benchmarks/_timing.py): ``plain``:
``model.generate``; ``monitored``: the same call inside ``with monitor:`` (the
monitor is built once; entering attaches its hooks, leaving removes them).
Reported: the median of paired ratios and the ratio of minimums, the overhead
per generated token in ms, the events one generation produces, and
``same_tokens``: the monitored generation returns exactly the plain one's tokens.

The last line of stdout is JSON. Usage: ``python benchmarks/bench_monitor.py
[--model small|tiny|gemma-270m] [--reps 15] [--new 64] [--batch 4] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_times, ratio, summary  # noqa: E402

from superact_lens.data import load_dataset, write_dataset_folder  # noqa: E402
from superact_lens.detection import load_generative  # noqa: E402
from superact_lens.detection.artefact import ConceptDetector  # noqa: E402
from superact_lens.monitor import ConceptMonitor  # noqa: E402
from superact_lens.pipeline import RunConfig, run_experiment  # noqa: E402
from superact_lens.testing import llama_style, save, tiny_llama  # noqa: E402

RANDOM_MODELS = {"small": {"hidden": 256, "layers": 4}, "tiny": {"hidden": 32, "layers": 2}}


def model_folder(name: str, work: Path) -> str:
    """A loadable model name or folder (random models are written to ``work``)."""
    if name not in RANDOM_MODELS:
        return name
    model = tiny_llama(seed=0, positions=512, **RANDOM_MODELS[name])
    return str(save(work / name, model, llama_style("left")))


def calibrate(model: str, n: int, work: Path) -> ConceptDetector:
    """The linsep detector ``run_experiment`` calibrates on an ``n``-per-split slice."""
    ds = load_dataset("wordnet-supersenses")
    rows = [i for s in ("train", "cal", "test") for i in ds.split_indices(s)[:n]]
    folder = write_dataset_folder(ds.select(rows), work / "slice")
    config = RunConfig(
        model=model,
        dataset=str(folder),
        concepts=("linsep",),
        methods=("superact",),
        layers=["0%", "25%", "50%", "75%", "100%"],
        n_bootstrap=10,
        progress=False,
    )
    return ConceptDetector.from_experiment(run_experiment(config), "linsep")


def prompts(batch: int, words: int = 12) -> list[str]:
    ds = load_dataset("wordnet-supersenses")
    test = ds.split_indices("test")
    return [" ".join(ds.texts[i].split()[:words]) for i in test[:batch]]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="small", help="small | tiny | gemma-270m | a folder")
    p.add_argument("--detector", help="a saved detector folder for --model (skips calibration)")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--new", type=int, default=64, help="new tokens per generation")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--n-cal", type=int, default=60, help="texts per split to calibrate on")
    p.add_argument("--quick", action="store_true", help="3 reps, 8 new tokens (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.new = 3, 8
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        name = model_folder(args.model, work)
        t0 = time.perf_counter()
        if args.detector:
            detector = ConceptDetector.load(args.detector)
        else:
            detector = calibrate(name, args.n_cal, work)
        t_calibrate = time.perf_counter() - t0
        model, tokenizer = load_generative(name)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer(prompts(args.batch), return_tensors="pt", padding=True)
    gen = {
        "max_new_tokens": args.new,
        "min_new_tokens": args.new,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
    }
    monitor = ConceptMonitor(model, detector, tokenizer=tokenizer)
    outputs: dict[str, torch.Tensor] = {}

    def plain() -> None:
        with torch.no_grad():
            outputs["plain"] = model.generate(**batch, **gen)

    def monitored() -> None:
        with torch.no_grad(), monitor:
            outputs["monitored"] = model.generate(**batch, **gen)

    times = interleaved_times(
        {"plain": plain, "monitored": monitored},
        reps=args.reps,
        on_rep=lambda i: print(f"rep {i + 1}/{args.reps}", file=sys.stderr),
    )
    n_events = sum(1 for e in monitor.events if e.generation == monitor.events[-1].generation)
    r = ratio(times["monitored"], times["plain"])
    per_token_ms = summary(times["monitored"])["median_s"] - summary(times["plain"])["median_s"]
    result = {
        "benchmark": "bench_monitor",
        "model": args.model,
        "n_layers": monitor.lens.n_layers,
        "d_model": monitor.lens.d_model,
        "detector_layers": detector.layers,
        "n_concepts": len(detector.concepts),
        "batch": args.batch,
        "new_tokens": args.new,
        "reps": args.reps,
        "monitored_vs_plain": round(r["median_paired"], 4),
        "ratio_of_min": round(r["min_ratio"], 4),
        "plain": summary(times["plain"]),
        "monitored": summary(times["monitored"]),
        "overhead_ms_per_token": round(1000 * per_token_ms / args.new, 3),
        "events_per_generation": n_events,
        "same_tokens": bool(torch.equal(outputs["plain"], outputs["monitored"])),
        "calibrate_s": round(t_calibrate, 1),
        "target": "monitored_vs_plain <= 1.10",
    }
    print(
        f"{args.model}: {result['n_layers']} layers, d_model {result['d_model']}; "
        f"batch {args.batch} x {args.new} new tokens, {args.reps} reps"
    )
    for variant in ("plain", "monitored"):
        t = result[variant]
        print(f"{variant:<10} median {t['median_s']:.3f} s  min {t['min_s']:.3f} s")
    print(
        f"monitored / plain: {result['monitored_vs_plain']:.3f} (median paired), "
        f"{result['ratio_of_min']:.3f} (ratio of minimums); "
        f"{result['overhead_ms_per_token']:.2f} ms per generated token; "
        f"{n_events} events per generation; same tokens: {result['same_tokens']}"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
