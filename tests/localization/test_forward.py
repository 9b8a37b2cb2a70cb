"""The truncated forward: same residuals as the lens streams, on every adapter path;
stops at the layer; leaves no hook behind; the local target is the mean of the
SuperActivator embeddings."""

from __future__ import annotations

import pytest
import torch

from superact_lens.lens import ConceptLens
from superact_lens.localization import Localizer, TruncatedForward, localize
from tests.adapters.helpers import Recorder, load_hf, save_tiny_bert, wrap_nnsight

TEXTS = ["The cat sat on the mat.", "Hello world, again and again"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, bert_tokenizer):
    folder = tmp_path_factory.mktemp("loc_tiny_bert")
    save_tiny_bert(folder, bert_tokenizer)
    return folder


def _lenses(folder):
    from transformer_lens.model_bridge import TransformerBridge

    yield "hf", ConceptLens(load_hf(folder))
    yield "nnsight", ConceptLens(wrap_nnsight(load_hf(folder)))
    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu")
    yield "bridge-fast", ConceptLens(bridge)
    yield "bridge-hooks", ConceptLens(bridge, fast_path=False)


def test_truncated_forward_equals_the_streamed_residual(tiny_folder):
    for name, lens in _lenses(tiny_folder):
        for text in TEXTS:
            recorder = Recorder()
            lens.stream([text], [recorder], layers=[0, 1, 2], progress=False)
            batch = lens.tokenize([text])
            for layer in (0, 1, 2):
                forward = TruncatedForward(lens, layer)
                x = forward.embed(batch).requires_grad_(True)
                resid = forward(batch, x)
                torch.testing.assert_close(
                    resid, recorder.seen[layer], atol=1e-5, rtol=1e-4, msg=f"{name} L{layer}"
                )
                resid.sum().backward()  # differentiable down to the embeddings
                assert x.grad is not None and x.grad.abs().sum() > 0, name


def test_forward_stops_at_the_layer_and_removes_its_hooks(planted):
    lens, detector = planted
    model = lens.model
    localize(lens, detector, ["the cat sat"], "animal", method="occlusion")
    assert model.blocks[1].calls == 0  # the block above the detector's layer never ran
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    forward = TruncatedForward(lens, 1)
    batch = lens.tokenize(["the cat sat"])

    def boom(module, args, output):
        raise ValueError("boom")

    theirs = model.blocks[0].register_forward_hook(boom)  # someone else's hook
    try:
        with pytest.raises(ValueError, match="boom"):
            forward(batch, forward.embed(batch))
        assert list(model.blocks[0]._forward_hooks.values()) == [boom]  # theirs stays
        assert not model.embed._forward_hooks  # ours are gone
    finally:
        theirs.remove()


def test_local_target_is_the_mean_of_the_superactivator_embeddings(planted):
    lens, detector = planted
    localizer = Localizer(lens, detector)
    text = "the cat and the dog and the house"
    problem, sa = localizer.problem(text, "animal")
    assert sa.tolist() == [False, True, False, False, True, False, False, False]
    localizer.set_target(problem, "animal", "local", sa)
    model, ids = lens.model, lens.tokenize([text]).input_ids
    with torch.no_grad():
        layer1 = model.blocks[0](model.embed(ids))[0]  # identity normaliser
    expected = (layer1[2] + layer1[5]) / 2  # content tokens 1 and 4, after [CLS]
    torch.testing.assert_close(problem.target, expected)
    # and the global target is the bank's concept vector
    localizer.set_target(problem, "animal", "global", sa)
    torch.testing.assert_close(problem.target, detector.bank.vectors[0, 0])
