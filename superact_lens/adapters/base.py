"""What every adapter provides: run a forward pass and hand out residuals.

An adapter wraps one way of loading a model (TransformerLens, nnsight, plain
Hugging Face / ``nn.Module``) behind one method,
:meth:`ResidualAdapter.forward_layers`, which runs the model on a tokenised
batch and calls ``emit(layer, resid)`` with the residual stream
``[batch pos d_model]`` of each requested layer, in increasing layer order,
while the forward pass runs. Nothing is cached: what the callback does not
keep is freed as soon as the next block runs.

Layer convention (docs/ARCHITECTURE.md): layer 0 is the input of the first
block (the embeddings), layer ``i`` the output of block ``i``. No final norm
is applied: for decoder models whose Hugging Face ``hidden_states[-1]`` is
post-``ln_f``, our last layer is the raw residual (TransformerLens's
``hook_resid_post``).

Hook hygiene: every hook an adapter adds is registered through
:class:`OwnedHooks`, which removes exactly those handles in ``finally`` (also
on an exception or ``KeyboardInterrupt`` raised by a hook or a sink). Hooks
someone else attached are never touched.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from superact_lens.adapters.tokenize import position_ids_from_mask
from superact_lens.errors import InputTypeError

__all__ = ["EmitFn", "OwnedHooks", "ResidualAdapter", "StopForward", "find_blocks", "first_tensor"]

EmitFn = Callable[[int, Float[Tensor, "batch pos d_model"]], None]

# Paths (relative to the model or its ``base_model``) where common architectures keep
# their blocks; checked before the generic "largest ModuleList" search.
_BLOCK_PATHS = (
    "encoder.layer",
    "layers",
    "h",
    "blocks",
    "model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "decoder.layers",
    "encoder.layers",
    "vision_model.encoder.layers",
    "language_model.model.layers",
)


class StopForward(BaseException):
    """Raised by our own hook after the last requested layer to skip the rest of the model.

    A ``BaseException`` so that model code catching ``Exception`` cannot swallow it.
    """


class OwnedHooks:
    """Context manager that owns torch hook handles and removes exactly those on exit."""

    def __init__(self) -> None:
        self._handles: list[Any] = []

    def add(self, handle: Any) -> Any:
        self._handles.append(handle)
        return handle

    def remove(self) -> None:
        """Remove every owned handle (idempotent; later handles first)."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self) -> OwnedHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def first_tensor(output: Any) -> Tensor:
    """The hidden state in a block's output (a tensor, or the first item of a tuple)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, Tensor):
        return hidden
    raise InputTypeError(
        f"cannot find the hidden state in a block output of type {type(output).__name__}"
    )


def _get_path(module: nn.Module, path: str) -> Any:
    obj: Any = module
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks of ``model``: a known path, else the largest ``ModuleList``.

    "Largest" is by parameter count among ModuleLists whose entries share a class.
    """
    roots = [model]
    base = getattr(model, "base_model", None)
    if isinstance(base, nn.Module) and base is not model:
        roots.insert(0, base)
    for root in roots:
        for path in _BLOCK_PATHS:
            found = _get_path(root, path)
            if isinstance(found, nn.ModuleList) and len(found) > 0:
                return found
    best: tuple[int, nn.ModuleList] | None = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(m) for m in module}) != 1:
                continue
            size = sum(p.numel() for p in module.parameters())
            if best is None or size > best[0]:
                best = (size, module)
    if best is None:
        raise InputTypeError(
            f"model: cannot find the transformer blocks of a {type(model).__name__}; "
            "pass blocks=<list of block modules> to ConceptLens"
        )
    return best[1]


