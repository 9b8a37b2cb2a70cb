"""Image datasets in the folder format (INTERFACES.md section 1), masks loaded lazily.

::

    DATASET/
      metadata.csv                  image_path, split, one 0/1 column per concept
      images/...                    any format Pillow reads
      masks/<image stem>/<concept>.png   white = concept, same size as the image

A positive image without a mask is "present, location unknown" (like a
positive text without a span); a negative image has an empty mask. Concept
folder names match columns ignoring case, space, ``_`` and ``-``.

:func:`read_image_folder` checks everything up front (each image's header and
checksums, each mask fully) and raises one :class:`DatasetError` listing every
problem with its row and file; the pixels are read again only when asked for.
Pixel -> patch masks: see :mod:`superact_lens.data.patches`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from jaxtyping import Bool
from PIL import Image, UnidentifiedImageError

from superact_lens.data.dataset import _Samples
from superact_lens.data.folder import (
    _concept_lookup,
    _finish_splits,
    _read_metadata,
    _row_labels,
)
from superact_lens.data.patches import content_pixels, fit_mask, patch_masks
from superact_lens.data.source import open_source
from superact_lens.data.tags import normalize_name
from superact_lens.errors import InputError

__all__ = ["ImageDataset", "read_image_folder"]

_IMAGE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)


@dataclass
class ImageDataset(_Samples):
    """Images with sample-level concept labels and per-concept pixel masks on disk.

    Attributes:
        name: dataset name or folder it came from.
        concepts: concept names, one per label column.
        paths: ``image_path`` of each image, relative to the folder.
        labels: ``bool [n, C]``, concept present in the image.
        splits: ``str [n]`` in ``{"train", "cal", "test"}``.
        sizes: ``(width, height)`` of each image.
        mask_paths: per image, ``{concept index: mask path}`` for the masks it has.
        meta: free-form extras (``split_source``, ``ignored_columns``).
    """

    name: str
    concepts: list[str]
    paths: list[str]
    labels: np.ndarray
    splits: np.ndarray
    sizes: list[tuple[int, int]]
    mask_paths: list[dict[int, str]]
    meta: dict = field(default_factory=dict)
    read_bytes: Callable[[str], bytes] | None = field(default=None, repr=False)

    _PER_SAMPLE = ("paths", "sizes", "mask_paths")

    def __post_init__(self) -> None:
        self._check_samples()

    def _open(self, rel: str) -> Image.Image:
        if self.read_bytes is None:
            raise InputError(f"{self.name}: no file reader; the dataset was built without one")
        return Image.open(io.BytesIO(self.read_bytes(rel)))

    def image(self, i: int) -> Image.Image:
        """Image ``i`` as RGB (read from disk now)."""
        return self._open(self.paths[i]).convert("RGB")

    def has_mask(self, i: int, concept: int | str) -> bool:
        """Whether image ``i`` locates ``concept`` (a positive without a mask does not)."""
        return self._index(concept) in self.mask_paths[i]

    def _index(self, concept: int | str) -> int:
        if isinstance(concept, str):
            if concept not in self.concepts:
                raise InputError(f"concept: expected one of {self.concepts}, got {concept!r}")
            return self.concepts.index(concept)
        return int(concept)

    def concept_mask(self, i: int, concept: int | str) -> Bool[np.ndarray, "H W"]:
        """``bool [H, W]`` pixels of ``concept`` in image ``i`` (all False without a mask)."""
        c = self._index(concept)
        width, height = self.sizes[i]
        rel = self.mask_paths[i].get(c)
        if rel is None:
            return np.zeros((height, width), dtype=bool)
        return np.asarray(self._open(rel).convert("L")) > 127

    def masks(self, i: int) -> Bool[np.ndarray, "C H W"]:
        """``bool [C, H, W]``: every concept's pixel mask of image ``i``."""
        return np.stack([self.concept_mask(i, c) for c in range(self.n_concepts)])

    def patch_masks(
        self, i: int, target: int, patch_size: int, fit: str = "letterbox"
    ) -> tuple[Bool[np.ndarray, "C h w"], Bool[np.ndarray, "h w"]]:
        """Concept and content patch masks of image ``i`` as a ``target``-px model sees it.

        Returns ``(in_concept bool [C, T/p, T/p], content bool [T/p, T/p])``; ``fit``
        is how the image reaches ``target x target`` (see :mod:`~superact_lens.data.patches`).
        """
        width, height = self.sizes[i]
        pixels = content_pixels(width, height, target, fit)
        fitted = np.stack([fit_mask(m, target, fit) for m in self.masks(i)])
        return patch_masks(fitted, patch_size, content=pixels), patch_masks(pixels, patch_size)


