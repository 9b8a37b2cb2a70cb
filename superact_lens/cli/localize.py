"""``superact localize``: where the concepts are, global vs SuperActivator local target.

Model + dataset (+ a saved detector, or a fresh calibration) -> ``OUT/localize.json``,
``OUT/localize.md`` and heat-map PNGs. See :mod:`superact_lens.localization`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from superact_lens.cli.run import command_out_folder
from superact_lens.errors import InputError

__all__ = ["add_parser", "run"]

_DEFAULT_METHODS = "direct,gradxinput,ig,occlusion,rise,lime,kernelshap"
# the budgets' defaults; localize.md's command names those a run changed
_BUDGETS = {"n_steps": 16, "n_samples": 32, "curve_points": 11, "batch_size": 64, "seed": 0}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "localize",
        help="localise concepts: seven attribution methods, global vs SuperActivator target",
        description="Model + dataset -> OUT/localize.json, OUT/localize.md and heat maps. "
        "Without --detector the SuperActivator detector is calibrated first (superact run's "
        "pipeline, one concept type) and saved to OUT/detector for reuse.",
    )
    p.add_argument("--model", default="minilm", help="a packaged model, Hugging Face id or folder")
    p.add_argument("--dataset", default="wordnet-supersenses", help="dataset folder or name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--concepts", default="linsep", help="one concept type: linsep, mean, ...")
    p.add_argument(
        "--methods",
        default=_DEFAULT_METHODS,
        help=f"comma-separated attribution methods (default: {_DEFAULT_METHODS})",
    )
    p.add_argument(
        "--max-samples",
        type=int,
        default=2,
        help="at most this many positive test samples per concept (default 2)",
    )
    p.add_argument("--detector", default=None, help="a saved detector folder (skip calibration)")
    p.add_argument(
        "--n-steps", type=int, default=_BUDGETS["n_steps"], help="Integrated Gradients steps"
    )
    p.add_argument(
        "--n-samples",
        type=int,
        default=_BUDGETS["n_samples"],
        help="masks for RISE, LIME, KernelSHAP",
    )
    p.add_argument(
        "--curve-points",
        type=int,
        default=_BUDGETS["curve_points"],
        help="points per insertion/deletion curve (0: after every token)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=_BUDGETS["batch_size"],
        help="masked inputs per forward pass",
    )
    p.add_argument("--seed", type=int, default=_BUDGETS["seed"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--heatmaps", type=int, default=4, help="samples drawn as heat maps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _methods(text: str) -> tuple[str, ...]:
    from superact_lens.localization import METHODS

    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise InputError(
            f"--methods: unknown method(s) {unknown or text!r}; choose from {', '.join(METHODS)}"
        )
    return methods


def _calibrated(args: argparse.Namespace, kind: str) -> tuple[Any, Any, Any]:
    """(lens, dataset, detector) from a fresh calibration of one concept type."""
    from superact_lens.detection.artefact import ConceptDetector
    from superact_lens.pipeline import RunConfig, run_experiment

    if not args.quiet:
        print(f"localize: calibrating {kind} SuperActivator detectors", file=sys.stderr)
    config = RunConfig(
        model=args.model,
        dataset=args.dataset,
        concepts=(kind,),
        methods=("superact",),
        seed=args.seed,
        device=args.device,
        n_bootstrap=10,  # the run's detection CIs are not reported here
        progress=not args.quiet,
    )
    exp = run_experiment(config)
    detector = ConceptDetector.from_experiment(
        exp, kind, provenance={"command": "superact localize", "dataset": args.dataset}
    )
    return exp.lens, exp.dataset, detector


def _saved(args: argparse.Namespace, kind: str) -> tuple[Any, Any, Any]:
    """(lens, dataset, detector) from ``--detector``."""
    from superact_lens.data import load_dataset
    from superact_lens.detection.artefact import ConceptDetector
    from superact_lens.lens import ConceptLens
    from superact_lens.vision.masks import is_image_folder, load_image_run_data

    detector = ConceptDetector.load(args.detector)
    if detector.concept_type != kind:
        raise InputError(
            f"--detector {args.detector} holds {detector.concept_type} concepts, "
            f"--concepts asks for {kind}"
        )
    images = is_image_folder(args.dataset)  # letterboxed, as superact run reads image folders
    lens = ConceptLens(args.model, device=args.device, letterbox=images)
    detector.check_model(lens)
    dataset: Any = (
        load_image_run_data(args.dataset, seed=args.seed)
        if images
        else load_dataset(args.dataset, seed=args.seed)
    )
    if list(dataset.concepts) != list(detector.concepts):
        raise InputError(
            f"--detector {args.detector}: its concepts {detector.concepts} are not the "
            f"dataset's {list(dataset.concepts)}"
        )
    return lens, dataset, detector


def _command(args: argparse.Namespace) -> str:
    parts = ["superact", "localize", "--model", args.model, "--dataset", args.dataset]
    parts += ["--out", args.out, "--concepts", args.concepts]
    if args.methods != _DEFAULT_METHODS:
        parts += ["--methods", args.methods]
    parts += ["--max-samples", str(args.max_samples)]
    if args.detector:
        parts += ["--detector", args.detector]
    for name, default in _BUDGETS.items():
        if getattr(args, name) != default:
            parts += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return " ".join(shlex.quote(str(p)) for p in parts)


def run(args: argparse.Namespace) -> int:
    from superact_lens.localization import AttributionConfig

    t0 = time.perf_counter()
    logging.getLogger("superact_lens").setLevel(logging.WARNING)
    kinds = [k.strip() for k in args.concepts.split(",") if k.strip()]
    if len(kinds) != 1:
        raise InputError(f"--concepts: expected one concept type, got {args.concepts!r}")
    if args.max_samples < 1:
        raise InputError(f"--max-samples: expected a positive int, got {args.max_samples}")
    if args.curve_points == 1 or args.curve_points < 0:
        raise InputError(f"--curve-points: expected 0 or at least 2, got {args.curve_points}")
    methods = _methods(args.methods)
    config = AttributionConfig(
        n_steps=args.n_steps, n_samples=args.n_samples, batch_size=args.batch_size, seed=args.seed
    )
    with command_out_folder(args.out) as out:  # bad input leaves no new --out behind
        return _localize(args, out, kinds[0], methods, config, t0)


def _localize(
    args: argparse.Namespace, out: Path, kind: str, methods: tuple[str, ...], config: Any, t0: float
) -> int:
    """Calibrate (or load) the detector, explain the test cases, write OUT's files."""
    from superact_lens.data import token_masks
    from superact_lens.localization import Localizer
    from superact_lens.localization.evaluate import (
        evaluate_cases,
        local_minus_global,
        select_cases,
        summarize,
    )
    from superact_lens.localization.report import (
        render_markdown,
        save_heatmap_page,
        save_heatmaps,
    )
    from superact_lens.localization.vision import (
        IMAGE_BASELINE,
        by_concept,
        image_cases_masks,
        interleave_concepts,
        save_patch_heatmaps,
    )

    lens, dataset, detector = (_saved if args.detector else _calibrated)(args, kind)
    if not args.detector:  # reuse it next time with --detector OUT/detector
        detector.save(out / "detector")
    t_calibrate = time.perf_counter() - t0
    test_rows = [int(r) for r in dataset.split_indices("test")]
    images = bool(getattr(dataset, "is_image", False))
    if images:  # positives without a concept mask have no ground truth: left out
        masks, located = image_cases_masks(lens, dataset, test_rows, f"--dataset {args.dataset}")
    else:
        offsets = lens.content_offsets([dataset.texts[r] for r in test_rows])
        test_masks = token_masks(dataset.select(test_rows), offsets)
        masks = dict(zip(test_rows, test_masks, strict=True))
        located = dataset.labels
    cases = select_cases(
        lens,
        detector,
        dataset.texts,
        located,
        masks,
        test_rows,
        max_per_concept=args.max_samples,
        seed=args.seed,
        progress=not args.quiet,
    )
    if not cases:
        raise InputError("no positive test sample contains a SuperActivator: nothing to localise")
    if images:  # the heat maps (the first cases) then show one image per concept
        cases = interleave_concepts(cases)
    localizer = Localizer(lens, detector, config)
    evaluate_cases(
        localizer,
        cases,
        methods,
        keep_maps=args.heatmaps,
        n_points=args.curve_points or None,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - t0
    results = {
        "setup": {
            "model": args.model,
            "dataset": args.dataset,
            "concept_type": kind,
            "methods": list(methods),
            "max_samples": args.max_samples,
            "n_cases": len(cases),
            "n_bootstrap": args.n_bootstrap,
            "attribution": vars(config),
            "curve_points": args.curve_points or "every token",
            "unit": "patch" if images else "token",
            "baseline": IMAGE_BASELINE
            if images
            else "the pad token's input embedding in place of each removed content token",
            "seconds": seconds,
            "seconds_calibration": t_calibrate,
        },
        "summary": summarize(cases, args.n_bootstrap, args.seed),
        "local_minus_global": local_minus_global(cases, args.n_bootstrap, args.seed),
        "cases": [
            {
                "row": case.row,
                "concept": detector.concepts[case.concept],
                "layer": detector.layer_of(case.concept),
                "records": case.records,
            }
            for case in cases
        ],
    }
    if images:  # where the local target comes from, concept by concept
        results["by_concept"] = by_concept(localizer, cases, args.n_bootstrap, args.seed)
    figures: list[str] = []
    page: Path | None = None
    if args.heatmaps and images:  # patch-grid overlays over the image (no token page)
        figures = save_patch_heatmaps(
            cases, dataset, lens, list(detector.concepts), out, limit=args.heatmaps
        )
    elif args.heatmaps:
        figures = save_heatmaps(cases, list(detector.concepts), out, limit=args.heatmaps)
        page = save_heatmap_page(cases, list(detector.concepts), out / "localize.html")
    (out / "localize.json").write_text(json.dumps(results, indent=2))
    markdown = render_markdown(
        results, figures, command=_command(args), page=page.name if page else None
    )
    (out / "localize.md").write_text(markdown)
    print(f"report: {out / 'localize.md'}")
    print(f"results: {out / 'localize.json'}")
    return 0
