"""TransformerLens: ``TransformerBridge`` (TL 4.x) and any ``HookedRootModule``.

Two paths:

* **Hook points** (any HookedRootModule, and bridges whenever the fast path
  does not apply): torch forward hooks on the residual hook points,
  ``blocks.0.hook_resid_pre`` / ``blocks.{i}.hook_resid_post`` (legacy
  HookedTransformer naming) or ``blocks.0.hook_in`` / ``blocks.{i}.hook_out``
  (TransformerBridge naming). Hooks already on the model (yours) run first, so
  residuals reflect any edit they make.
* **Bridge fast path**: a bridge wraps the Hugging Face modules of
  ``bridge.original_model`` in bridge components that fire hook points around
  every sub-module; this costs about 2x a bare forward. When no hook other than
  the bridge's own internal wiring is attached to any hook point or bridge
  component, and the bridge is not in compatibility mode (no processed
  weights), we run a *shadow* of the original model instead: the same module
  tree with every bridge component replaced by the Hugging Face module it
  wraps, sharing parameters (no copy of the weights) and keeping hooks users
  put on Hugging Face modules. Its residuals equal the bridge's
  ``blocks.{i}.hook_out`` exactly (tests/adapters/test_transformer_lens.py).
  ``fast_path=False`` forces the hook-point path; ``adapter.path`` says which
  path the last forward used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from superact_lens.adapters.base import (
    EmitFn,
    OwnedHooks,
    ResidualAdapter,
    StopForward,
    accepted_kwargs,
    takes_mask_positions,
)
from superact_lens.adapters.hf import hook_blocks
from superact_lens.adapters.vision import is_vision_model, load_image_processor
from superact_lens.errors import InputTypeError

__all__ = ["BridgeAdapter", "HookPointAdapter", "is_bridge", "is_hooked_root"]

_LAYER0_NAMES = ("blocks.0.hook_resid_pre", "blocks.0.hook_in")
_BLOCK_OUT_NAMES = ("blocks.{i}.hook_resid_post", "blocks.{i}.hook_out")
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def is_hooked_root(model: Any) -> bool:
    return isinstance(model, nn.Module) and isinstance(getattr(model, "hook_dict", None), dict)


def is_bridge(model: Any) -> bool:
    return is_hooked_root(model) and any(
        c.__name__ == "TransformerBridge" for c in type(model).__mro__
    )


def _cfg_int(model: Any, name: str) -> int | None:
    value = getattr(getattr(model, "cfg", None), name, None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HookPointAdapter(ResidualAdapter):
    """Any HookedRootModule whose blocks expose residual hook points."""

    name = "transformer_lens"

    def __init__(self, model: nn.Module, tokenizer: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if self.tokenizer is None and is_vision_model(model):
            self.tokenizer = load_image_processor(model)  # a bridge on a ViT has no tokenizer
        if self.tokenizer is None:
            raise InputTypeError(
                f"tokenizer: the {type(model).__name__} has no tokenizer; pass tokenizer="
            )
        hook_dict: dict[str, Any] = model.hook_dict  # type: ignore[assignment]
        self.layer0_name = next((n for n in _LAYER0_NAMES if n in hook_dict), None)
        n_blocks = 0
        self.out_names: list[str] = []
        while True:
            name = next(
                (
                    p.format(i=n_blocks)
                    for p in _BLOCK_OUT_NAMES
                    if p.format(i=n_blocks) in hook_dict
                ),
                None,
            )
            if name is None:
                break
            self.out_names.append(name)
            n_blocks += 1
        if self.layer0_name is None or n_blocks == 0:
            raise InputTypeError(
                f"model: the {type(model).__name__} has no residual hook points "
                f"({_LAYER0_NAMES[0]!r}/{_BLOCK_OUT_NAMES[0]!r} or "
                f"{_LAYER0_NAMES[1]!r}/{_BLOCK_OUT_NAMES[1]!r})"
            )
        self.n_blocks = n_blocks
        d_model = _cfg_int(model, "d_model")
        if d_model is None:
            raise InputTypeError("model: cannot read d_model from model.cfg")
        self.d_model = d_model
        self.max_positions = _cfg_int(model, "n_ctx")
        self._accepted = accepted_kwargs(model.forward, ["attention_mask", "return_type"])
        # A legacy HookedTransformer takes no position_ids: its PosEmbed (and rotary
        # attention) count positions from the attention_mask it is given.
        self._takes_positions = takes_mask_positions(model)
        self._path = "hook_points"

    @property
    def path(self) -> str:
        return self._path

    def _hook_points_forward(
        self,
        inputs: dict[str, Tensor],
        layers: list[int],
        emit: EmitFn,
        active: Callable[[], bool],
    ) -> None:
        hook_dict: dict[str, Any] = self.model.hook_dict  # type: ignore[assignment]
        last = layers[-1]

        def make_hook(layer: int):
            def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
                if not active():
                    return
                emit(layer, output)
                if layer == last:
                    raise StopForward

            return hook

        kwargs: dict[str, Any] = {}
        if "attention_mask" in self._accepted and "attention_mask" in inputs:
            kwargs["attention_mask"] = inputs["attention_mask"]
        if "return_type" in self._accepted:
            kwargs["return_type"] = None
        kwargs.update(self._position_kwargs(inputs))
        with OwnedHooks() as hooks:
            for layer in layers:
                name = self.out_names[layer - 1] if layer else str(self.layer0_name)
                hooks.add(hook_dict[name].register_forward_hook(make_hook(layer)))
            self._path = "hook_points"
            if "pixel_values" in inputs:  # a vision bridge reads its positional input as pixels
                self.model(inputs["pixel_values"], **kwargs)
            else:
                self.model(inputs["input_ids"], **kwargs)

    def _position_kwargs(self, inputs: dict[str, Tensor]) -> dict[str, Any]:
        """``position_ids`` for the model's forward, if it names them (see takes_mask_positions)."""
        if self._takes_positions and "position_ids" in inputs:
            return {"position_ids": inputs["position_ids"]}
        return {}

    def _forward_layers(
        self,
        inputs: dict[str, Tensor],
        layers: list[int],
        emit: EmitFn,
        active: Callable[[], bool],
    ) -> None:
        self._hook_points_forward(inputs, layers, emit, active)


