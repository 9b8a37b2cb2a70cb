"""Images through ConceptLens: streamed patch scores equal projecting ``hidden_states``.

Tiny random ViT / CLIP models (tests/vision/conftest.py) through every adapter
path: Hugging Face (loaded by folder and given as objects), nnsight, and the
TransformerLens bridge (fast path and hook points).
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch

from superact_lens.data.patches import content_pixels, patch_masks
from superact_lens.errors import InputError, InputFileNotFoundError, InputTypeError
from superact_lens.lens import ConceptLens
from superact_lens.normalization import Normalizer
from superact_lens.sinks import SampleEmbeddingSink
from superact_lens.vision.inputs import ImageBatch
from tests.adapters.helpers import Boom, hook_count
from tests.test_lens import unit_bank
from tests.vision.conftest import PATCH, SIZE, WIDTH

N_PATCHES = (SIZE // PATCH) ** 2
LAYERS = [0, 1, 2]


@functools.cache
def reference(kind: str, folder: str) -> torch.nn.Module:
    """The model loaded independently of the lens, with the class it was saved as.

    Cached: tests only read it (the nnsight and object cases load their own copy).
    """
    import transformers

    cls = {
        "vit": transformers.ViTModel,
        "vit_classifier": transformers.ViTForImageClassification,
        "clip": transformers.CLIPVisionModel,
        "clip_projection": transformers.CLIPVisionModelWithProjection,
        "clip_full": transformers.CLIPModel,
    }[kind]
    return cls.from_pretrained(folder, attn_implementation="eager").eval()


def hidden_states(model: torch.nn.Module, batch: ImageBatch) -> tuple[torch.Tensor, ...]:
    tower = model.vision_model if hasattr(model, "text_model") else model
    with torch.no_grad():
        return tower(pixel_values=batch.pixel_values, output_hidden_states=True).hidden_states


def banks():
    g = torch.Generator().manual_seed(3)
    norm = Normalizer(
        layers=LAYERS,
        mean=torch.randn(3, WIDTH, generator=g) * 0.1,
        scale=torch.rand(3, WIDTH, generator=g) + 0.5,
    )
    bank = unit_bank(layers=LAYERS, d_model=WIDTH)
    return bank, unit_bank(layers=LAYERS, d_model=WIDTH, seed=1), norm


def make_lens(how: str, kind: str, folder: str, **kw) -> ConceptLens:
    if how == "folder":
        return ConceptLens(folder, **kw)
    if how == "object":
        return ConceptLens(reference.__wrapped__(kind, folder), **kw)
    if how == "nnsight":
        from nnsight import NNsight

        return ConceptLens(NNsight(reference.__wrapped__(kind, folder)), **kw)
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(folder, device="cpu")
    return ConceptLens(bridge, fast_path=how == "bridge_fast", **kw)


CASES = [
    ("folder", "vit"),
    ("folder", "vit_classifier"),
    ("folder", "clip"),
    ("folder", "clip_projection"),
    ("folder", "clip_full"),
    ("object", "clip_full"),
    ("nnsight", "vit"),
    ("nnsight", "clip"),
    ("bridge_fast", "vit"),
    ("bridge_hooks", "vit"),
    ("bridge_fast", "vit_classifier"),
]


@pytest.mark.parametrize(("how", "kind"), CASES)
def test_scores_equal_hidden_states(how, kind, vision_folders, images):
    ref = reference(kind, vision_folders[kind])
    lens = make_lens(how, kind, vision_folders[kind])
    assert lens.is_vision and lens.n_layers == 3 and lens.d_model == WIDTH
    bank, cls_bank, norm = banks()
    scores = lens.scores(images, bank, norm, cls_bank=cls_bank, batch_size=3, progress=False)
    if how.startswith("bridge"):
        assert lens.adapter.path == ("fast" if how == "bridge_fast" else "hook_points")
    batch = lens.tokenize(images)
    hidden = hidden_states(ref, batch)
    assert scores.offsets.tolist() == [N_PATCHES * i for i in range(len(images) + 1)]
    for layer in LAYERS:
        expected = bank.score(hidden[layer][batch.content_mask], layer, norm)
        torch.testing.assert_close(scores.tokens[layer], expected, atol=1e-5, rtol=0)
        cls = cls_bank.score(hidden[layer][:, 0], layer, norm)
        torch.testing.assert_close(scores.cls[layer], cls, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def vit_lens(vision_folders):
    return ConceptLens(vision_folders["vit"])


@pytest.fixture(scope="module")
def boxed_lens(vision_folders):
    return ConceptLens(vision_folders["vit"], letterbox=True)


def test_batch_masks(vit_lens, images):
    batch = vit_lens.tokenize(images)
    assert batch.n_positions == 1 + N_PATCHES and batch.grid == (4, 4)
    assert batch.special[:, 0].all() and not batch.special[:, 1:].any()
    assert not batch.content_mask[:, 0].any()  # [CLS] is never content
    assert batch.content_mask[:, 1:].all()  # the processor stretches: every patch is content
    assert batch.cls_index.tolist() == [0] * 4 and batch.model_inputs().keys() == {"pixel_values"}
    assert batch.patch_index[0].tolist() == [-1, *range(N_PATCHES)]
    assert vit_lens.image_encoder.fit == "resize"


def test_letterbox_excludes_padding_patches(boxed_lens, vision_folders, images):
    batch = boxed_lens.tokenize(images)
    assert batch.n_content.tolist() == [16, 8, 8, 16]
    for i, image in enumerate(images):  # the dataset's patch geometry, patch for patch
        grid = patch_masks(content_pixels(image.width, image.height, SIZE, "letterbox"), PATCH)
        assert batch.content_mask[i, 1:].tolist() == grid.flatten().tolist()
    # the wide image (h 20, w 40) becomes 32 x 16 at top 8: rows 1-2 of the grid are content
    assert batch.image_boxes[1].tolist() == [8, 0, 24, 32]
    assert [rc.tolist() for rc in batch.content_patches()][1] == [
        [r, c] for r in (1, 2) for c in range(4)
    ]
    padding = batch.pixel_values[1, :, :8]  # the mean-colour fill normalises to ~0
    assert padding.abs().max() < 0.01
    ref = reference("vit", vision_folders["vit"])
    hidden = hidden_states(ref, batch)
    bank, _, norm = banks()
    scores = boxed_lens.scores(images, bank, norm, progress=False)
    assert scores.offsets.tolist() == [0, 16, 24, 32, 48]
    for layer in LAYERS:
        expected = bank.score(hidden[layer][batch.content_mask], layer, norm)
        torch.testing.assert_close(scores.tokens[layer], expected, atol=1e-5, rtol=0)
    patches = boxed_lens.content_patches(images)
    assert [len(p) for p in patches] == [16, 8, 8, 16]


def test_sample_embedding_cls_or_mean_of_content(vision_folders, images):
    """[CLS] where the model has one (SPEC §1); with has_cls off, the mean of content patches."""
    lens = ConceptLens(vision_folders["vit"], letterbox=True)
    ref = reference("vit", vision_folders["vit"])
    batch = lens.tokenize(images)
    hidden = hidden_states(ref, batch)
    (sink,) = lens.stream(images, [SampleEmbeddingSink()], layers=LAYERS, progress=False)
    for layer in LAYERS:
        torch.testing.assert_close(sink.result()[layer], hidden[layer][:, 0], atol=1e-5, rtol=0)
    lens.has_cls = False
    (sink,) = lens.stream(images, [SampleEmbeddingSink()], layers=LAYERS, progress=False)
    for layer in LAYERS:
        h = hidden[layer]
        mean = torch.stack([h[i][batch.content_mask[i]].mean(0) for i in range(len(images))])
        assert not torch.allclose(mean, h[:, 1:].mean(1), atol=1e-3)  # padding would change it
        torch.testing.assert_close(sink.result()[layer], mean, atol=1e-5, rtol=0)


def test_batch_size_invariance_and_input_kinds(boxed_lens, images, tmp_path):
    bank, cls_bank, norm = banks()
    whole = boxed_lens.scores(images, bank, norm, cls_bank=cls_bank, batch_size=4, progress=False)
    single = boxed_lens.scores(images, bank, norm, cls_bank=cls_bank, batch_size=1, progress=False)
    assert whole.offsets.tolist() == single.offsets.tolist()
    torch.testing.assert_close(whole.tokens, single.tokens, atol=1e-5, rtol=0)
    torch.testing.assert_close(whole.cls, single.cls, atol=1e-5, rtol=0)
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        image.save(paths[-1])
    arrays = [np.asarray(image) for image in images]
    for other in (paths, [str(p) for p in paths], arrays):
        again = boxed_lens.scores(other, bank, norm, cls_bank=cls_bank, progress=False)
        torch.testing.assert_close(again.tokens, whole.tokens, atol=0, rtol=0)


def test_bad_images(vit_lens, images, tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(InputFileNotFoundError, match=r"images\[1\]: no such image file .*missing"):
        vit_lens.tokenize([images[0], missing])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"images\[0\]: cannot read .*junk\.png"):
        vit_lens.scores([junk], unit_bank(layers=LAYERS, d_model=WIDTH), progress=False)
    whole = tmp_path / "whole.png"
    images[3].save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:200])  # the header reads, the pixels do not
    with pytest.raises(InputError, match=r"images\[1\]: cannot read .*cut\.png"):
        vit_lens.scores([images[0], cut], unit_bank(layers=LAYERS, d_model=WIDTH), progress=False)
    with pytest.raises(InputTypeError, match="wrap it in a list"):
        vit_lens.tokenize(str(whole))
    with pytest.raises(InputTypeError, match=r"images\[0\]: expected a path, PIL image or array"):
        vit_lens.tokenize([3])
    with pytest.raises(InputError, match="empty"):
        vit_lens.tokenize([])
    with pytest.raises(InputTypeError, match="takes images"):
        vit_lens.content_offsets(["a text"])


@pytest.mark.parametrize("how", ["folder", "bridge_hooks"])
def test_hooks_removed_after_an_error(how, vision_folders, images):
    ref = reference("vit", vision_folders["vit"])
    lens = make_lens(how, "vit", vision_folders["vit"])
    before = hook_count(lens.model)
    with pytest.raises(KeyError):
        lens.stream(images, [Boom(1, KeyError("boom"))], layers=LAYERS, progress=False)
    assert hook_count(lens.model) == before
    bank, _, _ = banks()
    batch = lens.tokenize(images)
    scores = lens.scores(images, bank, progress=False)  # still streams after the error
    torch.testing.assert_close(
        scores.tokens[2],
        bank.score(hidden_states(ref, batch)[2][batch.content_mask], 2),
        atol=1e-5,
        rtol=0,
    )


def test_loading_by_folder_and_hub_id(vision_folders):
    from transformers import CLIPVisionModel, ViTForImageClassification, ViTModel

    from superact_lens.adapters import load_model

    model, processor = load_model(vision_folders["vit_classifier"])  # as saved, head unused
    assert isinstance(model, ViTForImageClassification) and hasattr(processor, "image_mean")
    model, _ = load_model(vision_folders["vit"])
    assert isinstance(model, ViTModel)
    model, processor = load_model(vision_folders["clip_full"])  # the vision tower only
    assert isinstance(model, CLIPVisionModel) and processor.do_center_crop
    for hub_id in ("openai/clip-vit-large-patch14", "google/vit-base-patch16-224"):
        start = time.perf_counter()
        with pytest.raises(InputError, match=f"model: {hub_id!r} is not in the local"):
            ConceptLens(hub_id)
        assert time.perf_counter() - start < 5


def test_wrong_uses(vision_folders, minilm_lens):
    from nnsight import NNsight

    with pytest.raises(InputTypeError, match="NNsight\\(model.vision_model\\)"):
        ConceptLens(NNsight(reference.__wrapped__("clip_full", vision_folders["clip_full"])))
    with pytest.raises(InputError, match="letterbox: only for image models"):
        ConceptLens(minilm_lens.adapter, letterbox=True)
    with pytest.raises(InputTypeError, match="takes text"):
        minilm_lens.content_patches(["x.png"])
    with pytest.raises(InputError, match="max_length"):
        ConceptLens(vision_folders["vit"], max_length=8)


def test_pipeline_sinks_read_image_batches(boxed_lens, vision_folders, images):
    """NormStatsSink and TokenCollector see content patches only, as they see content tokens."""
    from superact_lens.sinks import NormStatsSink, TokenCollector

    batch = boxed_lens.tokenize(images)
    hidden = hidden_states(reference("vit", vision_folders["vit"]), batch)
    patches = boxed_lens.content_patches(images)
    # concept 0: the left half of the grid; concept 1: labelled, location unknown
    labels = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]], dtype=torch.bool)
    masks = [
        torch.stack([(rc[:, 1] < 2) & labels[i, 0], torch.zeros(len(rc), dtype=torch.bool)], 1)
        for i, rc in enumerate(patches)
    ]
    norm_sink = NormStatsSink()
    collector = TokenCollector(masks, labels, cap_in=1000, cap_neg=1000)
    boxed_lens.stream(images, [norm_sink, collector], layers=LAYERS, batch_size=3, progress=False)
    norm = norm_sink.result()
    for layer in LAYERS:
        content = hidden[layer][batch.content_mask].double()
        torch.testing.assert_close(norm.mean[layer], content.mean(0).float(), atol=1e-5, rtol=0)
    sample = collector.result()
    # kept: in-concept patches (left halves of images 0-1: 8 + 4) and every patch of an image
    # without a concept (image 1 for c1: 8; images 2-3 for c0: 24); image 0's right half is neither
    assert sample.embeddings.shape[1] == 40
    inside = sample.token_concepts[:, 0]
    assert int(inside.sum()) == 12
    content = torch.cat([hidden[2][i][batch.content_mask[i]] for i in range(4)])
    expected = content[torch.cat([m[:, 0] for m in masks])]
    got = sample.layer(2)[inside]
    assert torch.allclose(got.sort(0).values, expected.sort(0).values, atol=1e-5)
