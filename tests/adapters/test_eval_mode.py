"""Streaming runs in eval mode: dropout is off, and each module's ``training`` flag comes back.

The shared MiniLM fixtures are all in eval mode already, so they cannot show
this; here a small random BERT with dropout 0.1 is put in training mode (a mix:
one sub-module stays in eval mode) and streamed through every adapter. Its
residuals must equal an eval-mode reference loaded on its own, bit for bit and
run after run, and the flags must be exactly as before, also after a sink
interrupts the stream.
"""

from __future__ import annotations

import pytest

from superact_lens.lens import ConceptLens
from tests.adapters.helpers import (
    TEXTS,
    Recorder,
    TrainingProbe,
    assert_residuals_equal,
    assert_stream_failure_is_clean,
    attended,
    hf_hidden_states,
    layer_residuals,
    load_hf,
    named_modules,
    training_flags,
    wrap_nnsight,
)

pytestmark = pytest.mark.model

KINDS = ["hf", "nnsight", "bridge_fast", "bridge_hook_points"]


@pytest.fixture(scope="module")
def reference(tiny_bert_folder):
    return load_hf(tiny_bert_folder)


def make_lens(kind, folder, bridge, tokenizer):
    """(lens, the nn.Module whose flags it must respect) for one adapter."""
    if kind == "hf":
        model = load_hf(folder)
        return ConceptLens(model, tokenizer=tokenizer), model
    if kind == "nnsight":
        model = load_hf(folder)
        return ConceptLens(wrap_nnsight(model), tokenizer=tokenizer), model
    return ConceptLens(bridge, fast_path=kind == "bridge_fast"), bridge


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_off_while_streaming_and_training_restored(
    kind, tiny_bert_folder, tiny_bridge, reference, minilm_tokenizer
):
    lens, model = make_lens(kind, tiny_bert_folder, tiny_bridge, minilm_tokenizer)
    expected, mask = hf_hidden_states(reference, lens), attended(lens)
    saved = {m: m.training for _, m in named_modules(model)}
    model.train()  # a bridge's train() reaches the Hugging Face model it wraps
    kept_in_eval = [m for m in model.modules() if m is not model][0].eval()
    flags = training_flags(model)
    assert any(flags.values()) and not all(flags.values())
    try:
        recorder, probe = lens.stream(
            TEXTS, [Recorder(), TrainingProbe(model)], batch_size=len(TEXTS), progress=False
        )
        if kind.startswith("bridge"):
            assert lens.adapter.path == ("fast" if kind == "bridge_fast" else "hook_points")
        assert probe.result() == [], "modules in training mode during the stream"
        assert_residuals_equal(recorder.result(), expected, atol=0, mask=mask)
        assert_residuals_equal(layer_residuals(lens), recorder.result(), atol=0)
        assert training_flags(model) == flags
        # an interrupted stream restores the flags too (the state check compares them)
        assert_stream_failure_is_clean(lens, model, KeyboardInterrupt())
        assert training_flags(model) == flags
        assert not kept_in_eval.training
    finally:
        for module, training in saved.items():
            module.training = training
