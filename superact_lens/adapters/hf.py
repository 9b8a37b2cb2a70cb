"""Hugging Face ``PreTrainedModel`` and plain ``nn.Module`` (given its blocks).

Residuals are read with torch forward hooks on the block modules: a pre-hook
on block 0 gives layer 0 (the embeddings entering the first block), a forward
hook on block ``i - 1`` gives layer ``i``. The hook after the last requested
layer stops the forward pass, so task heads (e.g. an MLM head) never run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from superact_lens.adapters.base import (
    CONTEXT_KEYS,
    D_MODEL_KEYS,
    EmitFn,
    OwnedHooks,
    ResidualAdapter,
    StopForward,
    accepted_kwargs,
    config_value,
    find_blocks,
    first_tensor,
    takes_mask_positions,
)
from superact_lens.adapters.vision import is_vision_model, load_image_processor
from superact_lens.errors import InputError, InputTypeError

__all__ = ["HFAdapter", "hook_blocks", "load_tokenizer_for"]

_INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids", "pixel_values"]


def hook_blocks(
    hooks: OwnedHooks,
    blocks: Sequence[nn.Module],
    layers: list[int],
    emit: EmitFn,
    active: Callable[[], bool],
) -> None:
    """Register (into ``hooks``) the hooks that emit ``layers`` from ``blocks``.

    The hooks do nothing while ``active()`` is False (a nested run is going on).
    """
    wanted, last = set(layers), layers[-1]

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not active():
            return
        if args and isinstance(args[0], Tensor):
            hidden = args[0]
        elif isinstance(kwargs.get("hidden_states"), Tensor):
            hidden = kwargs["hidden_states"]
        else:
            hidden = next(v for v in kwargs.values() if isinstance(v, Tensor))
        emit(0, hidden)
        if last == 0:
            raise StopForward

    def make_post_hook(layer: int):
        def post_hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not active():
                return
            emit(layer, first_tensor(output))
            if layer == last:
                raise StopForward

        return post_hook

    if 0 in wanted:
        hooks.add(blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
    for i in range(last):
        if i + 1 in wanted:
            hooks.add(blocks[i].register_forward_hook(make_post_hook(i + 1)))


def load_tokenizer_for(model: nn.Module) -> Any:
    """The tokenizer saved with a Hugging Face model (from its ``name_or_path``).

    For an image model, its image processor (it takes the tokenizer's place).
    """
    if is_vision_model(model):
        return load_image_processor(model)
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or getattr(
        model, "name_or_path", None
    )
    if not name:
        raise InputTypeError(
            f"tokenizer: a {type(model).__name__} has no tokenizer of its own; pass tokenizer="
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise InputError(
            f"tokenizer: could not load the tokenizer of {name!r} ({type(err).__name__}); "
            "pass tokenizer="
        ) from None


class HFAdapter(ResidualAdapter):
    """A Hugging Face model, or any ``nn.Module`` with a list of block modules.

    Args:
        model: the module to run; called as ``model(input_ids=..., attention_mask=...)``
            with whichever of these its ``forward`` accepts, plus ``position_ids``
            counted over attended tokens where it names them (``takes_mask_positions``).
        tokenizer: a Hugging Face tokenizer; loaded from ``model.config`` if None.
        blocks: the block modules in order; found automatically if None.
    """

    name = "hf"

    def __init__(
        self, model: nn.Module, tokenizer: Any = None, blocks: Sequence[nn.Module] | None = None
    ) -> None:
        self.model = model
        self.blocks = list(blocks) if blocks is not None else list(find_blocks(model))
        if not self.blocks or not all(isinstance(b, nn.Module) for b in self.blocks):
            raise InputTypeError("blocks: expected a non-empty list of nn.Module blocks")
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer_for(model)
        self.n_blocks = len(self.blocks)
        config = getattr(model, "config", None)
        self.max_positions = config_value(config, CONTEXT_KEYS)
        self._accepted = accepted_kwargs(model.forward, _INPUT_NAMES)
        if takes_mask_positions(model):  # left padding must not shift absolute positions
            self._accepted.add("position_ids")
        d_model = config_value(config, D_MODEL_KEYS)
        self.d_model = d_model if d_model is not None else self._probe_d_model()

    def _probe_d_model(self) -> int:
        widths: list[int] = []
        enc = self.tokenizer(["hello"], return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in enc.items() if k in _INPUT_NAMES}
        self.forward_layers(inputs, [0], lambda layer, x: widths.append(x.shape[-1]))
        return widths[0]

    def _forward_layers(
        self,
        inputs: dict[str, Tensor],
        layers: list[int],
        emit: EmitFn,
        active: Callable[[], bool],
    ) -> None:
        kwargs = {k: v for k, v in inputs.items() if k in self._accepted}
        with OwnedHooks() as hooks:
            hook_blocks(hooks, self.blocks, layers, emit, active)
            if "input_ids" in kwargs or "pixel_values" in kwargs:
                self.model(**kwargs)
            else:  # a plain module whose forward takes the ids positionally
                self.model(inputs["input_ids"], **kwargs)
