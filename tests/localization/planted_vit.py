"""A hand-built Hugging Face ViT where red patches carry the concept.

Patch embedding (an 8 x 8 conv, no bias): channel 0 reads the mean of red minus
green over the patch, times ``PLANT``; the other channels are random filters with
zero mean, so a flat patch (a pure red one, or the mean-colour baseline) has
nothing on them, and a noisy grey patch nothing on channel 0. Position
embeddings are random off channel 0. Each block's attention is uniform (query and
key weights 0) with value map the identity and output map ``MIX`` times it, so every
position adds the mean of the LayerNorm'd positions (patches see each other); the
MLPs add 0. LayerNorm's eps is large (``EPS``), which makes it nearly linear, as the
text planted model's mixing is: with the usual eps its scale invariance hides a
patch's own magnitude from the other positions, and gradient x input of the local
target (the red patch's own embedding, where its cosine is at its maximum) is then
noise. The concept vector is ``e0`` at layer 1, the normaliser the identity, the
threshold 0.5: exactly the red patches are SuperActivators.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from superact_lens.lens import ConceptLens
from tests.localization.planted import D_MODEL

PLANT = 4.0
SIDE, PATCH = 32, 8
GRID = SIDE // PATCH
EPS = 100.0
MIX = 4.0


def planted_vit():
    """``(ViTModel, image processor)``."""
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    config = ViTConfig(
        hidden_size=D_MODEL,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=SIDE,
        patch_size=PATCH,
        layer_norm_eps=EPS,
    )
    torch.manual_seed(0)
    model = ViTModel(config, add_pooling_layer=False).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        conv = model.embeddings.patch_embeddings.projection
        weight = torch.randn(D_MODEL, 3, PATCH, PATCH, generator=g) * 0.3
        weight -= weight.mean(dim=(2, 3), keepdim=True)  # flat patches give 0
        weight[0] = 0.0
        weight[0, 0] = PLANT / PATCH**2
        weight[0, 1] = -PLANT / PATCH**2
        conv.weight.copy_(weight)
        conv.bias.zero_()
        model.embeddings.cls_token.zero_()
        pos = torch.randn(1, GRID * GRID + 1, D_MODEL, generator=g) * 0.5
        pos[..., 0] = 0.0
        model.embeddings.position_embeddings.copy_(pos)
        for layer in model.layers:
            attn = layer.attention
            for lin in (attn.q_proj, attn.k_proj, layer.mlp.fc2):
                lin.weight.zero_()
            attn.v_proj.weight.copy_(torch.eye(D_MODEL))
            attn.o_proj.weight.copy_(MIX * torch.eye(D_MODEL))
            for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, layer.mlp.fc2):
                lin.bias.zero_()
    processor = ViTImageProcessorPil(size={"height": SIDE, "width": SIDE})
    return model, processor


def planted_vit_lens(letterbox: bool = False) -> ConceptLens:
    model, processor = planted_vit()
    return ConceptLens(model, tokenizer=processor, letterbox=letterbox)


def scene(red: tuple[int, int], width: int = SIDE, height: int = SIDE, seed: int = 0):
    """A noisy grey image with one pure red ``PATCH`` square at patch ``red = (row, col)``
    of the image's own pixel grid."""
    rng = np.random.default_rng(seed)
    grey = rng.normal(128, 30, size=(height, width, 1)).clip(0, 255)
    pixels = np.repeat(grey, 3, axis=2).astype(np.uint8)
    r, c = red
    pixels[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = (255, 0, 0)
    return Image.fromarray(pixels)
