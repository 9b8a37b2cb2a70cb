"""``superact run``: model + dataset -> results.json, report.md and figures (INTERFACES §2)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from superact_lens.errors import InputError

if TYPE_CHECKING:
    from superact_lens.pipeline import Experiment, RunConfig
    from superact_lens.runstate import RunState

__all__ = [
    "add_parser",
    "command_out_folder",
    "out_folder",
    "parse_layers",
    "parse_methods",
    "run",
    "write_detectors",
]

_DEFAULT_METHODS = "superact,superact_fixed,cls,mean,last,random,max"


def out_folder(path: str | Path) -> Path:
    """Create the ``--out`` folder (and parents); one clear error when that cannot be done."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--out {out}: cannot create the folder ({err.strerror or err})") from None
    return out


@contextmanager
def command_out_folder(path: str | Path) -> Iterator[Path]:
    """:func:`out_folder` for the length of one command; bad input leaves no new folder.

    The folder is created at once (an unwritable ``--out`` fails before any model
    loads). If the command then fails on bad input (an InputError: a missing model,
    a malformed dataset, ...), the folders this call created are removed again; a
    folder that existed before is left as it was.
    """
    out = Path(path)
    created = next((p for p in reversed((out, *out.parents)) if not p.exists()), None)
    out = out_folder(out)
    try:
        yield out
    except InputError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


@contextmanager
def quiet_loading(quiet: bool) -> Iterator[None]:
    """Quiet means quiet: with ``quiet``, no progress bar from transformers either
    (its weight-loading bar) for the length of the block; restored after."""
    from transformers.utils import logging as hf_logging

    restore = quiet and hf_logging.is_progress_bar_enabled()
    if restore:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if restore:
            hf_logging.enable_progress_bar()