def accepted_kwargs(fn: Callable, names: list[str]) -> set[str]:
    """Which of ``names`` the callable accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set(names)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return set(names)
    return {n for n in names if n in params}


def takes_mask_positions(model: nn.Module) -> bool:
    """Whether to give ``model`` the position ids of ``position_ids_from_mask``.

    Only if its ``forward`` names ``position_ids``, and not for models that number
    positions themselves, where 0-based ids would break them or buy nothing:

    * fairseq-style embeddings (RoBERTa, XLM-R, CamemBERT, MPNet, ESM, ...) count
      from ``padding_idx + 1`` over ``input_ids != padding_idx``; the lens pads with
      the tokenizer's pad id, so their own count is already right under any padding;
    * positional embeddings that take the attention mask (OPT) count as we would;
    * mRoPE models (``get_rope_index``: Qwen2-VL, GLM-4V) build 3-D positions.

    TransformerLens's bridge gates its own mask-derived ids the same way
    (``accepts_mask_derived_position_ids``); this gate also catches embeddings that
    call a module-level ``create_position_ids_from_input_ids`` (MPNet, ESM, LUKE).
    """
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    if "position_ids" not in params:
        return False
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        for key in ("rope_scaling", "rope_parameters"):
            rope = getattr(cfg, key, None)
            if isinstance(rope, dict) and "mrope_section" in rope:
                return False
    for module in model.modules():
        if hasattr(module, "get_rope_index"):
            return False
        if callable(getattr(module, "create_position_ids_from_input_ids", None)):
            return False
        home = sys.modules.get(type(module).__module__)
        if hasattr(module, "padding_idx") and callable(
            getattr(home, "create_position_ids_from_input_ids", None)
        ):
            return False
        if isinstance(module, nn.Embedding) and type(module).forward is not nn.Embedding.forward:
            if "attention_mask" in inspect.signature(module.forward).parameters:
                return False
    return True


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Switch off training mode (dropout) for the duration, then restore it.

    Flips the flag only on modules in training mode (``model.eval()`` would walk
    every sub-module twice, which is measurable on a TransformerBridge's ~3000).
    """
    modules = dict.fromkeys(model.modules())
    original = model.__dict__.get("original_model")
    if isinstance(original, nn.Module):
        # A TransformerBridge keeps the Hugging Face model it wraps in ``__dict__``,
        # outside its module tree; that model's dropout runs on both bridge paths.
        modules.update(dict.fromkeys(original.modules()))
    training = [m for m in modules if m.training]
    try:
        for m in training:
            m.training = False
        yield
    finally:
        for m in training:
            m.training = True


class ResidualAdapter:
    """Base class: a model whose residual stream can be streamed layer by layer.

    Subclasses set ``model``, ``tokenizer``, ``n_blocks``, ``d_model``,
    ``max_positions`` (context length or None) and implement
    :meth:`_forward_layers`.
    """

    name = "base"
    model: nn.Module
    tokenizer: Any
    n_blocks: int
    d_model: int
    max_positions: int | None = None

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def is_vision(self) -> bool:
        """Whether the model takes images (``pixel_values``) rather than token ids."""
        from superact_lens.adapters.vision import is_vision_model

        return is_vision_model(self.model)

    @property
    def dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    def forward_layers(self, inputs: dict[str, Tensor], layers: list[int], emit: EmitFn) -> None:
        """Run the model on ``inputs`` and call ``emit(layer, resid)`` for each of ``layers``.

        ``layers`` must be sorted, unique, within ``0..n_blocks``. The model runs in
        eval mode and without gradients; the pass stops after the last requested layer.
        Re-entrant: a sink may stream other texts from inside ``emit``; hooks of the
        outer run ignore the inner forward pass (each run's hooks fire only while
        that run is the innermost one).
        ``inputs`` without ``position_ids`` get them from ``attention_mask``
        (``position_ids_from_mask``); each adapter passes them only where
        :func:`takes_mask_positions` says the model wants them.
        """
        if not layers:
            return
        if "position_ids" not in inputs and "attention_mask" in inputs:
            inputs = {**inputs, "position_ids": position_ids_from_mask(inputs["attention_mask"])}
        token = object()
        runs = self.__dict__.setdefault("_runs", [])
        runs.append(token)

        def active() -> bool:
            return runs[-1] is token

        with eval_mode(self.model), torch.no_grad():
            try:
                self._forward_layers(inputs, layers, emit, active)
            except StopForward:
                pass
            finally:
                runs.remove(token)

    def _forward_layers(
        self,
        inputs: dict[str, Tensor],
        layers: list[int],
        emit: EmitFn,
        active: Callable[[], bool],
    ) -> None:
        raise NotImplementedError

    @property
    def path(self) -> str:
        """Which code path the last forward used (adapters with several override it)."""
        return self.name


def config_value(config: Any, names: tuple[str, ...]) -> int | None:
    """First integer attribute of ``config`` among ``names`` (None if none is set)."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


D_MODEL_KEYS = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length")
