"""``superact detect`` on images: the image half of :mod:`superact_lens.cli.detect`.

Images come from ``--image PATH ...`` or ``--file`` (one image path per line,
relative paths taken from the current folder, blank lines skipped). Output as
for text: a plain-text block per image, or with ``--json`` one record per image
(:mod:`superact_lens.vision.detect`: patches ``(row, col)`` in place of tokens);
``--html`` writes a page with one patch overlay per concept and image.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from superact_lens.errors import InputError, InputFileNotFoundError

__all__ = ["format_image_record", "run_images"]

_CHUNK = 256


def _paths(stream: TextIO) -> Iterator[str]:
    for line in stream:
        line = line.strip()
        if line:
            yield line


def _open_images(args: argparse.Namespace, stack: ExitStack) -> tuple[Any, int | None]:
    """The image paths as an iterable (lazy for files and stdin) and their number if known."""
    if args.image is not None:
        return list(args.image), len(args.image)
    if args.file is None or args.file == "-":
        return _paths(sys.stdin), None
    path = Path(args.file)
    if not path.is_file():
        raise InputFileNotFoundError(f"--file {path}: no such file")
    try:
        handle = stack.enter_context(path.open(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"--file {path}: cannot read it ({err.strerror or err})") from None
    return _paths(handle), None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def format_image_record(record: dict[str, Any], show_all: bool = False) -> str:
    """The plain-text block of one image record: the path, the concepts that fire (every
    selected one with ``show_all``) with their SuperActivator patches ``row,col``."""
    lines = [f"[{record['index']}] {record['image']}"]
    lines.append("  present: " + (", ".join(record["present"]) or "none"))
    for name, c in record["concepts"].items():
        if not (c["present"] or show_all):
            continue
        relation = ">" if c["present"] else "<="
        line = (
            f"  {name}: score {_fmt(c['score'])} {relation} threshold {_fmt(c['threshold'])}"
            f" (layer {c['layer']})"
        )
        if c["superactivators"]:
            line += "  patches " + ", ".join(
                f"({t['patch'][0]},{t['patch'][1]}) {_fmt(t['score'])}"
                for t in c["superactivators"]
            )
        lines.append(line)
    return "\n".join(lines)


def run_images(
    args: argparse.Namespace, detector: Any, lens: Any, concepts: list[str] | None
) -> int:
    """Detect on the images of ``--image`` / ``--file`` / stdin and print the records."""
    from tqdm import tqdm

    from superact_lens.vision.detect import iter_detect_images, write_image_page

    if args.text is not None:
        raise InputError(
            f"--text: the detector's model {detector.model.name!r} takes images; give "
            "--image PATH ... or --file with one image path per line"
        )
    html_records: list[dict[str, Any]] = []
    n_seen = 0
    with ExitStack() as stack:
        images, total = _open_images(args, stack)
        bar = stack.enter_context(
            tqdm(total=total, disable=args.quiet, file=sys.stderr, unit="image", leave=False)
        )
        records = iter_detect_images(
            detector,
            lens,
            images,
            concepts=concepts,
            top_k=args.top,
            patch_scores=args.token_scores or args.html is not None,
            batch_size=args.batch_size,
            chunk_size=_CHUNK,
            on_batch=bar.update,
        )
        for record in records:
            n_seen += 1
            if args.html is not None and len(html_records) < args.html_max:
                html_records.append(record)
            if not args.token_scores and args.html is not None:
                record = _without_patch_scores(record)
            if args.json:
                sys.stdout.write(json.dumps(record) + "\n")
            else:
                sys.stdout.write(format_image_record(record, show_all=concepts is not None))
                sys.stdout.write("\n\n")
        sys.stdout.flush()
    if args.html is not None:
        if n_seen > len(html_records):
            print(
                f"superact: --html page shows the first {len(html_records)} of {n_seen} "
                "images (--html-max)",
                file=sys.stderr,
            )
        title = f"superact detect: {detector.concept_type} concepts on {detector.model.name}"
        write_image_page(html_records, lens, Path(args.html), title=title)
        print(f"superact: wrote {args.html}", file=sys.stderr)
    return 0


def _without_patch_scores(record: dict[str, Any]) -> dict[str, Any]:
    concepts = {
        name: {k: v for k, v in entry.items() if k != "patch_scores"}
        for name, entry in record["concepts"].items()
    }
    return {**record, "concepts": concepts}
