"""Generative models for the prompting baseline: load a causal LM, check its head, find Yes/No.

A model name resolves as in :func:`superact_lens.adapters.load_model` (packaged
name, local folder, Hugging Face id), but the checkpoint is loaded with its
language-model head (``AutoModelForCausalLM``); an encoder is refused from its
config alone, before any weight is read.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from superact_lens.adapters.loading import load_model, model_source, resolve_hub_id
from superact_lens.errors import InputError, InputTypeError

__all__ = ["answer_token_ids", "check_causal_lm", "load_generative"]

_GENERATIVE_HEADS = ("ForCausalLM", "LMHeadModel")


def load_generative(
    name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[nn.Module, Any]:
    """``(causal LM, tokenizer)`` for a packaged model name, a local folder or a Hub id.

    The checkpoint must name a language-model head (``...ForCausalLM`` /
    ``...LMHeadModel`` in ``config.architectures``); an encoder such as MiniLM is an
    InputError before any weight is read. Then loaded by :func:`load_model` with
    ``causal_lm=True`` (eager attention, like the lens).
    """
    from transformers import AutoConfig

    source = model_source(name)
    hub = {} if Path(source).is_dir() else resolve_hub_id(source)
    try:
        config = AutoConfig.from_pretrained(source, **hub)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"model: could not load {name!r} as a causal LM: {first}") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith(_GENERATIVE_HEADS) for a in architectures):
        raise InputError(
            f"{name} is not a generative model (its checkpoint is "
            f"{', '.join(architectures) or 'a model without a named head'}; the prompting "
            "baseline needs a language-model head, e.g. ...ForCausalLM)"
        )
    return load_model(name, device=device, dtype=dtype, causal_lm=True)


def answer_token_ids(tokenizer: Any, answers: Sequence[str]) -> list[int]:
    """Ids of the single tokens that spell one of ``answers`` (first token of each
    encoding, kept only if it decodes to the whole answer)."""
    ids: list[int] = []
    for answer in answers:
        encoded = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if not encoded:
            continue
        first = int(encoded[0])
        if tokenizer.decode([first]).strip().lower() == answer.strip().lower():
            if first not in ids:
                ids.append(first)
    return ids


def check_causal_lm(model: Any) -> None:
    """TypeError unless ``model`` is an ``nn.Module`` with a language-model head."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(
            f"model: expected a causal language model or a model name, got {type(model).__name__}"
        )
    head = getattr(model, "get_output_embeddings", None)
    if not callable(head) or head() is None:
        raise InputTypeError(
            f"model: a {type(model).__name__} has no language-model head; the prompting "
            "baseline needs a generative model (e.g. AutoModelForCausalLM)"
        )
    if "input_ids" not in inspect.signature(model.forward).parameters:
        raise InputTypeError(f"model: {type(model).__name__}.forward takes no input_ids")