def _is_internal(handle: Any) -> bool:
    """A hook the bridge itself installs (mirrors of symbolic hook points)."""
    fn = getattr(handle, "user_hook", None)
    return bool(getattr(handle, "is_permanent", False)) and "_wire_symbolic_hooks" in getattr(
        fn, "__qualname__", ""
    )


def _from_transformer_lens(fn: Any) -> bool:
    fn = getattr(fn, "func", fn)  # functools.partial
    return str(getattr(fn, "__module__", "")).startswith("transformer_lens")


def _watched_modules(bridge: nn.Module) -> list[tuple[str, nn.Module]]:
    """The bridge's hook points and bridge components (where foreign hooks would sit)."""
    from transformer_lens.hook_points import HookPoint
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    return [
        (name or "<bridge>", module)
        for name, module in bridge.named_modules()
        if isinstance(module, (HookPoint, GeneralizedComponent)) or module is bridge
    ]


def _foreign_hooks(watched: list[tuple[str, nn.Module]]) -> list[str]:
    """Names of watched modules carrying hooks that are not the bridge's own.

    The bridge wires some hooks of its own (symbolic hook-point mirrors, lazy
    capture hooks); those are recognised by their origin. Any other hook means
    the user is looking at or editing the bridge's activations.
    """
    found = []
    for name, module in watched:
        if not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks):
            continue
        torch_hooks = [
            fn
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
            for fn in getattr(module, attr).values()
        ]
        foreign = any(not _from_transformer_lens(fn) for fn in torch_hooks)
        handles = list(getattr(module, "fwd_hooks", [])) + list(getattr(module, "bwd_hooks", []))
        if foreign or any(not _is_internal(h) for h in handles):
            found.append(name)
    return found


def _shadow(module: nn.Module, memo: dict[int, nn.Module]) -> nn.Module:
    """``module`` with every bridge component replaced by the module it wraps.

    Shallow copies: parameters and buffers are shared (no copy of the weights); the
    hooks of Hugging Face modules are kept, except those TransformerLens installed.
    """
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    key = id(module)
    if key in memo:
        return memo[key]
    if isinstance(module, GeneralizedComponent) and module.original_component is not None:
        memo[key] = _shadow(module.original_component, memo)
        return memo[key]
    copy = object.__new__(type(module))
    copy.__dict__ = dict(module.__dict__)
    memo[key] = copy
    copy._parameters = dict(module._parameters)
    copy._buffers = dict(module._buffers)
    for attr in _HOOK_DICTS:
        if attr in module.__dict__:
            # Hooks TransformerLens put on Hugging Face modules feed the bridge's hook
            # points (absent from the shadow, and hook-free when the fast path runs):
            # drop them. Everyone else's hooks are kept and run.
            copy.__dict__[attr] = OrderedDict(
                (k, fn)
                for k, fn in module.__dict__[attr].items()
                if not (callable(fn) and _from_transformer_lens(fn))
            )
    copy._modules = {
        name: None if child is None else _shadow(child, memo)
        for name, child in module._modules.items()
    }
    return copy


