"""Benchmark: SuperActivator calibration over the whole (concept, layer, N) grid.

Synthetic cal set: 10^5 samples x 64 concepts x 13 layers, N grid of 12 values.
Timed: the calibration proper — thresholds ``tau(N)`` from the in-concept
scores of every concept and layer, the cal precision/recall/F1 of
``max > tau`` for every cell, and the per-concept choice of (layer, N) — from
per-sample maxima ``[layers, n, concepts]`` and each concept's in-concept
token scores (segment maxima are a separate once-per-dataset reduction,
timed on its own as ``segment_max_s``, not part of ``calibrate_s``).

Baseline measured in the same run: the per-cell loop (one ``torch.quantile``
per concept and layer, one comparison pass per N) that the vectorised path
replaces; its result must be identical.

Last stdout line: JSON with ``calibrate_s`` and ``speedup_vs_loop``.
Usage: ``python benchmarks/bench_calibrate.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from superact_lens.detection import DEFAULT_N_GRID, segment_max
from superact_lens.detection.calibration import f1_from_counts, select_best
from superact_lens.detection.superact import superact_grid


def synth(n: int, n_concepts: int, n_layers: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.rand(n, n_concepts, generator=g) < 0.1
    sample_max = torch.randn(n_layers, n, n_concepts, generator=g)
    sample_max += 2.0 * labels.float().unsqueeze(0)
    # about 3 in-concept tokens per positive sample
    in_scores = []
    for c in range(n_concepts):
        m = int(labels[:, c].sum()) * 3
        in_scores.append(torch.randn(n_layers, m, 1, generator=g) + 1.0)
    return sample_max, labels, in_scores


def calibrate(sample_max, labels, in_scores, n_grid):
    tau, _, _, f1 = superact_grid(sample_max, labels, in_scores, n_grid)
    col, layer, n_idx = select_best(f1)
    return tau, f1, layer, n_idx


def calibrate_loop(sample_max, labels, in_scores, n_grid):
    """Loop reference: per (concept, layer) one ``torch.quantile`` call for the N
    grid, then one comparison pass per N; the same tie rule for the choice."""
    n_layers, _, n_c = sample_max.shape
    q = torch.tensor([1 - n / 100 for n in n_grid])
    tau = torch.empty(n_c, 1, n_layers, len(n_grid))
    f1 = torch.empty(n_c, 1, n_layers, len(n_grid), dtype=torch.float64)
    for c in range(n_c):
        y = labels[:, c]
        n_pos = y.sum().to(torch.float64)
        for layer in range(n_layers):
            taus = torch.quantile(in_scores[c][layer, :, 0], q)
            agg = sample_max[layer, :, c]
            for j in range(len(n_grid)):
                above = agg > taus[j]
                tp = (above & y).sum().to(torch.float64)
                _, _, f = f1_from_counts(tp, above.sum().to(torch.float64), n_pos)
                tau[c, 0, layer, j], f1[c, 0, layer, j] = taus[j], f
    col, layer_i, n_idx = select_best(f1)
    return tau, f1, layer_i, n_idx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10^4 samples instead of 10^5")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n = 10_000 if args.quick else 100_000
    n_c, n_layers, n_grid = 64, 13, DEFAULT_N_GRID
    sample_max, labels, in_scores = synth(n, n_c, n_layers)

    # segment maxima of a token tensor of the same sample count (3 tokens/sample, 8 columns
    # to stay within memory) — reported for context only
    tokens = torch.randn(n_layers, 3 * n, 8)
    offsets = torch.arange(n + 1) * 3
    t0 = time.perf_counter()
    segment_max(tokens, offsets)
    seg_s = time.perf_counter() - t0

    times, cpu = [], []
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        tau, f1, layer, n_idx = calibrate(sample_max, labels, in_scores, n_grid)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    calibrate_s = min(times)
    print(
        f"vectorised calibrate: {calibrate_s:.3f} s (best of {args.repeats}: "
        f"{', '.join(f'{t:.3f}' for t in times)}; CPU s: {', '.join(f'{c:.3f}' for c in cpu)}; "
        f"load average {load_before:.1f} on {os.cpu_count()} cores)",
        flush=True,
    )
    print("running the loop reference ...", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    tau_l, f1_l, layer_l, n_l = calibrate_loop(sample_max, labels, in_scores, n_grid)
    loop_s = time.perf_counter() - t0
    same = (
        torch.equal(tau, tau_l)
        and torch.equal(f1, f1_l)
        and torch.equal(layer, layer_l)
        and torch.equal(n_idx, n_l)
    )
    print(
        f"samples={n} concepts={n_c} layers={n_layers} N={len(n_grid)} "
        f"threads={torch.get_num_threads()}"
    )
    print(f"loop reference:       {loop_s:.3f} s   identical results: {same}")
    print(
        json.dumps(
            {
                "calibrate_s": round(calibrate_s, 4),
                "loop_s": round(loop_s, 4),
                "speedup_vs_loop": round(loop_s / calibrate_s, 2),
                "identical": bool(same),
                "calibrate_cpu_s": round(min(cpu), 4),
                "load_average": round(load_before, 2),
                "segment_max_s": round(seg_s, 4),
                "n_samples": n,
                "n_concepts": n_c,
                "n_layers": n_layers,
                "n_grid": len(n_grid),
            }
        )
    )
    if not same:
        raise SystemExit("vectorised calibration differs from the loop reference")


if __name__ == "__main__":
    main()
