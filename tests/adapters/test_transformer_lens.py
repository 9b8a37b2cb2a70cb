"""TransformerLens adapters: TransformerBridge (fast path and hook points), HookedRootModule."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from superact_lens.lens import ConceptLens
from tests.adapters.helpers import (
    TEXTS,
    Recorder,
    assert_residuals_equal,
    assert_same_state,
    assert_stream_failure_is_clean,
    hook_count,
    layer_residuals,
    module_state,
)
from tests.test_lens import unit_bank

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def lens(minilm_bridge):
    return ConceptLens(minilm_bridge)


@pytest.fixture(scope="module")
def slow_lens(minilm_bridge):
    return ConceptLens(minilm_bridge, fast_path=False)


def bridge_cache(bridge, batch):
    _, cache = bridge.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask)
    return [cache["blocks.0.hook_in"]] + [cache[f"blocks.{i}.hook_out"] for i in range(6)]


@pytest.mark.parametrize("fast", [True, False])
def test_scores_equal_run_with_cache(lens, slow_lens, minilm_bridge, fast):
    """Streamed scores == projection of run_with_cache, with padding, on both paths."""
    chosen = lens if fast else slow_lens
    bank = unit_bank()
    scores = chosen.scores(TEXTS, bank, batch_size=8, progress=False)
    assert chosen.adapter.path == ("fast" if fast else "hook_points")
    batch = chosen.tokenize(TEXTS)
    assert (batch.attention_mask == 0).any()
    for layer, resid in enumerate(bridge_cache(minilm_bridge, batch)):
        ref = bank.score(resid[batch.content_mask], layer)
        torch.testing.assert_close(scores.tokens[layer], ref, atol=1e-5, rtol=0)


def test_fast_path_equals_bridge_hook_out_and_hf(lens, slow_lens, minilm_hf, minilm_lens):
    """The fast path's residuals are the bridge's hook_out values, bit for bit."""
    fast = layer_residuals(lens)
    assert lens.adapter.path == "fast"
    assert_residuals_equal(fast, layer_residuals(slow_lens), atol=0)
    independent = ConceptLens(minilm_hf, tokenizer=minilm_lens.tokenizer)
    assert_residuals_equal(fast, layer_residuals(independent), atol=0)


def test_user_hooks_are_honoured(lens, minilm_bridge):
    bank = unit_bank(layers=[2, 3])
    plain = lens.scores(TEXTS, bank, progress=False)
    minilm_bridge.add_hook("blocks.1.hook_out", lambda x, hook: 2 * x)  # edits layer 2
    try:
        assert "blocks.1.hook_out" in lens.adapter.fast_path_blocker()
        edited = lens.scores(TEXTS, bank, progress=False)
        assert lens.adapter.path == "hook_points"
        bias = bank.bias[0]
        torch.testing.assert_close(
            edited.tokens[0] - bias, 2 * (plain.tokens[0] - bias), atol=1e-4, rtol=0
        )
        assert not torch.allclose(edited.tokens[1], plain.tokens[1], atol=1e-3)
    finally:
        minilm_bridge.reset_hooks()
    assert lens.adapter.fast_path_blocker() is None


@pytest.mark.parametrize("fast", [True, False])
def test_foreign_hooks_survive(lens, slow_lens, minilm_bridge, fast):
    calls = []
    minilm_bridge.add_hook(
        "blocks.4.hook_out", lambda x, hook: calls.append(hook.name), is_permanent=True
    )
    hf_layer = minilm_bridge.original_model.bert.encoder.layer[0]._original_component
    handle = hf_layer.register_forward_hook(lambda m, i, o: calls.append("hf"))
    try:
        before = hook_count(minilm_bridge)
        (lens if fast else slow_lens).scores(TEXTS, unit_bank(layers=[5]), progress=False)
        assert hook_count(minilm_bridge) == before
        assert (lens if fast else slow_lens).adapter.path == "hook_points"  # a user hook is on
        assert calls == ["hf", "blocks.4.hook_out"]
        assert len(minilm_bridge.hook_dict["blocks.4.hook_out"].fwd_hooks) == 1
        calls.clear()
        minilm_bridge.reset_hooks(including_permanent=True)
        (lens if fast else slow_lens).scores(TEXTS, unit_bank(layers=[5]), progress=False)
        assert calls == ["hf"]  # hooks on Hugging Face modules run on the fast path too
    finally:
        handle.remove()
        minilm_bridge.reset_hooks(including_permanent=True)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("exc", [RuntimeError("sink failed"), KeyboardInterrupt()])
def test_exception_in_sink_is_clean(lens, slow_lens, minilm_bridge, fast, exc):
    minilm_bridge.add_hook("blocks.0.hook_out", lambda x, hook: None)
    if fast:
        minilm_bridge.reset_hooks()
    try:
        assert_stream_failure_is_clean(lens if fast else slow_lens, minilm_bridge, exc)
        assert (lens if fast else slow_lens).adapter.path == ("fast" if fast else "hook_points")
    finally:
        minilm_bridge.reset_hooks()


class LegacyBlock(nn.Module):
    def __init__(self, d):
        super().__init__()
        from transformer_lens.hook_points import HookPoint

        self.lin = nn.Linear(d, d)
        self.hook_resid_pre = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x):
        x = self.hook_resid_pre(x)
        return self.hook_resid_post(x + torch.tanh(self.lin(x)))


def legacy_model(tokenizer, n_ctx=64):
    """A HookedTransformer-style HookedRootModule (hook_resid_pre / hook_resid_post).

    Learned positions for ``n_ctx`` tokens: a longer input fails, as in a real model.
    """
    from transformer_lens import HookedRootModule

    class Legacy(HookedRootModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.cfg = SimpleNamespace(d_model=8, n_ctx=n_ctx)
            self.tokenizer = tokenizer
            self.embed = nn.Embedding(tokenizer.vocab_size, 8)
            self.pos_embed = nn.Embedding(n_ctx, 8)
            self.blocks = nn.ModuleList([LegacyBlock(8) for _ in range(2)])
            self.setup()

        def forward(self, tokens, return_type="logits"):
            x = self.embed(tokens) + self.pos_embed(torch.arange(tokens.shape[1]))
            for block in self.blocks:
                x = block(x)
            return x

    return Legacy()


def _assert_scores_match_cache(lens, reference):
    """The lens's scores equal the projection of ``reference``'s residual hook points."""
    batch = lens.tokenize(TEXTS)
    _, cache = reference.run_with_cache(batch.input_ids)
    bank = unit_bank(layers=[0, 1, 2], d_model=8)
    scores = lens.scores(TEXTS, bank, batch_size=8, progress=False)
    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    for layer, name in enumerate(names):
        ref = bank.score(cache[name][batch.content_mask], layer)
        torch.testing.assert_close(scores.tokens[layer], ref, atol=1e-5, rtol=0)


def test_hooked_root_module(minilm_lens):
    model = legacy_model(minilm_lens.tokenizer)
    lens = ConceptLens(model)
    assert lens.adapter.name == "transformer_lens" and lens.n_layers == 3
    _assert_scores_match_cache(lens, model)


class Interrupt:
    """A user's hook that raises ``exc`` mid-forward (as Ctrl-C would land anywhere)."""

    def __init__(self, exc):
        self.exc = exc

    def __call__(self, x, hook):
        raise self.exc


