"""Apply a :class:`~superact_lens.detection.artefact.ConceptDetector` to images.

The record is the text record of :mod:`superact_lens.detection.apply` with
patches in place of tokens::

    {"index": 0, "image": "scenes/3.png", "grid": [14, 14],
     "patches": [[0, 0], [0, 1], ...],          # (row, col) of each content patch
     "present": ["red"],
     "concepts": {"red": {"present": true, "score": 1.23, "threshold": 0.98,
                          "layer": 4, "sparsity": 5.0,
                          "superactivators": [{"position": 17, "patch": [1, 3],
                                               "score": 1.23}],
                          "patch_scores": [...]}}}   # only with patch_scores=True

``score`` is the max over content patches at the concept's layer and the
concept is present iff ``score > threshold``, as the detector's ``predict``.
Images are streamed in chunks (bounded memory). The detector remembers whether
its run letterboxed the images (``provenance["letterbox"]``); the lens here must
see them the same way.

:func:`write_image_page` writes a self-contained HTML page: per image, one
inline PNG patch overlay per concept (base64 ``data:`` URLs, no script, no
network), so it opens anywhere; the token page's JavaScript viewer is built for
text runs and is not reused.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superact_lens.detection.apply import select_concepts
from superact_lens.detection.segments import segment_max
from superact_lens.errors import InputError, InputTypeError
from superact_lens.sinks.base import Sink
from superact_lens.sinks.projection import ProjectionSink
from superact_lens.vision.inputs import check_images

if TYPE_CHECKING:
    from superact_lens.detection.artefact import ConceptDetector
    from superact_lens.lens import ConceptLens

__all__ = ["detect_images", "iter_detect_images", "processor_hash", "write_image_page"]


def processor_hash(lens: ConceptLens) -> str:
    """What identifies an image model's input side (the counterpart of a vocabulary
    hash): sha256 of the image processor's settings, input size and patch size."""
    enc = lens.image_encoder
    if enc is None:
        raise InputTypeError("lens: a text model has no image processor")
    to_dict = getattr(enc.processor, "to_dict", None)
    settings = to_dict() if callable(to_dict) else {}
    settings = {k: v for k, v in settings.items() if not k.startswith("_")}
    doc = {"processor": settings, "image_size": enc.image_size, "patch_size": enc.patch_size}
    text = json.dumps(doc, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class _PatchSink(Sink):
    """Keeps each image's content patches ``(row, col)`` (no layer needed)."""

    def __init__(self, on_batch: Callable[[int], None] | None = None) -> None:
        self.layers = []
        self.on_batch = on_batch

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        super().begin(n_samples, layers, d_model)
        self.patches_: list[list[list[int]]] = [[] for _ in range(n_samples)]
        self.grid_: tuple[int, int] = (0, 0)

    def begin_batch(self, batch: Any) -> None:  # an ImageBatch
        self.grid_ = batch.grid
        for sample, rc in zip(batch.sample_ids.tolist(), batch.content_patches(), strict=True):
            self.patches_[sample] = rc.tolist()

    def end_batch(self, batch: Any) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch.sample_ids))


def _number(x: float) -> float | None:
    return None if not math.isfinite(x) else x


