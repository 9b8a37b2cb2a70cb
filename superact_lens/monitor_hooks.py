"""Where :class:`~superact_lens.monitor.ConceptMonitor` hooks a model, and what it reads there.

The residual stream is read at the places the adapters read it
(:mod:`superact_lens.adapters`): layer 0 = the input of the first block, layer
``i`` = the output of block ``i`` (Hugging Face and nnsight models), or the
TransformerLens hook points ``blocks.0.hook_in`` / ``blocks.{i}.hook_out`` (and
the legacy ``hook_resid_*`` names). The forward pass's token ids, attention mask
and KV cache are read by a pre-hook on the model the generate loop calls.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from superact_lens.adapters import HFAdapter, HookPointAdapter, NNsightAdapter
from superact_lens.adapters.nnsight import is_nnsight
from superact_lens.errors import InputTypeError
from superact_lens.lens import ConceptLens

__all__ = ["CACHE_KWARGS", "block_input", "cache_length", "residual_sites", "unwrap_envoy"]

# Where a forward pass receives its KV cache: Hugging Face (``past_key_values``,
# ``cache`` from transformers 5.x), TransformerLens's HookedTransformer.
CACHE_KWARGS = ("past_key_values", "cache", "past_kv_cache")


def block_input(args: tuple, kwargs: dict) -> Tensor:
    """The hidden state a block is called with (positional, or ``hidden_states=``)."""
    if args and isinstance(args[0], Tensor):
        return args[0]
    hidden = kwargs.get("hidden_states")
    if isinstance(hidden, Tensor):
        return hidden
    return next(v for v in kwargs.values() if isinstance(v, Tensor))


def unwrap_envoy(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """nnsight 0.8's ``LanguageModel`` / ``TransformersModel`` are Envoys but not ``NNsight``
    objects, which the lens does not take: watch the Hugging Face model they drive
    (the same modules, so the same hooks fire), with their tokenizer."""
    try:
        from nnsight.intervention.envoy import Envoy
    except ImportError:  # pragma: no cover - nnsight is optional
        return model, tokenizer
    if not isinstance(model, Envoy) or is_nnsight(model):
        return model, tokenizer
    if tokenizer is None:
        tokenizer = getattr(model, "tokenizer", None)
    return model._module, tokenizer


def cache_length(kwargs: dict) -> int:
    """Tokens already in the KV cache a forward pass was given (0 without one)."""
    for name in CACHE_KWARGS:
        cache = kwargs.get(name)
        length = getattr(cache, "get_seq_length", None)
        if callable(length):
            return int(length())
    return 0


def residual_sites(
    lens: ConceptLens, layers: list[int]
) -> tuple[nn.Module, dict[int, tuple[nn.Module, bool]]]:
    """The model the generate loop calls, and per layer ``(module, reads_its_input)``.

    The places the adapters read: layer 0 = input of the first block, layer ``i`` =
    output of block ``i`` (or the matching TransformerLens hook points).
    """
    adapter = lens.adapter
    if isinstance(adapter, HookPointAdapter):
        hook_dict: dict[str, nn.Module] = adapter.model.hook_dict  # type: ignore[assignment]
        names = {0: str(adapter.layer0_name)}
        names.update({i + 1: name for i, name in enumerate(adapter.out_names)})
        return adapter.model, {layer: (hook_dict[names[layer]], False) for layer in layers}
    if isinstance(adapter, NNsightAdapter):
        modules = dict(adapter.model.named_modules())
        blocks = [modules[path] for path in adapter._block_paths]
    elif isinstance(adapter, HFAdapter):
        blocks = adapter.blocks
    else:
        raise InputTypeError(
            f"model: the monitor cannot hook a model read by {type(adapter).__name__}"
        )
    sites = {
        layer: (blocks[0], True) if layer == 0 else (blocks[layer - 1], False) for layer in layers
    }
    return adapter.model, sites
