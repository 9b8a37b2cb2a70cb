"""Vision transformers: which models take images, their patch geometry, their processor.

Supported: Hugging Face ``ViTModel`` / ``ViTForImageClassification``,
``CLIPVisionModel`` / ``CLIPVisionModelWithProjection`` and the vision tower of
a ``CLIPModel`` (the lens runs ``clip.vision_model``); the same wrapped by
nnsight; and a TransformerLens 4.x ``TransformerBridge`` booted on a ViT
(``TransformerBridge.boot_transformers(folder)`` works offline from a local
folder: TL's ``vit`` architecture adapter wraps the HF model it loads).

No bridge for CLIP: TL 4.3's registry
(``transformer_lens/factories/architecture_adapter_factory.py``) maps
``ViTModel`` and ``ViTForImageClassification`` to its ViT adapter but has no
CLIP architecture, so ``boot_transformers`` on a CLIP folder raises "Could not
determine supported architecture from config". Use CLIP through Hugging Face
or nnsight.

Layers, as for text: ``0`` = input of the first block, ``i`` = output of block
``i``, equal to Hugging Face's ``hidden_states[i]``. For ViT, layer 0 is the
embeddings output (patch + position embeddings, with [CLS]). CLIP applies
``pre_layrnorm`` to the embeddings before the first block; its residual stream
starts after it, so CLIP's layer 0 is the normalised embeddings
(``hidden_states[0]``). No final norm is applied to the last layer.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from superact_lens.errors import InputError, InputTypeError

__all__ = [
    "VISION_MODEL_TYPES",
    "is_vision_config",
    "is_vision_model",
    "is_vision_source",
    "load_image_processor",
    "load_vision_model",
    "patch_geometry",
    "vision_config",
    "vision_tower",
]

# model_type of configs whose checkpoints the lens reads as image models.
VISION_MODEL_TYPES = ("vit", "clip", "clip_vision_model")


def is_vision_config(config: Any) -> bool:
    """Whether a Hugging Face config describes an image model the lens supports."""
    return getattr(config, "model_type", None) in VISION_MODEL_TYPES


def _hf_module(model: Any) -> Any:
    """The Hugging Face module under a bridge (``original_model``) or nnsight (``_module``)."""
    for attr in ("original_model", "_module"):
        inner = model.__dict__.get(attr) if hasattr(model, "__dict__") else None
        if isinstance(inner, nn.Module):
            return inner
    return model


def is_vision_model(model: Any) -> bool:
    """Whether ``model`` (HF, bridge, nnsight-wrapped) takes ``pixel_values``."""
    if getattr(getattr(model, "cfg", None), "is_visual_model", False) is True:
        return True
    module = _hf_module(model)
    if getattr(module, "main_input_name", None) == "pixel_values":
        return True
    return isinstance(getattr(module, "vision_model", None), nn.Module) and isinstance(
        getattr(module, "text_model", None), nn.Module
    )


def vision_tower(model: nn.Module) -> nn.Module:
    """The part of ``model`` that runs on images alone (``CLIPModel`` -> ``vision_model``)."""
    tower = getattr(model, "vision_model", None)
    if isinstance(tower, nn.Module) and isinstance(getattr(model, "text_model", None), nn.Module):
        return tower
    return model


def vision_config(model: Any) -> Any:
    """The vision config of ``model`` (``CLIPConfig.vision_config`` for a full CLIP)."""
    config = getattr(_hf_module(model), "config", None)
    if config is None:
        raise InputTypeError(f"model: a {type(model).__name__} has no Hugging Face config")
    return getattr(config, "vision_config", None) or config


def patch_geometry(model: Any) -> tuple[int, int, int]:
    """``(image_size, patch_size, n_prefix)``: input side, patch side, positions before patches.

    ViT and CLIP put one [CLS] before the patches. Square inputs and patches only
    (every supported checkpoint); anything else is an error naming the value.
    """
    config = vision_config(model)
    sizes = {}
    for name in ("image_size", "patch_size"):
        value = getattr(config, name, None)
        if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
            value = value[0]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputTypeError(
                f"model: {type(config).__name__}.{name} = {value!r}; expected one positive int"
            )
        sizes[name] = value
    return sizes["image_size"], sizes["patch_size"], 1


def load_image_processor(model: Any, source: str | None = None, **hub: Any) -> Any:
    """The image processor saved with ``model`` (or at ``source``): ``AutoImageProcessor``."""
    if source is None:
        config = getattr(_hf_module(model), "config", None)
        source = getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not source:
        raise InputTypeError(
            f"processor: a {type(model).__name__} has no image processor of its own; "
            "pass tokenizer=<image processor>"
        )
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(source, **hub)
    except (OSError, ValueError) as err:
        raise InputError(
            f"processor: could not load the image processor of {source!r} "
            f"({type(err).__name__}); save one with the model "
            "(preprocessor_config.json) or pass tokenizer=<image processor>"
        ) from None


def is_vision_source(source: str, **hub: Any) -> bool:
    """Whether the folder or Hub id ``source`` holds an image model (reads its config)."""
    from transformers import AutoConfig

    return is_vision_config(AutoConfig.from_pretrained(source, **hub))


# Checkpoint classes loaded as saved (their own head kept: the stream stops before it).
_IMAGE_CLASSES = (
    "ViTModel",
    "ViTForImageClassification",
    "CLIPVisionModel",
    "CLIPVisionModelWithProjection",
)


def load_vision_model(
    source: str, hub: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[nn.Module, Any]:
    """``(model, image processor)`` from ``source``.

    The checkpoint's own class when it is one of ``_IMAGE_CLASSES`` (a
    ViTForImageClassification loads with its classifier, which never runs); a full
    ``CLIPModel`` checkpoint loads its vision tower only (``CLIPVisionModel``), with
    transformers' report of the unused text-tower weights silenced. ``hub``: loader
    options for the Hub (``local_files_only``); ``kwargs``: those and the model options.
    """
    import transformers

    config = transformers.AutoConfig.from_pretrained(source, **hub)
    processor = load_image_processor(None, source, **hub)
    saved = [a for a in (getattr(config, "architectures", None) or []) if a in _IMAGE_CLASSES]
    if saved:
        return getattr(transformers, saved[0]).from_pretrained(source, **kwargs), processor
    if config.model_type != "clip":
        return transformers.AutoModel.from_pretrained(source, **kwargs), processor
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        model = transformers.CLIPVisionModel.from_pretrained(source, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model, processor
