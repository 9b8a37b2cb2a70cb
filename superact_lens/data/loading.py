"""Load a dataset by folder, archive, or the name of a dataset the package ships.

Shipped datasets live in ``superact_lens/data/shipped/<name>/``: either the
folder format itself or one ``<name>.tar.gz`` archive of it, read straight
into memory (nothing is extracted to disk).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from superact_lens.data.dataset import TextDataset
from superact_lens.data.folder import read_dataset_folder
from superact_lens.data.synthetic import make_synthetic_dataset
from superact_lens.errors import InputError

__all__ = ["SHIPPED_DIR", "available_datasets", "load_dataset", "shipped_dataset_path"]

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` besides folders (shipped + ``synthetic``)."""
    shipped = (
        sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()) if SHIPPED_DIR.is_dir() else []
    )
    return [*shipped, "synthetic"]


def shipped_dataset_path(name: str) -> Path:
    """Folder or archive of a shipped dataset; ``ValueError`` if there is none by that name."""
    folder = SHIPPED_DIR / name
    if folder.is_dir():
        if (folder / "metadata.csv").is_file():
            return folder
        for ext in (".tar.gz", ".tgz", ".zip"):
            if (folder / f"{name}{ext}").is_file():
                return folder / f"{name}{ext}"
    raise InputError(
        f"dataset: {name!r} is neither a folder nor a shipped dataset "
        f"(shipped: {', '.join(available_datasets())})"
    )


def load_dataset(
    name_or_folder: str | Path,
    seed: int = 0,
    concepts: Sequence[str] | None = None,
    texts_on_disk: bool = False,
) -> TextDataset:
    """Load a dataset folder, a .tar.gz/.zip of one, or a shipped dataset by name.

    Args:
        name_or_folder: a path, ``"wordnet-supersenses"`` (shipped) or
            ``"synthetic"`` (the tiny planted set of :func:`make_synthetic_dataset`).
        seed: seed of the stratified split when the folder has no ``split``
            column (and of the synthetic set).
        concepts: the concept columns, when the 0/1-column rule would pick
            the wrong ones (e.g. a 0/1 column that is not a concept).
        texts_on_disk: leave a folder's texts in its files, read back when asked
            (:mod:`superact_lens.data.on_disk`; what ``superact run`` does).

    Raises:
        DatasetError: the folder is malformed; lists every problem with its row and file.
        ValueError: no such folder or shipped dataset.
    """
    path = Path(name_or_folder)
    if path.exists():
        return read_dataset_folder(path, seed=seed, concepts=concepts, texts_on_disk=texts_on_disk)
    name = str(name_or_folder)
    if name == "synthetic":
        return make_synthetic_dataset(seed=seed)
    return read_dataset_folder(
        shipped_dataset_path(name),
        seed=seed,
        concepts=concepts,
        name=name,
        texts_on_disk=texts_on_disk,
    )
