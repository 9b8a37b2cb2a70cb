"""Image datasets for ``superact run``: what the pipeline streams and the per-patch masks.

The pipeline reads a dataset through a few attributes (``concepts``, ``labels``,
``splits``, ``split_indices``, ``texts``: what the lens streams). :class:`ImageRunData`
gives an :class:`~superact_lens.data.images.ImageDataset` those attributes, with
``texts`` the absolute image paths, so the same two streaming passes, chunk plan
and resumable state serve images and texts alike.

Token masks become patch masks: for image ``i`` a ``bool [n_content, C]`` tensor,
one row per content patch in the order the lens scores them (row-major over the
patch grid, letterbox padding excluded), a patch in-concept when at least half
of its pixels are (:mod:`superact_lens.data.patches`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from jaxtyping import Bool, Int
from PIL import Image
from torch import Tensor

from superact_lens.data.images import ImageDataset, read_image_folder
from superact_lens.errors import InputError

if TYPE_CHECKING:
    from superact_lens.lens import ConceptLens
    from superact_lens.vision.inputs import ImageEncoder

__all__ = [
    "ImageRunData",
    "content_grid_positions",
    "is_image_folder",
    "load_image_run_data",
    "load_run_dataset",
    "open_image_lens",
    "patch_grid_masks",
    "patch_token_masks",
    "prepare_images",
]


def is_image_folder(name: str | Path) -> bool:
    """Whether ``name`` is a dataset folder whose ``metadata.csv`` has an ``image_path`` column."""
    meta = Path(name).expanduser() / "metadata.csv"
    if not meta.is_file():
        return False
    try:
        with meta.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(io.StringIO(fh.readline())), [])
    except (OSError, UnicodeDecodeError):
        return False  # the text reader reports it, naming the file
    return "image_path" in [h.strip() for h in header]


@dataclass
class ImageRunData:
    """An image dataset folder as the pipeline reads a :class:`TextDataset`.

    Attributes:
        images: the checked dataset (labels, splits, masks on disk).
        root: its folder; ``texts[i]`` is ``root / images.paths[i]``.
    """

    images: ImageDataset
    root: Path

    is_image = True

    @property
    def name(self) -> str:
        return self.images.name

    @property
    def concepts(self) -> list[str]:
        return self.images.concepts

    @property
    def labels(self) -> np.ndarray:
        return self.images.labels

    @property
    def splits(self) -> np.ndarray:
        return self.images.splits

    @property
    def texts(self) -> list[str]:
        """What the lens streams: each image's absolute path (row order)."""
        return [str(self.root / rel) for rel in self.images.paths]

    @property
    def spans(self) -> list[list[tuple[int, int, int]]]:
        """No character spans (images are located by masks); kept for the run fingerprint."""
        return [[] for _ in self.images.paths]

    @property
    def paths(self) -> list[str]:
        return self.images.paths

    def __len__(self) -> int:
        return len(self.images)

    def split_indices(self, split: str) -> np.ndarray:
        return self.images.split_indices(split)

    def image(self, i: int) -> Image.Image:
        """Image ``i`` as RGB."""
        return self.images.image(i)


def load_image_run_data(folder: str | Path, seed: int = 0) -> ImageRunData:
    """Read an image dataset folder (every problem named, see ``read_image_folder``).

    Archives are refused: the lens streams images from their files.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputError(
            f"--dataset {folder}: an image dataset must be a folder (extract the archive)"
        )
    return ImageRunData(read_image_folder(root, seed=seed), root.resolve())


def patch_grid_masks(
    ds: ImageRunData | ImageDataset, i: int, encoder: ImageEncoder
) -> tuple[Bool[np.ndarray, "C h w"], Bool[np.ndarray, "h w"]]:
    """In-concept and content patch grids of image ``i`` as ``encoder``'s model sees it."""
    images = ds.images if isinstance(ds, ImageRunData) else ds
    return images.patch_masks(i, encoder.image_size, encoder.patch_size, fit=encoder.fit)


def patch_token_masks(
    ds: ImageRunData | ImageDataset, encoder: ImageEncoder
) -> list[Bool[Tensor, "n_content C"]]:
    """Per image, ``bool [n_content, C]``: in-concept flags of its content patches in
    TokenScores order (row-major, padding patches left out).

    The content grid comes from the same geometry as the encoder's letterbox
    (``data.patches``; tests/vision prove both agree patch for patch), so no image
    is decoded here, only masks.
    """
    n = len(ds.images if isinstance(ds, ImageRunData) else ds)
    out = []
    for i in range(n):
        in_concept, content = patch_grid_masks(ds, i, encoder)
        out.append(torch.from_numpy(np.ascontiguousarray(in_concept[:, content].T)))
    return out


def content_grid_positions(content: Bool[np.ndarray, "h w"]) -> Int[Tensor, "n_content 2"]:
    """``(row, col)`` of the content patches, row-major (the stream's order)."""
    return torch.from_numpy(np.argwhere(content)).long()


def open_image_lens(config: Any, ds: ImageRunData) -> ConceptLens:
    """The lens of an image run: letterboxed inputs (padding patches excluded).

    Refuses, with the argument named, what does not apply to images: the
    prompting baseline (it asks a language model about a text), ``--max-length``,
    and a model that takes text.
    """
    from superact_lens.lens import ConceptLens

    if "prompt" in config.methods:
        raise InputError(
            f"--prompt: the prompting baseline asks a generative language model about a "
            f"text; it does not apply to the image dataset {config.dataset!r} "
            "(drop --prompt / 'prompt' from --methods)"
        )
    if config.max_length is not None:
        raise InputError("--max-length: images are not truncated; drop it for an image dataset")
    lens = ConceptLens(config.model, device=config.device, letterbox=True)
    if not lens.is_vision:
        raise InputError(
            f"--model {config.model!r} takes text, but --dataset {config.dataset!r} holds "
            "images (image_path column); use a vision transformer (ViT, CLIP)"
        )
    return lens


def load_run_dataset(name: str | Path, seed: int = 0) -> Any:
    """What ``superact run`` reads from ``--dataset``: an :class:`ImageRunData` for an image
    folder (``image_path`` column), else the :class:`TextDataset` of ``load_dataset``
    with the texts left in the folder (``texts_on_disk``)."""
    if is_image_folder(name):
        return load_image_run_data(name, seed=seed)
    from superact_lens.data import load_dataset

    return load_dataset(name, seed=seed, texts_on_disk=True)


def prepare_images(config: Any, ds: ImageRunData | None = None):
    """``run_prepare.prepare`` for an image dataset: lens, dataset, layers, patch masks
    ``[n_content, C]`` per image, and no prompting baseline."""
    ds = ds if ds is not None else load_image_run_data(config.dataset, seed=config.seed)
    lens = open_image_lens(config, ds)
    layers = lens.resolve_layers(config.layers)
    encoder = lens.image_encoder
    if encoder is None:  # pragma: no cover -- open_image_lens checked it
        raise InputError(f"--model {config.model!r} takes text")
    return lens, ds, layers, patch_token_masks(ds, encoder), None