def _check_image(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an image; raises if Pillow cannot read or verify it."""
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
        img.verify()  # checksums and structure, without decoding every pixel
    return size


def read_image_folder(
    folder: str | Path,
    seed: int = 0,
    concepts: Sequence[str] | None = None,
    name: str | None = None,
) -> ImageDataset:
    """Load an image dataset folder (or archive); raise :class:`DatasetError` listing all problems.

    Refused, naming the file: a missing or duplicate ``image_path``, an image or
    mask Pillow cannot read, a mask whose size differs from its image's, a mask
    folder for an unknown image or concept, a white mask for a concept labelled 0,
    and everything the text reader refuses in ``metadata.csv``.
    """
    src, src_name = open_source(folder, name)
    header, rows = _read_metadata(src, src_name)
    problems: list[str] = []
    if "image_path" not in header:
        problems.append("metadata.csv: missing column 'image_path'")
    cols, lookup = _concept_lookup(header, rows, concepts, problems, src_name)

    has_split = "split" in header
    labels = np.zeros((len(rows), len(cols)), dtype=bool)
    paths, splits, sizes = [], [], []
    row_of_path: dict[str, int] = {}
    row_of_stem: dict[str, int] = {}
    for r, row in enumerate(rows, start=1):
        rel = str(PurePosixPath((row.get("image_path") or "").strip().replace("\\", "/")))
        where = f"metadata.csv row {r} (file {rel if rel != '.' else '?'})"
        split, label_problems = _row_labels(row, cols, has_split, labels[r - 1])
        problems += [f"{where}: {p}" for p in label_problems]
        size = (0, 0)
        stem = PurePosixPath(rel).stem
        if rel == ".":
            problems.append(f"{where}: missing image_path")
        elif rel in row_of_path:
            problems.append(f"{where}: duplicate image_path (also row {row_of_path[rel]})")
        elif stem in row_of_stem:
            problems.append(
                f"{where}: image stem '{stem}' also used by row {row_of_stem[stem]}, "
                f"so masks/{stem}/ would be shared"
            )
        else:
            try:
                size = _check_image(src.read_bytes(rel))
            except FileNotFoundError:
                problems.append(f"{where}: image file not found")
            except _IMAGE_ERRORS as err:
                problems.append(f"{where}: unreadable image ({type(err).__name__}: {err})")
        row_of_path.setdefault(rel, r)
        row_of_stem.setdefault(stem, r)
        paths.append(rel)
        splits.append(split)
        sizes.append(size)

    mask_paths: list[dict[int, str]] = [{} for _ in rows]
    for rel in src.names("masks"):
        parts = PurePosixPath(rel).parts
        if len(parts) != 3 or PurePosixPath(rel).suffix.lower() != ".png":
            problems.append(f"{rel}: expected masks/<image stem>/<concept>.png")
            continue
        stem, concept = parts[1], PurePosixPath(rel).stem
        found = row_of_stem.get(stem)
        c = lookup.get(normalize_name(concept))
        if found is None:
            problems.append(f"{rel}: mask folder for an unknown image (no image named {stem}.*)")
            continue
        if c is None:
            problems.append(f"{rel}: mask for an unknown concept {concept!r} (columns: {cols})")
            continue
        r = found
        where = f"metadata.csv row {r} (file {rel})"
        try:
            with Image.open(io.BytesIO(src.read_bytes(rel))) as img:
                if sizes[r - 1] != (0, 0) and img.size != sizes[r - 1]:
                    w, h = sizes[r - 1]
                    problems.append(f"{where}: mask is {img.width}x{img.height}, image is {w}x{h}")
                    continue
                white = bool((np.asarray(img.convert("L")) > 127).any())
        except _IMAGE_ERRORS as err:
            problems.append(f"{where}: unreadable mask ({type(err).__name__}: {err})")
            continue
        if white and not labels[r - 1, c]:
            problems.append(f"{where}: mask has white pixels but column '{cols[c]}' is 0")
        mask_paths[r - 1][c] = rel

    split_arr, meta = _finish_splits(
        header, cols, labels, splits, has_split, seed, problems, src_name
    )
    return ImageDataset(
        src_name, cols, paths, labels, split_arr, sizes, mask_paths, meta, src.read_bytes
    )
