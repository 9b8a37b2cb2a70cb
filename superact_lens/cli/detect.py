"""``superact detect``: apply a saved detector to new text (INTERFACES §2).

Texts come from ``--text`` (repeatable), ``--file`` (one text per line) or
``-`` (stdin, one per line); for a detector calibrated on an image model, images
come from ``--image`` or ``--file`` / ``-`` (one path per line), see
:mod:`superact_lens.cli.detect_images`. They are streamed through the model in chunks:
chunk ``k``'s output is printed before chunk ``k + 1`` is read, so any number
of lines runs in bounded memory. Plain text by default; ``--json`` prints one
detection record per text (JSON lines, input order; see
:mod:`superact_lens.detection.apply`); ``--html`` writes a token heat-map page.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from superact_lens.errors import InputError, InputFileNotFoundError

__all__ = ["add_parser", "run", "format_record"]

_CHUNK = 1024


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="apply a saved detector (OUT/detectors/<type>/) to new text",
        description="Which concepts fire on each text, their score against the threshold, "
        "and the SuperActivator tokens. Texts: --text, --file (one per line) or - (stdin).",
    )
    p.add_argument("--detector", required=True, help="a detector folder written by superact run")
    p.add_argument(
        "--model",
        default=None,
        help="the model to run (default: the one the detector was calibrated on)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", nargs="+", action="extend", help="one or more texts")
    source.add_argument(
        "--image",
        nargs="+",
        action="extend",
        help="one or more image files (a detector calibrated on an image model)",
    )
    source.add_argument(
        "--file",
        help="a UTF-8 file with one text per line ('-' for stdin); for an image model, one "
        "image path per line",
    )
    source.add_argument(
        "stdin", nargs="?", choices=["-"], default=None, help="read texts from stdin, one per line"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per text (JSON lines)")
    p.add_argument(
        "--token-scores",
        action="store_true",
        help="with --json: every content token's (image: patch's) score for every concept",
    )
    p.add_argument("--html", default=None, help="write a self-contained token heat-map page")
    p.add_argument(
        "--html-max",
        type=int,
        default=200,
        help="put at most this many texts (the first ones) on the --html page (default 200)",
    )
    p.add_argument("--concepts", default=None, help="only these concepts (comma-separated)")
    p.add_argument("--top", type=int, default=5, help="SuperActivator tokens shown per concept")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps ... (default: cpu)")
    p.add_argument(
        "--max-length", type=int, default=None, help="truncate texts to this many tokens"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        yield line.rstrip("\r\n")


def _open_inputs(
    args: argparse.Namespace,
    stack: ExitStack,
    given: list[str] | None,
    read: Callable[[TextIO], Iterator[str]],
    count: bool,
) -> tuple[Any, int | None]:
    """The inputs as an iterable (lazy for files and stdin) and their number if known.

    ``given`` are the ones on the command line (``--text`` / ``--image``); otherwise
    ``read`` yields them from ``--file`` or stdin, and with ``count`` the file's lines
    are counted first (for the progress bar).
    """
    if given is not None:
        return list(given), len(given)
    if args.file is None or args.file == "-":
        return read(sys.stdin), None
    path = Path(args.file)
    if not path.is_file():
        raise InputFileNotFoundError(f"--file {path}: no such file")
    total = None
    if count:
        with path.open("rb") as fh:
            total = sum(1 for _ in fh)
    try:
        handle = stack.enter_context(path.open(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"--file {path}: cannot read it ({err.strerror or err})") from None
    return read(handle), total


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def format_record(record: dict[str, Any], show_all: bool = False) -> str:
    """The plain-text block of one record: the text, then one line per concept that
    fires (every selected concept with ``show_all``) with its SuperActivator tokens."""
    text = record["text"] if len(record["text"]) <= 100 else record["text"][:97] + "..."
    return _record_block(
        f"[{record['index']}] {text}",
        record,
        show_all,
        lambda tops: ", ".join(
            f"{t['token'].strip() or repr(t['token'])}@{t['position']} {_fmt(t['score'])}"
            for t in tops
        ),
    )


def _record_block(
    head: str,
    record: dict[str, Any],
    show_all: bool,
    tops_text: Callable[[list[dict[str, Any]]], str],
) -> str:
    """``head``, the concepts present, then one line per concept that fires (every
    selected one with ``show_all``): score against threshold, layer, and
    ``tops_text`` of its SuperActivators (tokens or patches)."""
    lines = [head, "  present: " + (", ".join(record["present"]) or "none")]
    for name, c in record["concepts"].items():
        if not (c["present"] or show_all):
            continue
        relation = ">" if c["present"] else "<="
        line = (
            f"  {name}: score {_fmt(c['score'])} {relation} threshold {_fmt(c['threshold'])}"
            f" (layer {c['layer']})"
        )
        if c["superactivators"]:
            line += "  " + tops_text(c["superactivators"])
        lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Quiet means quiet: also no progress bar from transformers while the model loads."""
    from superact_lens.cli.run import quiet_loading

    with quiet_loading(args.quiet):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from superact_lens.detection.apply import iter_detect, select_concepts
    from superact_lens.detection.artefact import ConceptDetector
    from superact_lens.lens import ConceptLens
    from superact_lens.pipeline import _check_device

    if args.top < 0:
        raise InputError(f"--top must be an integer >= 0, got {args.top}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.html_max < 1:
        raise InputError(f"--html-max must be a positive integer, got {args.html_max}")
    if args.device is not None:
        _check_device(args.device)
    if args.html is not None and not Path(args.html).resolve().parent.is_dir():
        raise InputError(f"--html {args.html}: its folder does not exist")
    concepts = None
    if args.concepts is not None:
        concepts = [c.strip() for c in args.concepts.split(",") if c.strip()]
    detector = ConceptDetector.load(args.detector)
    select_concepts(detector, concepts, arg="--concepts")
    model = args.model if args.model is not None else detector.model.name
    letterbox = bool(detector.provenance.get("letterbox", False))  # as the image run saw them
    try:
        lens = ConceptLens(
            model, device=args.device, max_length=args.max_length, letterbox=letterbox
        )
    except InputError as err:
        raise InputError(f"--model: {err}") from None
    detector.check_model(lens)
    if lens.is_vision:
        from superact_lens.cli.detect_images import run_images

        return run_images(args, detector, lens, concepts)
    if args.image is not None:
        raise InputError(
            f"--image: the detector's model {detector.model.name!r} takes text; give --text, "
            "--file or -"
        )

    html_records, n_seen = _emit(
        args,
        detector,
        lens,
        concepts,
        detect=iter_detect,
        fmt=format_record,
        given=args.text,
        read=_lines,
        count=True,
        unit="text",
        scores_key="token_scores",
        chunk=_CHUNK,
    )
    if args.html is not None:
        from superact_lens.plots.token_page import write_detect_page

        _write_page(args, detector, html_records, n_seen, "texts", write_detect_page)
    return 0


def _emit(
    args: argparse.Namespace,
    detector: Any,
    lens: Any,
    concepts: list[str] | None,
    *,
    detect: Callable[..., Iterable[dict[str, Any]]],
    fmt: Callable[..., str],
    given: list[str] | None,
    read: Callable[[TextIO], Iterator[str]],
    count: bool,
    unit: str,
    scores_key: str,
    chunk: int,
) -> tuple[list[dict[str, Any]], int]:
    """Detect on the inputs and print each record as it comes: a JSON line with
    ``--json``, else ``fmt``'s block (every selected concept when ``--concepts``).

    The inputs are ``given`` or read from ``--file`` / stdin (:func:`_open_inputs`);
    ``detect`` (``iter_detect`` or ``iter_detect_images``) yields their records in
    input order, ``chunk`` inputs at a time, and output is flushed every ``chunk``
    records, so a chunk's lines are out before the next chunk is read. The
    per-position scores (``scores_key``, also ``detect``'s keyword) are asked for by
    ``--html`` and printed only with ``--token-scores``. Returns the first
    ``--html-max`` records (with their scores, for the page) and how many there were.
    """
    from tqdm import tqdm

    html_records: list[dict[str, Any]] = []
    n_seen = 0
    with ExitStack() as stack:
        inputs, total = _open_inputs(args, stack, given, read, count)
        bar = stack.enter_context(
            tqdm(total=total, disable=args.quiet, file=sys.stderr, unit=unit, leave=False)
        )
        records = detect(
            detector,
            lens,
            inputs,
            concepts=concepts,
            top_k=args.top,
            batch_size=args.batch_size,
            chunk_size=chunk,
            on_batch=bar.update,
            **{scores_key: args.token_scores or args.html is not None},
        )
        for record in records:
            n_seen += 1
            if args.html is not None and len(html_records) < args.html_max:
                html_records.append(record)
            if not args.token_scores and args.html is not None:
                record = _without(record, scores_key)
            if args.json:
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(fmt(record, show_all=concepts is not None) + "\n\n")
            if n_seen % chunk == 0:
                sys.stdout.flush()
        sys.stdout.flush()
    return html_records, n_seen


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    """``record`` without each concept's ``key`` entry."""
    concepts = {
        name: {k: v for k, v in entry.items() if k != key}
        for name, entry in record["concepts"].items()
    }
    return {**record, "concepts": concepts}


def _write_page(
    args: argparse.Namespace,
    detector: Any,
    records: list[dict[str, Any]],
    n_seen: int,
    unit: str,
    write: Callable[..., Any],
) -> None:
    """Write the ``--html`` page of ``records`` with ``write(records, path, title=...)``,
    saying on stderr when ``--html-max`` left some of the ``n_seen`` inputs off."""
    if n_seen > len(records):
        print(
            f"superact: --html page shows the first {len(records)} of {n_seen} {unit} (--html-max)",
            file=sys.stderr,
        )
    title = f"superact detect: {detector.concept_type} concepts on {detector.model.name}"
    write(records, Path(args.html), title=title)
    print(f"superact: wrote {args.html}", file=sys.stderr)
