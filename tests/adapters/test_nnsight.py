"""nnsight adapter: exact streaming inside model.trace, hook hygiene."""

from __future__ import annotations

import pytest
import torch

from superact_lens.lens import ConceptLens
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
def lens(minilm_nnsight, minilm_lens):
    return ConceptLens(minilm_nnsight, tokenizer=minilm_lens.tokenizer)


def test_scores_equal_hidden_states(lens, minilm_nnsight, minilm_hf):
    assert lens.adapter.name == "nnsight" and lens.n_layers == 7
    bank = unit_bank()
    scores = lens.scores(TEXTS, bank, batch_size=8, progress=False)
    batch = lens.tokenize(TEXTS)
    assert (batch.attention_mask == 0).any()
    with torch.no_grad():  # an independently loaded model, not the wrapped one
        hidden = minilm_hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            output_hidden_states=True,
        ).hidden_states
    for layer in range(7):
        ref = bank.score(hidden[layer][batch.content_mask], layer)
        torch.testing.assert_close(scores.tokens[layer], ref, atol=1e-5, rtol=0)


def test_subset_of_layers_equal_hidden_states(lens, minilm_hf):
    layers = [0, 2, 5]
    assert_residuals_equal(
        layer_residuals(lens, layers=layers),
        hf_hidden_states(minilm_hf, lens, layers=layers),
        atol=0,
        mask=attended(lens),
    )


def test_foreign_hook_survives(lens, minilm_nnsight):
    module = minilm_nnsight._module
    calls = []
    handle = module.encoder.layer[1].register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        before = hook_count(module)
        lens.scores(TEXTS, unit_bank(layers=[3]), progress=False)
        assert calls == [1]
        assert hook_count(module) == before
    finally:
        handle.remove()


@pytest.mark.parametrize("exc", [RuntimeError("sink failed"), KeyboardInterrupt()])
def test_exception_in_sink_is_clean(lens, minilm_nnsight, minilm_hf, exc):
    """The trace ends: every module keeps the controller ``forward`` it had, none is live.

    nnsight 0.8 puts its controller in each module's ``__dict__`` when the model is
    wrapped and keeps it there, inert outside a trace; an interrupted trace must
    leave those entries as they were and the interleaver switched off, or the next
    plain call of the model would still be routed through the dead trace.
    """
    module = minilm_nnsight._module
    controller = module.encoder.layer[0].__dict__["forward"]
    assert type(controller).__name__ == "Controller"  # what the state check must see
    assert_stream_failure_is_clean(lens, module, exc)
    assert module.encoder.layer[0].__dict__["forward"] is controller
    assert not minilm_nnsight.interleaver.interleaving
    # still exact, against a model loaded on its own: through the lens, and called plainly
    reference = hf_hidden_states(minilm_hf, lens)
    mask = attended(lens)
    assert_residuals_equal(layer_residuals(lens), reference, atol=0, mask=mask)
    assert_residuals_equal(hf_hidden_states(module, lens), reference, atol=0, mask=mask)


class _NestedSink(Recorder):
    def __init__(self, lens):
        self.lens, self.error = lens, None

    def on_layer(self, layer, resid, batch):
        super().on_layer(layer, resid, batch)
        if layer == 3:
            try:
                self.lens.stream(["nested"], [Recorder()], progress=False)
            except RuntimeError as err:
                self.error = err


def test_nesting_is_refused_clearly(lens, minilm_nnsight):
    """nnsight traces do not nest: the inner stream fails clearly, the outer one completes."""
    before = hook_count(minilm_nnsight._module)
    sink = _NestedSink(lens)
    lens.stream(TEXTS, [sink], progress=False)
    assert "do not nest" in str(sink.error)
    assert sorted(sink.seen) == list(range(7))
    assert hook_count(minilm_nnsight._module) == before
