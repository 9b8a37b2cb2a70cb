"""Adapters: reach a model's residual stream, whatever it was loaded with.

:func:`make_adapter` picks the adapter for a model object:

* ``TransformerBridge`` -> :class:`BridgeAdapter` (fast path when no hooks are attached)
* any other TransformerLens ``HookedRootModule`` -> :class:`HookPointAdapter`
* ``NNsight`` / ``LanguageModel`` -> :class:`NNsightAdapter`
* Hugging Face ``PreTrainedModel``, or any ``nn.Module`` with ``blocks=`` -> :class:`HFAdapter`
* a string -> loaded by :func:`load_model` ('minilm', a folder, a Hugging Face id)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from superact_lens.adapters.base import OwnedHooks, ResidualAdapter, find_blocks
from superact_lens.adapters.hf import HFAdapter
from superact_lens.adapters.loading import load_model, minilm_folder
from superact_lens.adapters.nnsight import NNsightAdapter, is_nnsight
from superact_lens.adapters.transformer_lens import (
    BridgeAdapter,
    HookPointAdapter,
    is_bridge,
    is_hooked_root,
)
from superact_lens.adapters.vision import load_image_processor, vision_tower
from superact_lens.errors import InputTypeError

__all__ = [
    "BridgeAdapter",
    "HFAdapter",
    "HookPointAdapter",
    "NNsightAdapter",
    "OwnedHooks",
    "ResidualAdapter",
    "find_blocks",
    "load_model",
    "make_adapter",
    "minilm_folder",
]


def make_adapter(
    model: Any,
    tokenizer: Any = None,
    blocks: Sequence[nn.Module] | None = None,
    fast_path: bool = True,
) -> ResidualAdapter:
    """The adapter for ``model`` (see the module docstring); TypeError if none fits."""
    if isinstance(model, ResidualAdapter):
        return model
    if isinstance(model, str):
        model, loaded_tokenizer = load_model(model)
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    if is_nnsight(model):
        return NNsightAdapter(model, tokenizer, blocks=list(blocks) if blocks else None)
    if is_bridge(model):
        return BridgeAdapter(model, tokenizer, fast_path=fast_path)
    if is_hooked_root(model):
        return HookPointAdapter(model, tokenizer)
    if isinstance(model, nn.Module):
        tower = vision_tower(model)  # a CLIPModel runs on images through its vision tower
        if tower is not model:
            tokenizer = tokenizer if tokenizer is not None else load_image_processor(model)
            model = tower
        is_pretrained = any(c.__name__ == "PreTrainedModel" for c in type(model).__mro__)
        if not is_pretrained and blocks is None:
            try:
                blocks = list(find_blocks(model))
            except TypeError:
                raise InputTypeError(
                    f"model: no adapter understands a {type(model).__name__} without blocks=; "
                    "pass blocks=<list of block modules>"
                ) from None
        return HFAdapter(model, tokenizer, blocks=blocks)
    raise InputTypeError(
        "model: expected a TransformerBridge, HookedRootModule, NNsight, PreTrainedModel, "
        f"nn.Module (with blocks=) or a model name, got {type(model).__name__}"
    )
