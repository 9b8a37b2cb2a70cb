"""Benchmark: ``SuperActivatorDetector.fit`` end to end, as a user calls it.

Synthetic cal set (``--samples``, default 10^4; ``--quick`` 2.5 * 10^3): texts
of 4..16 content tokens, 64 concepts, 13 layers, the default N grid (12 values).
``TokenScores`` hold every token's score ``[layers, tokens, concepts]``; token
masks mark in-concept tokens (also some in negative samples, which the rule
D_in must ignore); about 10 % of samples are positive for each concept.

Timed, in one run, interleaved (benchmarks/_timing.py: one untimed warm-up of
each, then ``--reps`` repetitions with every variant once in a shuffled order):

* ``fit``: ``SuperActivatorDetector().fit(cal, labels, token_masks)``: the
  in-concept gathering, ``segment_max`` over all layers, the threshold/F1 grid
  and the per-concept choice of (layer, N).
* ``reference``: an independent plain-loop implementation of the same
  definition (SPEC section 4): per-sample maxima by a loop over samples,
  in-concept scores by boolean masks, one ``torch.quantile`` per (concept,
  layer), and the counts tp / fp / fn and F1 = 2 tp / (2 tp + fp + fn) computed
  by hand (for the whole N grid of the cell at once); the choice by a loop over
  N, then layer (ties: smaller N, then earlier layer).
  It uses nothing from ``superact_lens.detection``. Its thresholds, F1 grid,
  chosen layer, N and F1 must equal ``fit``'s exactly.
* ``segment_max``: the fit's per-sample maxima alone (context: part of ``fit``).

JSON: ``calibrate_s`` / ``loop_s`` are the best of the repetitions of ``fit`` /
``reference`` (``*_median_s`` the medians); ``speedup_vs_loop`` = reference / fit
as the median of paired ratios, ``speedup_vs_loop_min_ratio`` = min(reference) /
min(fit). Before issue 9, ``calibrate_s`` timed only the grid and the choice
(``superact_grid`` + ``select_best``) on precomputed sample maxima, not ``fit``.

Last stdout line: JSON. Usage: ``python benchmarks/bench_calibrate.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import interleaved_times, ratio, summary  # noqa: E402

from superact_lens.detection import DEFAULT_N_GRID, SuperActivatorDetector  # noqa: E402
from superact_lens.detection.segments import segment_max  # noqa: E402
from superact_lens.scores import TokenScores  # noqa: E402


def synth(n: int, n_concepts: int, n_layers: int, seed: int = 0):
    """A cal set: ``(TokenScores, labels [n, C], token_masks [T, C])``.

    In-concept tokens score higher by a margin that peaks at a concept-specific
    layer, so that the best (layer, N) differs between concepts.
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, 17, (n,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    n_tok = int(offsets[-1])
    sample_of = torch.repeat_interleave(torch.arange(n), lengths)
    labels = torch.rand(n, n_concepts, generator=g) < 0.1
    in_span = torch.rand(n_tok, n_concepts, generator=g) < 0.3
    noise_span = torch.rand(n_tok, n_concepts, generator=g) < 0.02
    masks = (in_span & labels[sample_of]) | noise_span  # noise bits sit in negatives too
    peak = torch.randint(0, n_layers, (n_concepts,), generator=g).float()
    depth = torch.arange(n_layers).float().view(n_layers, 1)
    margin = 2.5 * torch.exp(-((depth - peak) ** 2) / 8.0)  # [L, C]
    tokens = torch.randn(n_layers, n_tok, n_concepts, generator=g)
    in_concept = (masks & labels[sample_of]).float()  # [T, C]
    tokens += margin.unsqueeze(1) * in_concept.unsqueeze(0)
    cal = TokenScores(
        layers=list(range(n_layers)),
        concepts=[f"c{i}" for i in range(n_concepts)],
        tokens=tokens,
        offsets=offsets,
    )
    return cal, labels, masks


def fit_reference(
    tokens: Tensor, offsets: Tensor, labels: Tensor, masks: Tensor, n_grid
) -> dict[str, Tensor]:
    """The SuperActivator calibration by plain loops (see the module docstring)."""
    n_layers, _, n_c = tokens.shape
    n = len(offsets) - 1
    sample_max = torch.full((n_layers, n, n_c), float("-inf"), dtype=tokens.dtype)
    sample_of = torch.empty(tokens.shape[1], dtype=torch.long)
    for i in range(n):
        a, b = int(offsets[i]), int(offsets[i + 1])
        sample_of[a:b] = i
        if b > a:
            sample_max[:, i] = tokens[:, a:b].amax(dim=1)
    levels = torch.tensor([1 - x / 100 for x in n_grid], dtype=tokens.dtype)
    tau = torch.empty(n_c, n_layers, len(n_grid), dtype=tokens.dtype)
    f1 = torch.empty(n_c, n_layers, len(n_grid), dtype=torch.float64)
    for c in range(n_c):
        y = labels[:, c]
        # D_in: tokens inside c's mask *in samples labelled c*
        in_c = masks[:, c] & y[sample_of]
        for layer in range(n_layers):
            tau[c, layer] = torch.quantile(tokens[layer, in_c, c], levels)
            # one row per N: which samples have max > tau(N)
            pred = sample_max[layer, :, c].unsqueeze(0) > tau[c, layer].unsqueeze(1)
            tp = (pred & y).sum(1)
            fp = (pred & ~y).sum(1)
            fn = (~pred & y).sum(1)
            denom = (2 * tp + fp + fn).double()
            f1[c, layer] = torch.where(denom > 0, 2 * tp.double() / denom, 0.0)
    best_layer = torch.empty(n_c, dtype=torch.long)
    best_n = torch.empty(n_c, dtype=torch.long)
    grid = f1.tolist()
    for c in range(n_c):
        best = (0, 0)
        for j in range(len(n_grid)):  # ties: smaller N first, then earlier layer
            for layer in range(n_layers):
                if grid[c][layer][j] > grid[c][best[0]][best[1]]:
                    best = (layer, j)
        best_layer[c], best_n[c] = best
    cs = torch.arange(n_c)
    return {
        "tau": tau,
        "f1": f1,
        "layer": best_layer,
        "n": torch.tensor([float(n_grid[j]) for j in best_n], dtype=torch.float64),
        "threshold": tau[cs, best_layer, best_n],
        "cal_f1": f1[cs, best_layer, best_n],
    }


def compare(det: SuperActivatorDetector, ref: dict[str, Tensor]) -> dict[str, bool]:
    """Which fitted quantities equal the reference exactly."""
    return {
        "thresholds": torch.equal(det.cal_threshold_grid_, ref["tau"]),
        "f1": torch.equal(det.cal_f1_grid_, ref["f1"]),
        "layer": torch.equal(det.layer_index_, ref["layer"]),
        "n": torch.equal(det.n_, ref["n"]),
        "threshold": torch.equal(det.threshold_, ref["threshold"]),
        "cal_f1": torch.equal(det.cal_f1_, ref["cal_f1"]),
        "no_fallback": not bool(det.fallback_.any()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2500 samples instead of 10^4")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--reps", type=int, default=15, help="timed repetitions (default 15)")
    args = ap.parse_args()
    n = args.samples or (2_500 if args.quick else 10_000)
    n_c, n_layers, n_grid = 64, 13, DEFAULT_N_GRID
    start = time.perf_counter()
    cal, labels, masks = synth(n, n_c, n_layers)
    print(
        f"samples={n} tokens={cal.n_tokens} concepts={n_c} layers={n_layers} N={len(n_grid)} "
        f"threads={torch.get_num_threads()}",
        flush=True,
    )
    fitted: dict[str, object] = {}

    def fit():
        fitted["det"] = SuperActivatorDetector(n_grid).fit(cal, labels, masks)

    def reference():
        fitted["ref"] = fit_reference(cal.tokens, cal.offsets, labels, masks, n_grid)

    methods = {
        "fit": fit,
        "reference": reference,
        "segment_max": lambda: segment_max(cal.tokens, cal.offsets, dim=1),
    }
    load_before = os.getloadavg()[0]

    def progress(i: int) -> None:
        print(f"  repetition {i + 1}/{args.reps}", file=sys.stderr, flush=True)

    times = interleaved_times(methods, args.reps, on_rep=progress)
    same = compare(fitted["det"], fitted["ref"])
    cpu = []
    for _ in range(3):
        c0 = time.process_time()
        fit()
        cpu.append(time.process_time() - c0)

    stats = {name: summary(t) for name, t in times.items()}
    speed = ratio(times["reference"], times["fit"])
    seg_share = ratio(times["segment_max"], times["fit"])
    for name, s in stats.items():
        print(f"{name:12s} median {s['median_s']:.3f} s   min {s['min_s']:.3f} s   ({s['n']} reps)")
    print(
        f"speed-up vs reference: median paired {speed['median_paired']:.1f}x, "
        f"min/min {speed['min_ratio']:.1f}x; identical: {same}"
    )
    identical = all(same.values())
    print(
        json.dumps(
            {
                "calibrate_s": round(stats["fit"]["min_s"], 4),
                "loop_s": round(stats["reference"]["min_s"], 4),
                "speedup_vs_loop": round(speed["median_paired"], 2),
                "identical": identical,
                "calibrate_cpu_s": round(min(cpu), 4),
                "load_average": round(load_before, 2),
                "segment_max_s": round(stats["segment_max"]["min_s"], 4),
                "n_samples": n,
                "n_concepts": n_c,
                "n_layers": n_layers,
                "n_grid": len(n_grid),
                # added: what is timed and how
                "timed": "SuperActivatorDetector.fit end to end (in-concept gathering, "
                "segment_max, grid, selection) vs an independent plain-loop reference",
                "calibrate_median_s": round(stats["fit"]["median_s"], 4),
                "loop_median_s": round(stats["reference"]["median_s"], 4),
                "speedup_vs_loop_min_ratio": round(speed["min_ratio"], 2),
                "segment_max_share_of_fit": round(seg_share["median_paired"], 3),
                "identical_by_quantity": same,
                "n_tokens": cal.n_tokens,
                "reps": args.reps,
                "ratio_method": "speedup_vs_loop: median over repetitions of the paired ratio "
                "reference / fit (interleaved, shuffled, after one warm-up); *_s: best of reps",
                "bench_wall_s": round(time.perf_counter() - start, 1),
            }
        )
    )
    if not identical:
        raise SystemExit(f"fit differs from the plain-loop reference: {same}")


if __name__ == "__main__":
    main()
