"""nnsight: ``NNsight`` / ``LanguageModel`` objects.

The residuals are read the nnsight way, inside ``model.trace(...)``: the
trace body visits ``blocks[0].input`` and then ``blocks[i].output`` in
forward order and hands each value to the sinks while the model runs;
``tracer.stop()`` ends the pass after the last requested layer. Nothing is
``.save()``-d, so nothing outlives the callback. nnsight installs and removes
its own hooks; ours are none, and hooks users put on the wrapped module stay.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from superact_lens.adapters.base import (
    CONTEXT_KEYS,
    D_MODEL_KEYS,
    EmitFn,
    ResidualAdapter,
    config_value,
    find_blocks,
    first_tensor,
    takes_mask_positions,
)
from superact_lens.adapters.hf import load_tokenizer_for
from superact_lens.adapters.vision import vision_tower
from superact_lens.errors import InputTypeError

__all__ = ["NNsightAdapter", "is_nnsight"]

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")


def is_nnsight(model: Any) -> bool:
    try:
        from nnsight import NNsight
    except ImportError:  # pragma: no cover - nnsight is optional
        return False
    return isinstance(model, NNsight)


def _envoy_at(root: Any, path: str) -> Any:
    """The envoy of the sub-module at dotted ``path`` (``output`` children live at ``E_output``)."""
    from nnsight.intervention.envoy import Envoy

    envoy = root
    for part in path.split("."):
        if part.isdigit():
            envoy = envoy[int(part)]
            continue
        if inspect.isdatadescriptor(getattr(Envoy, part, None)):
            part = f"{Envoy.OVERLOAD_PREFIX}{part}"
        envoy = getattr(envoy, part)
    return envoy


class NNsightAdapter(ResidualAdapter):
    """An nnsight-wrapped model.

    Args:
        model: an ``NNsight`` (or ``LanguageModel``) object.
        tokenizer: defaults to ``model.tokenizer`` or the wrapped model's own.
        blocks: block modules of the wrapped model; found automatically if None.
    """

    name = "nnsight"

    def __init__(self, model: Any, tokenizer: Any = None, blocks: list[nn.Module] | None = None):
        self.envoy = model
        self.model = model._module
        if vision_tower(self.model) is not self.model:
            raise InputTypeError(
                f"model: an nnsight-wrapped {type(self.model).__name__} needs text and images; "
                "wrap its vision tower instead: NNsight(model.vision_model)"
            )
        module_blocks = list(blocks) if blocks is not None else list(find_blocks(self.model))
        names = {id(m): n for n, m in self.model.named_modules()}
        missing = [i for i, b in enumerate(module_blocks) if id(b) not in names]
        if missing:
            raise InputTypeError(
                f"blocks: entries {missing} are not sub-modules of the wrapped model"
            )
        self._block_paths = [names[id(b)] for b in module_blocks]
        if tokenizer is None:
            tokenizer = getattr(model, "tokenizer", None) or load_tokenizer_for(self.model)
        self.tokenizer = tokenizer
        self.n_blocks = len(module_blocks)
        config = getattr(self.model, "config", None)
        self.max_positions = config_value(config, CONTEXT_KEYS)
        d_model = config_value(config, D_MODEL_KEYS)
        if d_model is None:
            raise InputTypeError("model: cannot read d_model from the wrapped model's config")
        self.d_model = d_model
        self._input_names = set(_INPUT_NAMES)
        if takes_mask_positions(self.model):  # left padding must not shift absolute positions
            self._input_names.add("position_ids")

    def _forward_layers(
        self,
        inputs: dict[str, Tensor],
        layers: list[int],
        emit: EmitFn,
        active: Callable[[], bool],
    ) -> None:
        kwargs = {k: v for k, v in inputs.items() if k in self._input_names}
        if len(self.__dict__.get("_runs", [])) > 1:
            raise RuntimeError(
                "nnsight traces do not nest: a sink cannot stream through the same "
                "nnsight-wrapped model; give the inner stream ConceptLens(model._module)"
            )
        blocks = [_envoy_at(self.envoy, p) for p in self._block_paths]
        wanted, last = set(layers), layers[-1]
        with self.envoy.trace(**kwargs) as tracer:
            if 0 in wanted:
                emit(0, blocks[0].input)
            for layer in range(1, last + 1):
                if layer in wanted:
                    emit(layer, first_tensor(blocks[layer - 1].output))
            tracer.stop()
