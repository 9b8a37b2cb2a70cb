"""Accumulator state on disk: tensors in safetensors, everything else in JSON.

Every accumulator of :mod:`superact_lens.stats` (and the mergeable sinks) has
``state_dict() -> dict[str, Any]``: a flat map whose values are tensors or
JSON values (ints, floats, strings, lists, dicts). :func:`save_state` writes
several named states into one pair of files, ``PATH.safetensors`` and
``PATH.json``, each replaced atomically (write to a temporary name, fsync,
``os.replace``), JSON last, so a reader that finds the JSON finds the matching
tensors; :func:`load_state` reads them back bit for bit. This is the unit a
resumable run commits per shard.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from superact_lens.errors import InputError, InputFileNotFoundError

__all__ = ["FORMAT_VERSION", "check_same", "load_state", "save_state"]

FORMAT_VERSION = 1
_SEP = "/"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_state(path: str | Path, states: dict[str, dict[str, Any]]) -> Path:
    """Write ``{name: state_dict}`` to ``path.safetensors`` + ``path.json``.

    Tensor entries go to safetensors under ``"name/key"`` (made contiguous, on
    CPU); the rest must be JSON-serialisable. Returns ``path.json``.
    """
    base = Path(path)
    tensors: dict[str, Tensor] = {}
    meta: dict[str, dict[str, Any]] = {}
    for name, state in states.items():
        if _SEP in name:
            raise InputError(f"states: name {name!r} must not contain {_SEP!r}")
        meta[name] = {}
        for key, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"{name}{_SEP}{key}"] = value.detach().cpu().contiguous()
            else:
                meta[name][key] = value
    doc = {"format": "superact_lens.stats", "version": FORMAT_VERSION, "states": meta}
    text = json.dumps(doc)  # fails here, before any file is touched, on a bad value
    st_path = base.with_name(base.name + ".safetensors")
    js_path = base.with_name(base.name + ".json")
    _atomic_write(st_path, lambda p: save_file(tensors, str(p)))
    _atomic_write(js_path, lambda p: p.write_text(text))
    return js_path


def load_state(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read what :func:`save_state` wrote at ``path`` (without the suffixes)."""
    base = Path(path)
    js_path = base.with_name(base.name + ".json")
    st_path = base.with_name(base.name + ".safetensors")
    for p in (js_path, st_path):
        if not p.is_file():
            raise InputFileNotFoundError(f"path: {str(p)!r} does not exist")
    try:
        doc = json.loads(js_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"path: {str(js_path)!r} is not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != "superact_lens.stats":
        raise InputError(f"path: {str(js_path)!r} was not written by save_state")
    if doc.get("version") != FORMAT_VERSION:
        raise InputError(
            f"path: {str(js_path)!r} has state version {doc.get('version')!r}, "
            f"this code reads {FORMAT_VERSION}"
        )
    try:
        tensors = load_file(str(st_path))
    except Exception as err:  # noqa: BLE001 -- safetensors raises several types
        raise InputError(
            f"path: {str(st_path)!r} is not a readable safetensors file ({err})"
        ) from None
    states: dict[str, dict[str, Any]] = {name: dict(m) for name, m in doc["states"].items()}
    for key, value in tensors.items():
        name, _, sub = key.partition(_SEP)
        if name not in states:
            raise InputError(f"path: {str(st_path)!r} holds tensors of unknown state {name!r}")
        states[name][sub] = value
    return states


def check_same(name: str, mine: Any, theirs: Any) -> None:
    """Raise if two accumulators about to be merged were configured differently."""
    if isinstance(mine, Tensor) and isinstance(theirs, Tensor):
        same = mine.shape == theirs.shape and mine.dtype == theirs.dtype
        if same and mine.is_floating_point():  # NaN (no threshold) equals NaN here
            same = bool(((mine == theirs) | (mine.isnan() & theirs.isnan())).all())
        elif same:
            same = torch.equal(mine, theirs)
    else:
        same = mine == theirs
    if not same:
        raise InputError(f"other: {name} differs ({theirs!r} vs {mine!r}); cannot merge")
