"""Detection across models: MiniLM (6-layer encoder), MPNet (12-layer encoder) and
Gemma-3-270M (18-block decoder) on the shipped wordnet-supersenses dataset.

For every model, ``superact run --model MODEL --dataset DATASET --out OUT/MODEL``
(the command a user types, default settings) writes results.json; this script
reads them and prints one comparison table per concept type:

* weighted F1 on TEST per method (SuperActivator, its fixed-N variant, CLS,
  mean, last, random, max token), with the SuperActivator's margin over the
  best baseline;
* where the SuperActivator detector reads concepts: the median chosen layer
  (index, and percent of depth) and the median N;
* separability by depth: concept-averaged ``coverage99`` (share of positive
  samples with an in-concept token above the 99th percentile of out-of-concept
  tokens) at 0, 25, 50, 75 and 100 % of depth, and the layer where it peaks.

``--reuse`` reads an existing ``OUT/MODEL/results.json`` when its model and
dataset match (for runs made earlier by the same command) instead of running
again; the JSON says which runs were reused. Times are the pipeline's own
``timing_s.total`` (model load excluded) and, for runs made here, the command's
wall time (``wall_s``, load included).

Needs the ``models`` extra for MPNet and Gemma (``pip install -e ".[models]"``);
a model whose extra is absent is skipped and listed under ``skipped``.
The last line of stdout is JSON. Usage:
``python benchmarks/bench_models.py [--out bench-models-out] [--reuse]``
(about 40 min for the three models on 2 idle CPU cores, most of it Gemma).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from superact_lens.adapters.zoo import packaged_model  # noqa: E402

MODELS = ("minilm", "mpnet", "gemma-270m")
METHODS = ("superact", "superact_fixed", "cls", "mean", "last", "random", "max")
BASELINES = ("cls", "mean", "last", "random", "max")
DEPTHS = (0, 25, 50, 75, 100)


def missing_extra(model: str) -> str | None:
    """The pip extra a packaged model needs when it is not installed, else None."""
    entry = packaged_model(model)
    if entry is None or not entry.missing_modules():
        return None
    return f"needs the extra {entry.extra!r}: pip install -e '.[{entry.extra}]'"


def run_model(model: str, dataset: str, out: Path, reuse: bool) -> tuple[dict, float | None]:
    """results.json of ``superact run`` for ``model`` (reused or run now) and the wall time."""
    path = out / "results.json"
    if reuse and path.is_file():
        results = json.loads(path.read_text())
        if results.get("model") == model and results.get("dataset") == dataset:
            return results, None
    cmd = [
        sys.executable, "-m", "superact_lens.cli", "run",
        "--model", model, "--dataset", dataset, "--out", str(out), "--quiet",
    ]  # fmt: skip
    print(f"$ {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    return json.loads(path.read_text()), time.perf_counter() - start


def summarise(results: dict, kind: str) -> dict:
    """The comparison row of one model and concept type."""
    layers = [int(x) for x in results["layers"]]
    top = max(layers)
    entry = results["results"][kind]
    f1 = {m: entry[m]["weighted_f1"] for m in METHODS if m in entry}
    per_concept = entry["superact"]["per_concept"].values()
    chosen = [c["layer"] for c in per_concept]
    sparsity = [c["sparsity"] for c in per_concept if c["sparsity"] is not None]
    sep = results["separability"][kind]
    coverage = {int(layer): row.get("coverage99") for layer, row in sep.items()}
    at_depth = {}
    for pct in DEPTHS:
        layer = min(layers, key=lambda x: abs(x - pct / 100 * top))
        at_depth[f"{pct}%"] = coverage.get(layer)
    valid = {layer: v for layer, v in coverage.items() if v is not None}
    peak = max(valid, key=lambda x: valid[x]) if valid else None
    best_baseline = max((f1[m] for m in BASELINES if m in f1), default=float("nan"))
    return {
        "n_layers": len(layers),
        "weighted_f1": f1,
        "superact_margin": f1["superact"] - best_baseline,
        "median_layer": statistics.median(chosen),
        "median_layer_pct": round(100 * statistics.median(chosen) / top, 1),
        "median_n": statistics.median(sparsity) if sparsity else None,
        "coverage99_by_depth": at_depth,
        "coverage99_peak_layer": peak,
        "coverage99_peak_pct": None if peak is None else round(100 * peak / top, 1),
        "coverage99_peak": valid.get(peak) if peak is not None else None,
    }


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def print_table(rows: dict[str, dict], kind: str) -> None:
    print(f"\n## {kind}: weighted F1 on TEST per method")
    head = f"{'model':12s} {'layers':>6s} " + " ".join(f"{m:>14s}" for m in METHODS)
    print(head + f" {'margin':>7s}")
    for model, row in rows.items():
        cells = " ".join(f"{fmt(row['weighted_f1'].get(m)):>14s}" for m in METHODS)
        print(f"{model:12s} {row['n_layers']:6d} {cells} {row['superact_margin']:+7.3f}")
    print(f"\n## {kind}: where SuperActivators are read, and coverage99 by depth")
    depth_head = " ".join(f"{d:>6s}" for d in (f"{p}%" for p in DEPTHS))
    print(f"{'model':12s} {'layer (med)':>12s} {'N (med)':>8s} {depth_head} {'peak':>12s}")
    for model, row in rows.items():
        depth = " ".join(f"{fmt(v, '.2f'):>6s}" for v in row["coverage99_by_depth"].values())
        layer = f"{row['median_layer']:g} ({row['median_layer_pct']:.0f}%)"
        peak = f"L{row['coverage99_peak_layer']} ({fmt(row['coverage99_peak'], '.2f')})"
        print(f"{model:12s} {layer:>12s} {fmt(row['median_n'], 'g'):>8s} {depth} {peak:>12s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--dataset", default="wordnet-supersenses")
    parser.add_argument("--out", type=Path, default=Path("bench-models-out"))
    parser.add_argument("--reuse", action="store_true", help="reuse matching results.json")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    runs: dict[str, dict] = {}
    wall: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        why = missing_extra(model)
        if why is not None:
            skipped[model] = why
            print(f"skipping {model}: {why}", file=sys.stderr)
            continue
        runs[model], wall[model] = run_model(model, args.dataset, args.out / model, args.reuse)
    if not runs:
        raise SystemExit("no model could run: " + "; ".join(skipped.values()))
    first = next(iter(runs.values()))["results"]
    kinds = [k for k in first if all(k in r["results"] for r in runs.values())]
    table = {kind: {m: summarise(r, kind) for m, r in runs.items()} for kind in kinds}
    print(f"dataset {args.dataset}; TEST weighted F1; margin = superact - best baseline")
    for kind in kinds:
        print_table(table[kind], kind)
    result = {
        "dataset": args.dataset,
        "models": table,
        "superact_best": {
            kind: {m: row["superact_margin"] > 0 for m, row in rows.items()}
            for kind, rows in table.items()
        },
        "pipeline_total_s": {m: r["timing_s"]["total"] for m, r in runs.items()},
        "wall_s": {m: None if w is None else round(w, 1) for m, w in wall.items()},
        "reused": [m for m, w in wall.items() if w is None],
        "skipped": skipped,
        "bench_wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