def parse_layers(text: str | None) -> list[int | str] | None:
    """``--layers 0,25,50,75,100`` are percents through the model (the paper's grids);
    ``L3`` or ``l3`` selects residual layer index 3; ``all`` or nothing means every layer."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    out: list[int | str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise InputError(f"--layers: empty item in {text!r}")
        if item[0] in "lL" and item[1:].isdigit():
            out.append(int(item[1:]))
            continue
        try:
            value = float(item.rstrip("%"))
        except ValueError:
            raise InputError(
                f"--layers: {item!r} is neither a percent (0-100) nor a layer index like L3"
            ) from None
        out.append(f"{value:g}%")
    return out


def parse_methods(text: str, prompt: bool = False) -> tuple[str, ...]:
    """``--methods a,b,c`` as a tuple; ``--prompt`` adds ``prompt`` (names are checked
    by RunConfig)."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InputError(f"--methods: expected a comma-separated list of methods, got {text!r}")
    if prompt and "prompt" not in methods:
        methods.append("prompt")
    return tuple(methods)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="calibrate SuperActivator detectors and baselines; write results.json, report.md",
        description="Model + dataset -> OUT/results.json, OUT/report.md and PNG figures.",
    )
    p.add_argument(
        "--model",
        default="minilm",
        help="a packaged model ('minilm', 'mpnet', 'gemma-270m'), a Hugging Face id or a "
        "local folder",
    )
    p.add_argument(
        "--dataset",
        default="wordnet-supersenses",
        help="a dataset folder (metadata.csv + texts, or + images: image_path column, with "
        "a vision transformer as --model) or a shipped dataset name",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--concepts",
        default="linsep,mean,kmeans,klinsep",
        help="comma-separated concept types: linsep, mean, kmeans, klinsep",
    )
    p.add_argument(
        "--layers",
        default=None,
        help="percents through the model, e.g. 0,25,50,75,100 (or L<i> for an index); "
        "default: every layer",
    )
    p.add_argument(
        "--methods",
        default=_DEFAULT_METHODS,
        help="comma-separated detection methods to report (superact is always included); "
        "add 'prompt' for the prompting baseline of a generative model (one forward pass "
        f"per test sample and concept, so off by default). Default: {_DEFAULT_METHODS}",
    )
    p.add_argument(
        "--prompt",
        action="store_true",
        help="add the prompting baseline to --methods (generative models only)",
    )
    p.add_argument(
        "--n-clusters",
        default="64",
        help="clusters for kmeans/klinsep concepts ('elbow' to choose k by the elbow rule)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument(
        "--max-length", type=int, default=None, help="truncate inputs to this many tokens"
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes (torch.distributed: gloo on CPU, NCCL on CUDA); "
        "torchrun --nproc-per-node N -m superact_lens.cli run ... does the same",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start again in an --out that holds another run (or other files); without "
        "it, the same command on the same --out resumes a killed run",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _parse_clusters(text: str) -> int | None:
    if text.strip().lower() == "elbow":
        return None
    if not text.strip().isdigit() or int(text) < 2:
        raise InputError(f"--n-clusters must be an integer >= 2 or 'elbow', got {text!r}")
    return int(text)


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the report."""
    parts = ["superact", "run", "--model", args.model, "--dataset", args.dataset, "--out", args.out]
    parts += ["--concepts", args.concepts, "--seed", str(args.seed)]
    if args.layers:
        parts += ["--layers", args.layers]
    if args.methods != _DEFAULT_METHODS:
        parts += ["--methods", args.methods]
    if args.prompt:
        parts.append("--prompt")
    if args.n_clusters != "64":
        parts += ["--n-clusters", args.n_clusters]
    if args.max_length is not None:
        parts += ["--max-length", str(args.max_length)]
    return " ".join(shlex.quote(str(p)) for p in parts)


def _dataset_id(name: str) -> str:
    """A dataset folder as an absolute path (usable from anywhere); a shipped name as is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def write_detectors(exp: Experiment, out: Path, command: str) -> Path:
    """``OUT/detectors/<concept type>/`` for every concept type of the run.

    Written into a temporary folder and renamed into place, so an error leaves
    either the previous detectors or none, never a half-written set.
    """
    import superact_lens
    from superact_lens.detection.artefact import ConceptDetector, replace_folder

    provenance = {
        "command": command,
        "dataset": _dataset_id(exp.config.dataset),
        "seed": exp.config.seed,
        "layers": list(exp.layers),
        "method": "superact",
        "superact_lens_version": superact_lens.__version__,
    }
    if exp.lens.image_encoder is not None:  # detect must fit images as this run did
        provenance["letterbox"] = exp.lens.image_encoder.letterbox
    dest = out / "detectors"
    tmp = Path(tempfile.mkdtemp(prefix=".detectors.", dir=out))
    try:
        for kind in exp.config.concepts:
            ConceptDetector.from_experiment(exp, kind, provenance).save(tmp / kind)
        replace_folder(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _log_warnings() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("superact: %(message)s"))
    logger = logging.getLogger("superact_lens")
    if not logger.handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


def _config(args: argparse.Namespace) -> RunConfig:
    from superact_lens.pipeline import RunConfig

    concepts = tuple(c.strip() for c in args.concepts.split(",") if c.strip())
    return RunConfig(
        model=args.model,
        dataset=args.dataset,
        concepts=concepts,
        layers=parse_layers(args.layers),
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        n_bootstrap=args.n_bootstrap,
        n_clusters=_parse_clusters(args.n_clusters),
        methods=parse_methods(args.methods, args.prompt),
        max_length=args.max_length,
        progress=not args.quiet,
    )


def _claim(out: Path, config: RunConfig, overwrite: bool) -> tuple[RunState, Any]:
    """Check ``out`` against this command (run.json) and start or resume its state;
    also return the dataset, read to fingerprint it (a text or an image folder)."""
    from superact_lens.runstate import RunState, dataset_fingerprint, run_document
    from superact_lens.vision.masks import load_run_dataset

    ds = load_run_dataset(config.dataset, seed=config.seed)
    return RunState.claim(out, run_document(config, dataset_fingerprint(ds)), overwrite), ds


def _write_outputs(exp: Experiment, out: Path, args: argparse.Namespace) -> None:
    from superact_lens.report import render_report, save_figures

    figures = [] if args.no_figures else save_figures(exp, out)
    command = _command_line(args)
    (out / "results.json").write_text(json.dumps(exp.results, indent=2))
    (out / "report.md").write_text(render_report(exp.results, figures, command=command))
    detectors = write_detectors(exp, out, command)
    print(f"report: {out / 'report.md'}")
    print(f"results: {out / 'results.json'}")
    print(f"detectors: {detectors}{os.sep}<concept type>")


def _rank_main(
    args: argparse.Namespace,
    out: Path,
    state: RunState | None,
    solo_threads: int | None = None,
    dataset: Any = None,
) -> None:
    """This process's part of the run (all of it when alone); rank 0 writes the outputs.
    ``dataset``: the dataset ``_claim`` read in this process, if it did; ``--quiet``
    also silences transformers' loading bar."""
    with quiet_loading(args.quiet):
        _rank_body(args, out, state, solo_threads, dataset)


def _rank_body(
    args: argparse.Namespace,
    out: Path,
    state: RunState | None,
    solo_threads: int | None,
    dataset: Any,
) -> None:
    import torch.distributed as dist

    from superact_lens.pipeline import run_rank
    from superact_lens.runstate import RunState, World

    config = _config(args)
    world = World.from_env(config.device, solo_threads)
    if state is None:  # under torchrun: rank 0 checks --out, the others wait for it
        if world.rank == 0:
            state, dataset = _claim(out, config, args.overwrite)
        world.barrier()
        state = RunState(out / ".superact")
    if world.size > 1 and config.device == "cuda":  # one GPU per rank (NCCL)
        import torch

        local = int(os.environ.get("LOCAL_RANK", world.rank))
        torch.cuda.set_device(local)
        config = replace(config, device=f"cuda:{local}")
    try:
        exp = run_rank(config, state, world, dataset)
        if exp is not None:
            _write_outputs(exp, out, args)
            state.finish()
    finally:
        if world.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _spawned(
    rank: int, args: argparse.Namespace, nproc: int, port: int, out: Path, threads: int
) -> None:
    """Entry point of a process started by ``--nproc`` (torchrun's environment).

    Each rank streams with its share of the cores; rank 0 fits and calibrates with
    ``threads``, the count of a 1-process run (same floating-point reductions)."""
    import torch

    from superact_lens.runstate import RunState

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(nproc),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    _log_warnings()
    _rank_main(args, out, RunState(out / ".superact"), solo_threads=threads)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: argparse.Namespace) -> int:
    _log_warnings()
    config = _config(args)
    if args.nproc < 1:
        raise InputError(f"--nproc must be a positive integer, got {args.nproc}")
    under_torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if under_torchrun and args.nproc > 1:
        raise InputError("--nproc: already started by torchrun (WORLD_SIZE is set); drop --nproc")
    with command_out_folder(args.out) as out:
        if under_torchrun:
            _rank_main(args, out, None)
            return 0
        state, dataset = _claim(out, config, args.overwrite)
        if args.nproc == 1:
            _rank_main(args, out, state, dataset=dataset)
        else:
            import torch
            import torch.multiprocessing as mp

            del dataset  # each rank reads its own
            spawn_args = (args, args.nproc, _free_port(), out, torch.get_num_threads())
            mp.spawn(_spawned, args=spawn_args, nprocs=args.nproc)
    return 0