def _records(
    detector: ConceptDetector,
    lens: ConceptLens,
    images: list[Any],
    start: int,
    chosen: list[int],
    top_k: int,
    patch_scores: bool,
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    layers = sorted({detector.layer_of(c) for c in chosen})
    sink = ProjectionSink(detector.bank, detector.normalizer, layers=layers)
    patches = _PatchSink(on_batch)
    lens.stream(images, [sink, patches], layers=layers, batch_size=batch_size, progress=False)
    scores = sink.result()
    rows = torch.tensor([scores.layers.index(detector.layer_of(c)) for c in chosen])
    cols = torch.tensor([detector.column_of(c) for c in chosen])
    values = scores.tokens[rows, :, cols]  # [C_chosen, patches of the chunk]
    best = segment_max(values, scores.offsets, dim=1)  # [C_chosen, n]
    thresholds = detector.detector.threshold_[chosen].to(best)
    fires = (best > thresholds.unsqueeze(1)).tolist()
    best_l, values_l, thr_l = best.tolist(), values.tolist(), thresholds.tolist()
    offsets = scores.offsets.tolist()
    names = [detector.concepts[c] for c in chosen]
    out = []
    for i, item in enumerate(images):
        lo, hi = offsets[i], offsets[i + 1]
        rc = patches.patches_[i]
        concepts: dict[str, dict[str, Any]] = {}
        for k, (name, c) in enumerate(zip(names, chosen, strict=True)):
            row = values_l[k][lo:hi]
            hits = sorted((p for p, v in enumerate(row) if v > thr_l[k]), key=lambda p: -row[p])
            entry: dict[str, Any] = {
                "present": fires[k][i],
                "score": best_l[k][i] if hi > lo else None,
                "threshold": _number(detector.threshold_of(c)),
                "layer": detector.layer_of(c),
                "sparsity": _number(float(detector.detector.n_[c])),
                "superactivators": [
                    {"position": p, "patch": rc[p], "score": row[p]} for p in hits[:top_k]
                ],
            }
            if patch_scores:
                entry["patch_scores"] = row
            concepts[name] = entry
        out.append(
            {
                "index": start + i,
                "image": str(item) if isinstance(item, (str, Path)) else f"<image {start + i}>",
                "grid": list(patches.grid_),
                "patches": rc,
                "present": [n for k, n in enumerate(names) if fires[k][i]],
                "concepts": concepts,
            }
        )
    return out


def iter_detect_images(
    detector: ConceptDetector,
    lens: ConceptLens,
    images: Iterable[Any],
    *,
    concepts: Sequence[str] | None = None,
    top_k: int = 5,
    patch_scores: bool = False,
    batch_size: int = 32,
    chunk_size: int = 256,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of ``images`` (paths, PIL images, arrays) in input order, a chunk at a time.

    A path that is missing or not an image is an error naming it and its position.
    """
    if not lens.is_vision:
        raise InputTypeError("lens: the detector's model takes text; use detection.apply.detect")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise InputError(f"top_k: expected an integer >= 0, got {top_k!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if isinstance(images, (str, Path)):
        raise InputTypeError("images: expected a list of images, got one (wrap it in a list)")
    chosen = select_concepts(detector, concepts)
    stream = iter(images)
    start = 0
    while chunk := list(islice(stream, chunk_size)):
        try:
            check_images(chunk)
        except InputError as err:  # name the position in the whole input, not the chunk
            msg = str(err)
            if msg.startswith("images["):
                k = int(msg[7 : msg.index("]")])
                msg = f"images[{start + k}]" + msg[msg.index("]") + 1 :]
            raise type(err)(msg) from None
        yield from _records(
            detector, lens, chunk, start, chosen, top_k, patch_scores, batch_size, on_batch
        )
        start += len(chunk)


def detect_images(
    detector: ConceptDetector, lens: ConceptLens, images: Iterable[Any], **kwargs: Any
) -> list[dict[str, Any]]:
    """All records of ``images`` (keyword arguments of :func:`iter_detect_images`)."""
    return list(iter_detect_images(detector, lens, images, **kwargs))


def _overlay_uri(record: dict[str, Any], name: str, lens: ConceptLens) -> str:
    from superact_lens.data.patches import fit_image
    from superact_lens.plots.patches import patch_overlay_png_bytes, score_grid
    from superact_lens.vision.inputs import load_image

    enc = lens.image_encoder
    if enc is None:
        raise InputTypeError("lens: a text model has no image page")
    entry = record["concepts"][name]
    grid = score_grid(entry["patch_scores"], record["patches"], tuple(record["grid"]))
    image = load_image(record["image"], where=f"images[{record['index']}]")
    view, _ = fit_image(image, enc.image_size, enc.fit, fill=enc.fill)
    data = patch_overlay_png_bytes(view, grid, entry["threshold"])
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def write_image_page(
    records: list[dict[str, Any]], lens: ConceptLens, path: str | Path, title: str = ""
) -> Path:
    """A self-contained HTML page: per image, the patch overlay of every concept in
    its records (each record needs ``patch_scores``), concepts that fire marked."""
    if lens.image_encoder is None:
        raise InputTypeError("lens: a text model has no image page (use plots.token_page)")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Patch scores at each concept's calibrated layer: red above the threshold, "
        "blue below; SuperActivator patches outlined in green.</p>",
    ]
    for rec in records:
        present = ", ".join(rec["present"]) or "none"
        parts.append(
            f"<section><h2>[{rec['index']}] {html.escape(rec['image'])}</h2>"
            f"<p>present: <b>{html.escape(present)}</b></p><div class='row'>"
        )
        for name, entry in rec["concepts"].items():
            if "patch_scores" not in entry:
                raise InputError(f"records[{rec['index']}]: concept {name!r} has no patch_scores")
            score = "n/a" if entry["score"] is None else f"{entry['score']:.3g}"
            thr = "n/a" if entry["threshold"] is None else f"{entry['threshold']:.3g}"
            cls = "fig fires" if entry["present"] else "fig"
            parts.append(
                f"<figure class='{cls}'><img src='{_overlay_uri(rec, name, lens)}' "
                f"alt='{html.escape(name)}'><figcaption>{html.escape(name)}: {score} "
                f"{'&gt;' if entry['present'] else '&le;'} {thr} (layer {entry['layer']})"
                "</figcaption></figure>"
            )
        parts.append("</div></section>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path


_CSS = (
    "body{font-family:sans-serif;margin:1em;}h2{font-size:1em;margin:.6em 0 .2em}"
    ".row{display:flex;flex-wrap:wrap;gap:6px}.fig{margin:0;padding:3px;border:2px solid #ddd}"
    ".fires{border-color:#1a9850}figcaption{font-size:.75em;max-width:200px}"
    "img{width:192px;height:auto}"
)