class BridgeAdapter(HookPointAdapter):
    """A TransformerBridge: hook-point path, plus the fast path described above."""

    name = "transformer_bridge"

    def __init__(self, model: nn.Module, tokenizer: Any = None, fast_path: bool = True) -> None:
        super().__init__(model, tokenizer)
        self.fast_path = fast_path
        self._watched = _watched_modules(model)
        self._positions_gate: dict[str, bool] = {}

    def fast_path_blocker(self) -> str | None:
        """Why the fast path cannot run now (None when it can)."""
        if not self.fast_path:
            return "fast_path=False"
        if not isinstance(getattr(self.model, "original_model", None), nn.Module):
            return "the bridge wraps no Hugging Face model"
        if getattr(self.model, "compatibility_mode", False):
            return "the bridge is in compatibility mode (processed weights)"
        blocks = getattr(self.model, "blocks", None)
        if blocks is None or len(blocks) != self.n_blocks:
            return "the bridge has no blocks list"
        foreign = _foreign_hooks(self._watched)
        if foreign:
            return f"hooks are attached to {foreign[:3]}"
        return None

    def _position_kwargs(self, inputs: dict[str, Tensor]) -> dict[str, Any]:
        """``position_ids`` for the wrapped model where ``takes_mask_positions`` says so.

        The bridge's forward hands ``**kwargs`` to the wrapped model. Given an attention
        mask and no ``position_ids``, TL 4.3 derives the same ids under a similar gate
        (``accepts_mask_derived_position_ids``); passing ours keeps the hook-point path
        on the rule of the fast path and the other adapters, whatever TL version runs.
        """
        original = getattr(self.model, "original_model", None)
        if not isinstance(original, nn.Module) or "position_ids" not in inputs:
            return {}
        if "hooks" not in self._positions_gate:  # judged once, on the plain HF modules
            self._positions_gate["hooks"] = takes_mask_positions(_shadow(original, {}))
        return {"position_ids": inputs["position_ids"]} if self._positions_gate["hooks"] else {}

    def _forward_layers(
        self,
        inputs: dict[str, Tensor],
        layers: list[int],
        emit: EmitFn,
        active: Callable[[], bool],
    ) -> None:
        if self.fast_path_blocker() is not None:
            self._hook_points_forward(inputs, layers, emit, active)
            return
        memo: dict[int, nn.Module] = {}
        original: nn.Module = self.model.original_model  # type: ignore[assignment]
        runner = _shadow(original, memo)
        blocks = [memo[id(b)] for b in self.model.blocks]  # type: ignore[union-attr]
        base = getattr(runner, "base_model", None)
        if isinstance(base, nn.Module) and base is not runner:
            inside = {id(m) for m in base.modules()}
            if all(id(b) in inside for b in blocks):
                runner = base  # the encoder alone: same call path as a bare HF forward
        names = [
            "input_ids",
            "pixel_values",
            "attention_mask",
            "token_type_ids",
            "output_attentions",
        ]
        accepted = accepted_kwargs(runner.forward, names)
        if "fast" not in self._positions_gate:
            self._positions_gate["fast"] = takes_mask_positions(runner)
        if self._positions_gate["fast"]:  # left padding must not shift absolute positions
            accepted.add("position_ids")
        kwargs: dict[str, Any] = {k: v for k, v in inputs.items() if k in accepted}
        if "output_attentions" in accepted:
            # The bridge turns output_attentions on in the shared config (for its attention
            # hooks); nobody reads them here, and keeping them would double peak memory.
            kwargs["output_attentions"] = False
        with OwnedHooks() as hooks:
            hook_blocks(hooks, blocks, layers, emit, active)
            self._path = "fast"
            runner(**kwargs)
