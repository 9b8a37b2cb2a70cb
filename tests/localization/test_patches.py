"""Localisation on image patches (issues 12 and 13): the truncated forward from patch
embeddings equals the streamed residual on every adapter path (HF ViT and CLIP,
nnsight, TransformerBridge fast path and hook points); the seven methods put the
planted patch on top for both targets; padding patches are not attribution units."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from superact_lens.lens import ConceptLens
from superact_lens.localization import METHODS, TruncatedForward, localize
from tests.adapters.helpers import Recorder
from tests.localization.planted import one_concept_detector
from tests.vision.conftest import PATCH, SIZE, _build

KINDS_AND_PATHS = [
    ("vit", "folder"),
    ("vit_classifier", "folder"),
    ("clip", "folder"),
    ("vit", "nnsight"),
    ("clip", "nnsight"),
    ("vit", "bridge_fast"),
    ("vit", "bridge_hooks"),
]


@pytest.fixture(scope="module")
def vision_folders(tmp_path_factory) -> dict[str, str]:
    """Tiny random ViT, ViT classifier and CLIP vision tower, saved with their processors."""
    out = {}
    for kind in ("vit", "vit_classifier", "clip"):
        model, processor = _build(kind)
        folder = tmp_path_factory.mktemp(f"loc_{kind}")
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        out[kind] = str(folder)
    return out


def _lens(kind: str, how: str, folder: str, **kw) -> ConceptLens:
    if how == "folder":
        return ConceptLens(folder, **kw)
    if how == "nnsight":
        import transformers
        from nnsight import NNsight

        cls = transformers.ViTModel if kind == "vit" else transformers.CLIPVisionModel
        return ConceptLens(NNsight(cls.from_pretrained(folder)), **kw)
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(folder, device="cpu")
    return ConceptLens(bridge, fast_path=how == "bridge_fast", **kw)


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for h, w in [(32, 32), (16, 32)]
    ]


@pytest.mark.parametrize(("kind", "how"), KINDS_AND_PATHS)
def test_patch_forward_equals_the_streamed_residual(vision_folders, kind, how):
    lens = _lens(kind, how, vision_folders[kind], letterbox=True)
    for image in _images():
        recorder = Recorder()
        lens.stream([image], [recorder], layers=[0, 1, 2], progress=False)
        batch = lens.tokenize([image])
        for layer in (0, 1, 2):
            forward = TruncatedForward(lens, layer)
            x = forward.embed(batch).requires_grad_(True)
            assert x.shape[1] == batch.n_positions
            resid = forward(batch, x)
            torch.testing.assert_close(resid, recorder.seen[layer], atol=1e-5, rtol=1e-4)
            resid[:, 1:].sum().backward()
            grad = x.grad[0]
            assert grad[1:].abs().sum() > 0  # differentiable down to the patch embeddings


@pytest.mark.parametrize("kind", ["vit", "clip"])
def test_a_removed_patch_is_the_mean_colour_patch(vision_folders, kind):
    """Law: the baseline embedding in place of patch k gives the residual of the image
    whose patch k has normalised pixel values 0 (the processor's mean colour)."""
    import transformers

    folder = vision_folders[kind]
    lens = ConceptLens(folder)
    cls = transformers.ViTModel if kind == "vit" else transformers.CLIPVisionModel
    reference = cls.from_pretrained(folder, attn_implementation="eager").eval()
    batch = lens.tokenize(_images()[:1])
    forward = TruncatedForward(lens, 2)
    embeds = forward.embed(batch)
    k, cols = 6, SIZE // PATCH
    embeds[0, 1 + k] = forward.token_embedding(None)
    pixels = batch.pixel_values.clone()
    r, c = divmod(k, cols)
    pixels[..., r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = 0.0
    with torch.no_grad():
        expected = reference(pixel_values=pixels, output_hidden_states=True).hidden_states[2]
        got = forward(batch, embeds)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(got, forward(batch, forward.embed(batch)), atol=1e-3)


SCENES = [((0, 1), 0), ((2, 3), 1), ((3, 0), 2)]  # (red patch, noise seed)


@pytest.fixture(scope="module")
def planted_images():
    from tests.localization.planted import planted_detector
    from tests.localization.planted_vit import planted_vit_lens, scene

    return planted_vit_lens(), planted_detector(), [scene(rc, seed=s) for rc, s in SCENES]


@pytest.mark.parametrize("target", ["global", "local"])
@pytest.mark.parametrize("method", METHODS)
def test_planted_patch_gets_the_top_attribution(planted_images, method, target):
    lens, detector, images = planted_images
    maps = localize(lens, detector, images, "animal", method=method, target=target)
    assert [int(m.argmax()) for m in maps] == [r * 4 + c for (r, c), _ in SCENES]
    assert all(m.shape == (16,) for m in maps)  # one score per patch, no [CLS]


@pytest.mark.parametrize("method", ["occlusion", "ig", "kernelshap"])
def test_letterbox_padding_patches_are_not_attributed(method):
    """A 32 x 16 image letterboxed into 32 x 32: two rows of padding, 8 content patches;
    the red patch (image row 0, col 2) lands at grid (1, 2) = content index 2."""
    from tests.localization.planted import planted_detector
    from tests.localization.planted_vit import planted_vit_lens, scene

    lens = planted_vit_lens(letterbox=True)
    image = scene((0, 2), width=32, height=16)
    assert lens.content_patches([image])[0].tolist() == [[r, c] for r in (1, 2) for c in range(4)]
    for target in ("global", "local"):
        (m,) = localize(lens, planted_detector(), [image], "animal", method=method, target=target)
        assert m.shape == (8,) and int(m.argmax()) == 2


def _random_detector(width: int, layer: int = 1):
    """One random concept vector at ``layer``; threshold -1: every patch is a SuperActivator."""
    vector = torch.randn(width, generator=torch.Generator().manual_seed(0))
    return one_concept_detector(vector, 2.0, layer, -1.0, "c", "tiny-vit")


def test_every_adapter_path_gives_the_same_patch_maps(vision_folders):
    """Gradient (gradient x input) and batched perturbation (occlusion) maps, both targets."""
    from tests.vision.conftest import WIDTH

    detector = _random_detector(WIDTH)
    images = _images()
    expected: dict[tuple[str, str], list[torch.Tensor]] = {}
    for how in ("folder", "nnsight", "bridge_fast", "bridge_hooks"):
        lens = _lens("vit", how, vision_folders["vit"], letterbox=True)
        for target in ("global", "local"):
            for method in ("gradxinput", "occlusion"):
                maps = localize(lens, detector, images, "c", method=method, target=target)
                assert [len(m) for m in maps] == [16, 8]  # letterbox padding left out
                want = expected.setdefault((target, method), maps)
                for got, ref in zip(maps, want, strict=True):
                    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4, msg=how)
