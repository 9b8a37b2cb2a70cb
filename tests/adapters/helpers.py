"""Shared pieces for adapter tests: a recording sink, hook counting, hygiene checks."""

from __future__ import annotations

import torch
from torch import nn

from superact_lens.sinks import Sink

TEXTS = [
    "The cat sat on the mat.",
    "Hello world",
    "A much longer sentence about the economy, taxes and politics in Europe.",
]


class Recorder(Sink):
    """Keeps a copy of every residual it sees (tests only: this is what sinks must NOT do)."""

    def begin(self, n_samples, layers, d_model):
        super().begin(n_samples, layers, d_model)
        self.seen = {}

    def on_layer(self, layer, resid, batch):
        self.seen[layer] = resid.detach().clone()

    def result(self):
        return self.seen


class Boom(Sink):
    """Raises ``exc`` when it sees ``layer``."""

    def __init__(self, layer, exc):
        self.at, self.exc = layer, exc

    def on_layer(self, layer, resid, batch):
        if layer == self.at:
            raise self.exc

    def result(self):
        return None


def _library_hook(fn) -> bool:
    """Hooks TransformerLens / transformers install lazily on first use (not ours, not users')."""
    fn = getattr(fn, "func", fn)
    module = str(getattr(fn, "__module__", ""))
    return module.startswith(("transformer_lens", "transformers"))


def hook_count(model: nn.Module) -> dict[str, int]:
    """Number of torch hooks per module, except the libraries' own lazily wired ones."""
    counts = {}
    for name, module in model.named_modules():
        hooks = [
            fn
            for attr in (
                "_forward_hooks",
                "_forward_pre_hooks",
                "_backward_hooks",
                "_backward_pre_hooks",
            )
            for fn in getattr(module, attr, {}).values()
        ]
        n = sum(not _library_hook(fn) for fn in hooks)
        if n:
            counts[name] = n
    return counts


def assert_stream_failure_is_clean(lens, model, exc):
    """A sink raising ``exc`` mid-forward: the exception surfaces, no hook of ours remains."""
    before = hook_count(model)
    try:
        lens.stream(TEXTS, [Recorder(), Boom(min(3, lens.n_layers - 1), exc)], progress=False)
    except type(exc):
        pass
    else:  # pragma: no cover
        raise AssertionError(f"{type(exc).__name__} was swallowed")
    assert hook_count(model) == before


def layer_residuals(lens, texts=TEXTS, layers=None):
    (recorder,) = lens.stream(
        texts, [Recorder()], layers=layers, batch_size=len(texts), progress=False
    )
    return recorder.result()


def assert_residuals_equal(a: dict, b: dict, atol=1e-5):
    assert sorted(a) == sorted(b)
    for layer in a:
        torch.testing.assert_close(a[layer], b[layer], atol=atol, rtol=0)
