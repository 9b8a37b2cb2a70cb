"""``superact detect`` on images: the image half of :mod:`superact_lens.cli.detect`.

Images come from ``--image PATH ...`` or ``--file`` (one image path per line,
relative paths taken from the current folder, blank lines skipped). Output as
for text: a plain-text block per image, or with ``--json`` one record per image
(:mod:`superact_lens.vision.detect`: patches ``(row, col)`` in place of tokens);
``--html`` writes a page with one patch overlay per concept and image.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any, TextIO

from superact_lens.cli.detect import _emit, _fmt, _record_block, _write_page
from superact_lens.errors import InputError

__all__ = ["format_image_record", "run_images"]

_CHUNK = 256


def _paths(stream: TextIO) -> Iterator[str]:
    for line in stream:
        line = line.strip()
        if line:
            yield line


def format_image_record(record: dict[str, Any], show_all: bool = False) -> str:
    """The plain-text block of one image record: the path, the concepts that fire (every
    selected one with ``show_all``) with their SuperActivator patches ``row,col``."""
    return _record_block(
        f"[{record['index']}] {record['image']}",
        record,
        show_all,
        lambda tops: (
            "patches "
            + ", ".join(f"({t['patch'][0]},{t['patch'][1]}) {_fmt(t['score'])}" for t in tops)
        ),
    )


def run_images(
    args: argparse.Namespace, detector: Any, lens: Any, concepts: list[str] | None
) -> int:
    """Detect on the images of ``--image`` / ``--file`` / stdin and print the records."""
    from superact_lens.vision.detect import iter_detect_images, write_image_page

    if args.text is not None:
        raise InputError(
            f"--text: the detector's model {detector.model.name!r} takes images; give "
            "--image PATH ... or --file with one image path per line"
        )
    html_records, n_seen = _emit(
        args,
        detector,
        lens,
        concepts,
        detect=iter_detect_images,
        fmt=format_image_record,
        given=args.image,
        read=_paths,
        count=False,  # blank lines are skipped: the line count is not the image count
        unit="image",
        scores_key="patch_scores",
        chunk=_CHUNK,
    )
    if args.html is not None:

        def write(records: list, path: Any, title: str) -> None:
            write_image_page(records, lens, path, title=title)

        _write_page(args, detector, html_records, n_seen, "images", write)
    return 0
