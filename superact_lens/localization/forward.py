"""A differentiable forward pass from token embeddings to one residual layer.

Attribution needs what streaming forbids: gradients, and many perturbed copies
of one input. :class:`TruncatedForward` gets both from any model the lens
understands, through one code path:

* it finds the plain torch module that really runs (the Hugging Face model of an
  ``HFAdapter``, the module an nnsight wrapper holds, the shadow of a
  TransformerBridge's wrapped model on its fast path, or the bridge / a legacy
  ``HookedTransformer`` itself on the hook-point path);
* a forward hook on that module's token-embedding layer replaces its output with
  the embeddings we pass (the ``inputs_embeds`` of Hugging Face, done the same
  way for models that take none; positions, token types and any scaling or
  LayerNorm after the lookup still run);
* a hook after the wanted layer keeps the residual and raises
  :class:`~superact_lens.adapters.base.StopForward`, so the blocks above it never run.

Images (a lens on a vision transformer): the attribution unit is a content patch,
and the module replaced is the patch embedding (HF ViT ``embeddings.patch_embeddings``,
CLIP ``embeddings.patch_embedding``; the same module under nnsight and inside a
TransformerBridge). Its output for the image's pixels is what we pass, reshaped back
to the module's own layout; [CLS] and the position embeddings are still added after
it, so a patch keeps its place. ``embed`` returns ``[B, pos, d]`` aligned with the
residual's positions (zeros at the [CLS] prefix, which is never perturbed), so
objectives index patches exactly as they index tokens. A removed patch becomes the
*mean-colour patch*: the patch embedding of pixel values 0 after the processor's
normalisation, i.e. a patch of the processor's mean colour, the colour letterbox
padding is filled with (``token_embedding`` returns it).

Layer convention as in the lens: 0 = input of the first block, ``i`` = output of
block ``i``. Every hook added here is owned and removed in ``finally``. User hooks on
the model's own modules run (on the bridge fast path, on the Hugging Face modules).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from superact_lens.adapters import BridgeAdapter, HFAdapter, HookPointAdapter, NNsightAdapter
from superact_lens.adapters.base import (
    OwnedHooks,
    StopForward,
    accepted_kwargs,
    eval_mode,
    first_tensor,
    takes_mask_positions,
)
from superact_lens.adapters.tokenize import TokenBatch
from superact_lens.adapters.transformer_lens import _shadow
from superact_lens.adapters.vision import vision_config
from superact_lens.errors import InputError, InputTypeError
from superact_lens.vision.inputs import ImageBatch

__all__ = ["TruncatedForward", "unit_labels"]

_EMBED_NAMES = ("embed_tokens", "word_embeddings", "wte", "embed", "tok_embeddings")
_INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids", "position_ids"]
_PATCH_NAMES = ("patch_embeddings", "patch_embedding")


def _token_embedding(model: nn.Module) -> nn.Module:
    """The module mapping token ids to embeddings (its output is what we replace)."""
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        try:
            found = getter()
        except (NotImplementedError, AttributeError):
            found = None
        if isinstance(found, nn.Module):
            return found
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in _EMBED_NAMES and isinstance(module, nn.Module):
            if not list(module.children()) or isinstance(module, nn.Embedding):
                return module
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if len(embeddings) == 1:
        return embeddings[0]
    raise InputTypeError(
        f"model: cannot find the token embedding of a {type(model).__name__} "
        "(no get_input_embeddings() and no single nn.Embedding)"
    )


def _patch_embedding(model: nn.Module) -> nn.Module:
    """The module mapping pixels to patch embeddings (before [CLS] and positions)."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in _PATCH_NAMES:
            return module
    getter = getattr(model, "get_input_embeddings", None)
    found = getter() if callable(getter) else None
    if isinstance(found, nn.Module):
        return found
    raise InputTypeError(
        f"model: cannot find the patch embedding of a {type(model).__name__} "
        f"(no sub-module named {' or '.join(_PATCH_NAMES)})"
    )


def _as_patches(out: Tensor) -> Float[Tensor, "B n_patches d"]:
    """A patch embedding's output as ``[B, n_patches, d]`` (a conv gives ``[B, d, h, w]``)."""
    return out.flatten(2).transpose(1, 2) if out.dim() == 4 else out


