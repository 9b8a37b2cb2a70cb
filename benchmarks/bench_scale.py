"""Peak memory of ``superact run`` against the number of samples, and 1 vs 2 processes.

Setup: a random 2-block, 32-wide Llama (``superact_lens.testing``, byte-level BPE,
no download) and the planted synthetic dataset (``superact_lens.data.synthetic``:
3 concepts, train/cal/test = 50/25/25 %) written as a dataset folder. Every
measurement is the real command, ``python -m superact_lens.cli run ... --concepts
mean --no-figures`` (default bootstrap, 1000 resamples: its resampling block is
capped at 2^18 index draws, so it costs the same memory from ~263 test samples on),
in a fresh process.

* Memory: peak resident set size (``ru_maxrss`` of the finished child from
  ``os.wait4``, which also covers processes it started) of ``--mem-reps`` runs at
  each size of ``--sizes`` (default 10^4 and 10^5), the sizes interleaved: the
  peak of one run varies by tens of MB with the allocator's layout. Headline
  ``peak_rss_ratio``: the largest size's median peak over the smallest's (target:
  within 10 %, i.e. <= 1.10); ``peak_rss_ratio_of_min`` the same for minimums.
* Processes: wall time of the same run with ``--nproc 1`` and ``--nproc 2`` on
  ``--nproc-size`` samples, interleaved after one warm-up each
  (benchmarks/_timing.py), ``--reps`` times; ``nproc2_vs_nproc1`` is the median
  of paired ratios (< 1: two processes are faster). On a 2-core machine the
  two ranks share the cores one process already uses, so expect no gain here.

The last line of stdout is JSON. Usage: ``python benchmarks/bench_scale.py
[--sizes 10000,100000] [--mem-reps 3] [--nproc-size 2000] [--reps 15] [--quick]
[--work /dev/shm]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved_times, ratio, summary  # noqa: E402

from superact_lens.data import make_synthetic_dataset, write_dataset_folder  # noqa: E402
from superact_lens.testing import llama_style, save, tiny_llama  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_cli(model: Path, data: Path, out: Path, nproc: int = 1) -> dict:
    """One ``superact run`` in a fresh process: wall seconds, peak RSS (MB), results."""
    cmd = [sys.executable, "-m", "superact_lens.cli", "run", "--model", str(model),
           "--dataset", str(data), "--out", str(out), "--concepts", "mean",
           "--batch-size", "64", "--no-figures", "--quiet",
           "--overwrite", "--nproc", str(nproc)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    res = json.loads((out / "results.json").read_text())
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "results": res}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000", help="sample counts to measure memory at")
    p.add_argument("--mem-reps", type=int, default=3, help="runs at each size for the peak")
    p.add_argument("--nproc-size", type=int, default=2000, help="samples of the timing runs")
    p.add_argument("--reps", type=int, default=15, help="timed repetitions of each variant")
    p.add_argument(
        "--quick", action="store_true", help="sizes 2000,10000, one run each; 3 timing reps"
    )
    p.add_argument(
        "--work",
        default=None,
        help="folder for the model, datasets and outputs (default: the system temp folder; "
        "/dev/shm spares the minutes a disk takes to delete 10^5 files)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.nproc_size, args.mem_reps, args.reps = "2000,10000", 2000, 1, 3
    sizes = sorted({int(s) for s in args.sizes.split(",")})

    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.work) as tmp:
        work = Path(tmp)
        model = save(work / "model", tiny_llama(seed=0, head=False), llama_style())
        folders: dict[int, Path] = {}

        def dataset(n: int) -> Path:
            if n not in folders:
                t0 = time.perf_counter()
                folders[n] = write_dataset_folder(make_synthetic_dataset(n=n), work / f"d{n}")
                print(f"dataset of {n} samples written in {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr)  # fmt: skip
            return folders[n]

        peaks: dict[int, list[float]] = {n: [] for n in sizes}
        walls: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(args.mem_reps):
            for n in sizes:
                r = run_cli(model, dataset(n), work / f"out{n}")
                assert sum(r["results"]["n_samples"].values()) == n, r["results"]["n_samples"]
                peaks[n].append(r["peak_rss_mb"])
                walls[n].append(r["wall_s"])
                print(f"{n} samples: peak RSS {r['peak_rss_mb']:.0f} MB, {r['wall_s']:.0f} s",
                      file=sys.stderr)  # fmt: skip
        memory = {
            n: {
                "peak_rss_mb": round(statistics.median(peaks[n]), 1),
                "peak_rss_min_mb": round(min(peaks[n]), 1),
                "wall_s": round(statistics.median(walls[n]), 1),
            }
            for n in sizes
        }

        data = dataset(args.nproc_size)
        runs: dict[str, list[dict]] = {"nproc1": [], "nproc2": []}

        def variant(nproc: int):
            def call() -> None:
                runs[f"nproc{nproc}"].append(run_cli(model, data, work / f"t{nproc}", nproc))

            return call

        times = interleaved_times(
            {"nproc1": variant(1), "nproc2": variant(2)},
            reps=args.reps,
            on_rep=lambda i: print(f"rep {i + 1}/{args.reps}", file=sys.stderr),
        )
        one, two = runs["nproc1"][-1]["results"], runs["nproc2"][-1]["results"]
        for res in (one, two):
            res.pop("timing_s")

    r = ratio(times["nproc2"], times["nproc1"])
    lo, hi = sizes[0], sizes[-1]
    result = {
        "benchmark": "bench_scale",
        "sizes": sizes,
        "peak_rss_mb": {str(n): memory[n]["peak_rss_mb"] for n in sizes},
        "run_wall_s": {str(n): memory[n]["wall_s"] for n in sizes},
        "peak_rss_all_mb": {str(n): [round(x, 1) for x in peaks[n]] for n in sizes},
        "peak_rss_ratio": round(memory[hi]["peak_rss_mb"] / memory[lo]["peak_rss_mb"], 4),
        "peak_rss_ratio_of_min": round(
            memory[hi]["peak_rss_min_mb"] / memory[lo]["peak_rss_min_mb"], 4
        ),
        "mem_reps": args.mem_reps,
        "nproc_size": args.nproc_size,
        "reps": args.reps,
        "nproc1": summary(times["nproc1"]),
        "nproc2": summary(times["nproc2"]),
        "nproc2_vs_nproc1": round(r["median_paired"], 4),
        "nproc2_ratio_of_min": round(r["min_ratio"], 4),
        "nproc2_peak_rss_mb": round(max(x["peak_rss_mb"] for x in runs["nproc2"]), 1),
        "nproc2_same_results": one == two,
        "cpu_count": os.cpu_count(),
        "target": "peak_rss_ratio <= 1.10",
    }
    for n in sizes:
        print(f"{n:>7} samples: peak RSS median {memory[n]['peak_rss_mb']:.0f} MB, min "
              f"{memory[n]['peak_rss_min_mb']:.0f} MB ({memory[n]['wall_s']:.0f} s)")  # fmt: skip
    print(f"peak RSS {hi} / {lo}: {result['peak_rss_ratio']:.3f} (medians), "
          f"{result['peak_rss_ratio_of_min']:.3f} (minimums)")  # fmt: skip
    print(
        f"--nproc 2 / --nproc 1 wall on {args.nproc_size} samples: "
        f"{result['nproc2_vs_nproc1']:.3f} (ratio of minimums "
        f"{result['nproc2_ratio_of_min']:.3f}); same results: {result['nproc2_same_results']}"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
