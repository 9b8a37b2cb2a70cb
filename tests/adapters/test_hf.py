"""Hugging Face adapter: hook hygiene, nesting, plain nn.Module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from superact_lens.lens import ConceptLens
from superact_lens.sinks import Sink
from tests.adapters.helpers import (
    TEXTS,
    Recorder,
    assert_residuals_equal,
    assert_stream_failure_is_clean,
    attended,
    hf_hidden_states,
    hook_count,
    layer_residuals,
)
from tests.test_lens import unit_bank

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def lens(minilm_hf, minilm_lens):
    return ConceptLens(minilm_hf, tokenizer=minilm_lens.tokenizer)


@pytest.fixture(scope="module")
def reference(minilm_lens):
    """A MiniLM loaded independently of ``minilm_hf`` (the one the lens here wraps)."""
    return minilm_lens.model


def test_residuals_equal_hidden_states(lens, reference):
    (rec,) = lens.stream(TEXTS, [Recorder()], batch_size=8, progress=False)
    assert_residuals_equal(
        rec.result(), hf_hidden_states(reference, lens), atol=0, mask=attended(lens)
    )


def test_foreign_hooks_survive_and_run(lens, minilm_hf):
    calls = []
    block = minilm_hf.encoder.layer[2]
    handles = [
        block.register_forward_hook(lambda m, i, o: calls.append("fwd")),
        block.register_forward_pre_hook(lambda m, i: calls.append("pre")),
    ]
    try:
        before = hook_count(minilm_hf)
        lens.scores(TEXTS, unit_bank(layers=[1, 4]), progress=False)
        assert hook_count(minilm_hf) == before
        assert calls == ["pre", "fwd"]
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("exc", [RuntimeError("sink failed"), KeyboardInterrupt()])
def test_exception_in_sink_removes_our_hooks(lens, minilm_hf, reference, exc):
    marker = minilm_hf.encoder.layer[0].register_forward_hook(lambda m, i, o: None)
    try:
        assert_stream_failure_is_clean(lens, minilm_hf, exc)
        assert marker.id in minilm_hf.encoder.layer[0]._forward_hooks
    finally:
        marker.remove()
    # still exact afterwards, against a model loaded on its own: through the lens and plainly
    expected, mask = hf_hidden_states(reference, lens), attended(lens)
    assert_residuals_equal(layer_residuals(lens), expected, atol=0, mask=mask)
    assert_residuals_equal(hf_hidden_states(minilm_hf, lens), expected, atol=0, mask=mask)


class Nested(Sink):
    """At ``layer``, streams other texts through the same lens (optionally failing inside)."""

    def __init__(self, lens, layer, fail_inside=False):
        self.lens, self.at, self.fail_inside = lens, layer, fail_inside
        self.inner = None
        self.caught = None

    def on_layer(self, layer, resid, batch):
        if layer != self.at:
            return
        sinks = [Recorder()]
        if self.fail_inside:
            from tests.adapters.helpers import Boom

            sinks.append(Boom(2, ValueError("inner failure")))
        try:
            self.lens.stream(["nested text here"], sinks, progress=False)
        except ValueError as err:
            self.caught = err
        self.inner = sinks[0].result()

    def result(self):
        return self.inner


@pytest.mark.parametrize("fail_inside", [False, True])
def test_nested_streams(lens, minilm_hf, fail_inside):
    """Modelled on TransformerLens's test_nested_context_manager_with_failure."""
    before = hook_count(minilm_hf)
    expected_outer = layer_residuals(lens)
    expected_inner = layer_residuals(lens, ["nested text here"])
    outer, nested = Recorder(), Nested(lens, 3, fail_inside)
    lens.stream(TEXTS, [outer, nested], batch_size=8, progress=False)
    assert_residuals_equal(outer.result(), expected_outer)
    if fail_inside:
        assert isinstance(nested.caught, ValueError)
        assert sorted(nested.inner) == [0, 1, 2]
    else:
        assert_residuals_equal(nested.inner, expected_inner)
    assert hook_count(minilm_hf) == before


class TinyBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x):
        return x + torch.tanh(self.lin(x))


class TinyModel(nn.Module):
    """A plain nn.Module (no config): forward(input_ids) -> residual."""

    def __init__(self, vocab=30522, d=8, n=3):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, d)
        self.layers_list = nn.ModuleList([TinyBlock(d) for _ in range(n)])

    def forward(self, input_ids):
        x = self.embed(input_ids)
        for block in self.layers_list:
            x = block(x)
        return x


def test_plain_module_with_blocks(minilm_lens):
    model = TinyModel()
    lens = ConceptLens(model, tokenizer=minilm_lens.tokenizer, blocks=list(model.layers_list))
    assert (lens.n_layers, lens.d_model) == (4, 8)
    res = layer_residuals(lens, ["hello world"])
    batch = lens.tokenize(["hello world"])
    x = model.embed(batch.input_ids)
    torch.testing.assert_close(res[0], x)
    for i, block in enumerate(model.layers_list):
        x = block(x)
        torch.testing.assert_close(res[i + 1], x.detach())
    with pytest.raises(TypeError, match="tokenizer"):
        ConceptLens(model, blocks=list(model.layers_list))