class TruncatedForward:
    """Run ``lens``'s model from token embeddings up to residual ``layer``, with gradients.

    Args:
        lens: a :class:`~superact_lens.lens.ConceptLens` (any adapter).
        layer: residual layer index (``0..n_layers-1``).

    ``embed(batch)`` gives the token embeddings of a tokenised batch (patch
    embeddings of an image batch, with zeros at the [CLS] prefix);
    ``__call__(batch, embeds)`` the residual ``[B, pos, d_model]`` for ``embeds``
    ``[B, pos, d]`` (a one-row ``batch`` is broadcast to ``B`` rows).
    """

    def __init__(self, lens: Any, layer: int) -> None:
        if not isinstance(layer, int) or not 0 <= layer < lens.n_layers:
            raise InputError(f"layer: expected an index in 0..{lens.n_layers - 1}, got {layer!r}")
        self.lens = lens
        self.layer = layer
        self.runner, self.points, self.accepted, self.positional = self._route(lens.adapter)
        encoder = getattr(lens, "image_encoder", None)
        self.is_vision = encoder is not None
        self.n_prefix = encoder.n_prefix if encoder is not None else 0
        self.embedding = (_patch_embedding if self.is_vision else _token_embedding)(self.runner)

    # --- which module runs, and where each layer is read ------------------------------
    def _route(self, adapter: Any) -> tuple[nn.Module, list[tuple[nn.Module, str]], set, bool]:
        """(runner, (module, "pre"|"post") per layer, accepted kwargs, ids positional)."""
        if isinstance(adapter, BridgeAdapter) and adapter.fast_path_blocker() is None:
            memo: dict[int, nn.Module] = {}
            runner = _shadow(adapter.model.original_model, memo)  # type: ignore[arg-type]
            blocks = [memo[id(b)] for b in adapter.model.blocks]  # type: ignore[union-attr]
            return runner, _block_points(blocks), self._accepted(runner), False
        if isinstance(adapter, HookPointAdapter):  # bridge hook-point path, HookedTransformer
            hooks: dict[str, nn.Module] = adapter.model.hook_dict  # type: ignore[assignment]
            names = [str(adapter.layer0_name), *adapter.out_names]
            accepted = {k for k in ("attention_mask",) if k in adapter._accepted}
            if "return_type" in adapter._accepted:
                accepted.add("return_type")
            if adapter._position_kwargs({"position_ids": torch.zeros(1)}):
                accepted.add("position_ids")
            return adapter.model, [(hooks[n], "post") for n in names], accepted, True
        if isinstance(adapter, NNsightAdapter):
            runner = adapter.model
            blocks = [runner.get_submodule(p) for p in adapter._block_paths]
            return runner, _block_points(blocks), self._accepted(runner), False
        if isinstance(adapter, HFAdapter):
            runner = adapter.model
            return runner, _block_points(adapter.blocks), set(adapter._accepted), False
        raise InputTypeError(f"lens: no truncated forward for a {type(adapter).__name__}")

    @staticmethod
    def _accepted(runner: nn.Module) -> set[str]:
        accepted = accepted_kwargs(runner.forward, [*_INPUT_NAMES[:3], "pixel_values"])
        if takes_mask_positions(runner):
            accepted.add("position_ids")
        return accepted

    # --- embeddings --------------------------------------------------------------------
    def embed(self, batch: TokenBatch | ImageBatch) -> Float[Tensor, "batch pos d"]:
        """The token-embedding layer's output for ``batch`` (no gradient); for images the
        patch embeddings ``[B, pos, d]`` with zeros at the prefix positions."""
        with torch.no_grad():
            if not self.is_vision:
                return first_tensor(self.embedding(batch.input_ids)).detach()
            pixels = batch.model_inputs()["pixel_values"]
            patches = _as_patches(first_tensor(self.embedding(pixels))).detach()
            prefix = patches.new_zeros(patches.shape[0], self.n_prefix, patches.shape[2])
            return torch.cat([prefix, patches], dim=1)

    def token_embedding(self, token_id: int | None) -> Float[Tensor, " d"]:
        """The embedding of one token id (zeros when ``token_id`` is None).

        Image model: the baseline patch whatever ``token_id`` is, the patch embedding
        of the processor's mean colour (normalised pixel values 0).
        """
        if self.is_vision:
            side = self.lens.image_encoder.image_size
            channels = getattr(vision_config(self.lens.model), "num_channels", 3)
            weight = next(self.embedding.parameters())
            pixels = torch.zeros(1, channels, side, side, device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                return _as_patches(first_tensor(self.embedding(pixels)))[0, 0].detach()
        ids = torch.tensor([[0 if token_id is None else token_id]], device=self.lens.device)
        with torch.no_grad():
            out = first_tensor(self.embedding(ids)).detach()[0, 0]
        return torch.zeros_like(out) if token_id is None else out

    # --- the forward -------------------------------------------------------------------
    def __call__(
        self, batch: TokenBatch | ImageBatch, embeds: Float[Tensor, "B pos d"]
    ) -> Float[Tensor, "B pos d_model"]:
        n_rows = embeds.shape[0]
        inputs = batch.model_inputs()
        main = "pixel_values" if self.is_vision else "input_ids"
        if inputs[main].shape[0] not in (1, n_rows):
            unit = "images" if self.is_vision else "texts"
            raise InputError(f"embeds: {n_rows} rows for a batch of {inputs[main].shape[0]} {unit}")
        if inputs[main].shape[0] != n_rows:
            inputs = {k: v.expand(n_rows, *v.shape[1:]) for k, v in inputs.items()}
        kwargs: dict[str, Any] = {k: v for k, v in inputs.items() if k in self.accepted}
        if "return_type" in self.accepted:
            kwargs["return_type"] = None
        kept: list[Tensor] = []

        def replace(module: nn.Module, args: tuple, output: Any) -> Any:
            out = first_tensor(output)
            if not self.is_vision:
                return embeds.to(out.dtype)
            patches = embeds[:, self.n_prefix :].to(out.dtype)
            if out.dim() == 4:  # a conv patch embedding (CLIP): back to [B, d, h, w]
                return patches.transpose(1, 2).reshape(out.shape)
            return patches

        def read_input(module: nn.Module, args: tuple, kw: dict) -> None:
            hidden = args[0] if args and isinstance(args[0], Tensor) else kw.get("hidden_states")
            if not isinstance(hidden, Tensor):
                raise InputTypeError(
                    f"cannot find the hidden state entering {type(module).__name__}"
                )
            kept.append(hidden)
            raise StopForward

        def read_output(module: nn.Module, args: tuple, output: Any) -> None:
            kept.append(first_tensor(output))
            raise StopForward

        module, kind = self.points[self.layer]
        with eval_mode(self.runner), OwnedHooks() as hooks:
            hooks.add(self.embedding.register_forward_hook(replace))
            if kind == "pre":
                hooks.add(module.register_forward_pre_hook(read_input, with_kwargs=True))
            else:
                hooks.add(module.register_forward_hook(read_output))
            try:
                if self.positional or main not in kwargs:
                    rest = {k: v for k, v in kwargs.items() if k != main}
                    self.runner(inputs[main], **rest)
                else:
                    self.runner(**kwargs)
            except StopForward:
                pass
        if not kept:
            raise RuntimeError(f"the forward pass never reached layer {self.layer}")
        return kept[0]


def _block_points(blocks: list[nn.Module]) -> list[tuple[nn.Module, str]]:
    """Layer 0 = input of block 0 (pre-hook); layer i = output of block i-1."""
    return [(blocks[0], "pre"), *((b, "post") for b in blocks)]


def unit_labels(lens: Any, batch: Any) -> list[str]:
    """Names of the attribution units of a one-row batch: its content tokens as the
    tokenizer spells them, or (image model) its content patches as ``"row,col"``."""
    if getattr(lens, "is_vision", False):
        return [f"{r},{c}" for r, c in batch.content_patches()[0].tolist()]
    ids = batch.input_ids[0][batch.content_mask[0]].tolist()
    return list(lens.tokenizer.convert_ids_to_tokens(ids))
