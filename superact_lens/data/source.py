"""Where a dataset's files come from: a folder on disk, or an archive of one read
into memory. Split out of :mod:`superact_lens.data.folder`; the image folder reader
uses it too."""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

from superact_lens.data.dataset import DatasetError
from superact_lens.errors import InputFileNotFoundError

__all__ = ["ARCHIVES", "Source", "open_source", "posix_key"]

ARCHIVES = (".tar.gz", ".tgz", ".zip")


class Source:
    """Files of a dataset, from a directory or an archive (read fully into memory)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: dict[str, bytes] | None = None
        if path.is_dir():
            return
        name = path.name.lower()
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                files = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
        else:
            with tarfile.open(path, "r:*") as tf:
                files = {}
                for m in tf.getmembers():
                    if m.isfile():
                        fh = tf.extractfile(m)
                        if fh is not None:
                            files[m.name] = fh.read()
        files = {posix_key(k): v for k, v in files.items()}
        # an archive may hold the folder itself: strip the folder holding metadata.csv
        roots = [k[: -len("metadata.csv")] for k in files if k.endswith("metadata.csv")]
        if not roots:
            raise DatasetError(["missing metadata.csv in the archive"], str(path))
        root = min(roots, key=len)
        self._files = {k[len(root) :]: v for k, v in files.items() if k.startswith(root)}

    @property
    def is_folder(self) -> bool:
        """Files are read from disk when asked (not an archive read into memory)."""
        return self._files is None

    def names(self, prefix: str) -> list[str]:
        """Relative paths (``/``-separated) of the files under the folder ``prefix``, sorted."""
        if self._files is None:
            base = self.path / prefix
            found = [p for p in base.rglob("*") if p.is_file()] if base.is_dir() else []
            return sorted(p.relative_to(self.path).as_posix() for p in found)
        return sorted(k for k in self._files if k.startswith(prefix.rstrip("/") + "/"))

    def read_bytes(self, rel: str) -> bytes:
        if self._files is None:  # a str join: Path would intern every file name for good
            with open(os.path.join(self.path, rel), "rb") as fh:
                return fh.read()
        key = posix_key(rel)
        if key not in self._files:
            raise InputFileNotFoundError(rel)
        return self._files[key]


def posix_key(rel: str) -> str:
    """``str(PurePosixPath(rel))`` with ``\\`` read as ``/`` (repeated ``/`` and ``.``
    parts dropped), without pathlib: it interns every part it parses, which for
    10^5 file names keeps megabytes alive for the life of the process."""
    rel = rel.replace("\\", "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    lead = ""
    if rel.startswith("/"):  # POSIX keeps exactly two leading slashes, folds three or more
        lead = "//" if rel.startswith("//") and not rel.startswith("///") else "/"
    return lead + "/".join(parts) if parts or lead else "."


def open_source(folder: str | Path, name: str | None) -> tuple[Source, str]:
    """The files of a dataset folder or archive, and the name its errors use."""
    path = Path(folder)
    src_name = name or str(path)
    if not path.exists():
        raise DatasetError([f"no such folder: {path}"], src_name)
    if path.is_file() and not path.name.lower().endswith(ARCHIVES):
        raise DatasetError([f"{path} is a file; expected a folder or .tar.gz/.zip archive"])
    return Source(path), src_name
