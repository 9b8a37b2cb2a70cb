"""Tiny random vision transformers saved to folders with their image processors (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

SIZE, PATCH, WIDTH = 32, 8, 32  # 4 x 4 patches + [CLS] = 17 positions; d_model 32

_COMMON = dict(
    hidden_size=WIDTH,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=SIZE,
    patch_size=PATCH,
)


def _vit_processor():
    from transformers import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": SIZE, "width": SIZE})


def _clip_processor():
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": SIZE}, crop_size=SIZE)


def _build(kind: str) -> tuple[torch.nn.Module, object]:
    from transformers import (
        CLIPConfig,
        CLIPModel,
        CLIPTextConfig,
        CLIPVisionConfig,
        CLIPVisionModel,
        CLIPVisionModelWithProjection,
        ViTConfig,
        ViTForImageClassification,
        ViTModel,
    )

    torch.manual_seed(0)
    if kind == "vit":
        return ViTModel(ViTConfig(**_COMMON)), _vit_processor()
    if kind == "vit_classifier":
        return ViTForImageClassification(ViTConfig(**_COMMON, num_labels=3)), _vit_processor()
    vision = CLIPVisionConfig(**_COMMON, projection_dim=16)
    if kind == "clip":
        return CLIPVisionModel(vision), _clip_processor()
    if kind == "clip_projection":
        return CLIPVisionModelWithProjection(vision), _clip_processor()
    if kind == "clip_full":
        text = CLIPTextConfig(
            hidden_size=WIDTH,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=99,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        config = CLIPConfig(
            text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16
        )
        return CLIPModel(config), _clip_processor()
    raise ValueError(kind)


KINDS = ("vit", "vit_classifier", "clip", "clip_projection", "clip_full")


@pytest.fixture(scope="session")
def vision_folders(tmp_path_factory) -> dict[str, str]:
    """``kind -> folder`` holding config, weights and preprocessor_config.json."""
    out = {}
    for kind in KINDS:
        model, processor = _build(kind)
        folder = tmp_path_factory.mktemp(kind)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        out[kind] = str(folder)
    return out


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Four random RGB images: square, wide, tall, and another size."""
    rng = np.random.default_rng(0)
    shapes = [(32, 32), (20, 40), (48, 24), (50, 50)]  # (height, width)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """A tiny CLEVR-style folder (48 scenes of 32 px, seed 0), shared read-only: tests
    that break a folder copy what they need elsewhere."""
    from superact_lens.data import generate_clevr

    return generate_clevr(tmp_path_factory.mktemp("clevr-tiny") / "clevr", n=48, seed=0, size=32)