@pytest.mark.parametrize("where", ["sink", "user_hook"])
@pytest.mark.parametrize("exc", [RuntimeError("x"), KeyboardInterrupt()])
def test_hooked_root_module_interrupted(minilm_lens, exc, where):
    """The legacy hook-point path: the exception surfaces, our hooks go, the user's stay."""
    model = legacy_model(minilm_lens.tokenizer)
    lens = ConceptLens(model)
    model.add_hook("blocks.0.hook_resid_post", lambda x, hook: None)
    if where == "sink":
        assert_stream_failure_is_clean(lens, model, exc)
    else:
        model.add_hook("blocks.1.hook_resid_pre", Interrupt(exc))
        before = module_state(model)
        with pytest.raises(type(exc)):
            lens.stream(TEXTS, [Recorder()], progress=False)
        assert_same_state(before, module_state(model))
        assert len(model.hook_dict["blocks.1.hook_resid_pre"].fwd_hooks) == 1
    assert lens.adapter.path == "hook_points"
    assert len(model.hook_dict["blocks.0.hook_resid_post"].fwd_hooks) == 1
    model.reset_hooks()
    # still exact, against a twin built on its own (same seed)
    twin = legacy_model(minilm_lens.tokenizer)
    _assert_scores_match_cache(lens, twin)


def test_nested_streams_on_hook_points(slow_lens, minilm_bridge):
    """A sink streaming through the same bridge mid-forward; the outer hooks stay quiet."""
    from tests.adapters.test_hf import Nested

    before = hook_count(minilm_bridge)
    expected_inner = layer_residuals(slow_lens, ["nested text here"])
    outer, nested = Recorder(), Nested(slow_lens, 3, fail_inside=True)
    slow_lens.stream(TEXTS, [outer, nested], batch_size=8, progress=False)
    assert isinstance(nested.caught, ValueError)
    assert sorted(outer.result()) == list(range(7))
    nested2 = Nested(slow_lens, 3)
    slow_lens.stream(TEXTS, [nested2], batch_size=8, progress=False)
    assert_residuals_equal(nested2.inner, expected_inner)
    assert hook_count(minilm_bridge) == before
