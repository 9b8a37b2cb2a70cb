"""Shared pieces for adapter tests: a recording sink, hygiene checks, reference values."""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor, nn

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


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model.named_modules()``, plus a TransformerBridge's ``original_model`` tree.

    The bridge keeps the Hugging Face model it wraps in ``__dict__``, outside its
    module tree, yet that model's modules (dropout among them) run in its forward.
    """
    found = list(model.named_modules())
    original = model.__dict__.get("original_model")
    if isinstance(original, nn.Module):
        found += [(f"original_model.{n}".rstrip("."), m) for n, m in original.named_modules()]
    return found


def training_flags(model: nn.Module) -> dict[str, bool]:
    return {name: module.training for name, module in named_modules(model)}


def module_state(model: nn.Module) -> dict[str, tuple]:
    """What a stream must leave as it found it, per module.

    * the torch hooks (as :func:`hook_count`, by identity),
    * the instance attributes that shadow a class attribute with a callable, and
      nnsight's ``__nnsight__*`` entries: nnsight 0.8 installs its controller as
      ``module.__dict__["forward"]`` (no torch hook), so hook counts alone see
      nothing of it, and a monkeypatched ``forward`` left behind would look clean,
    * the ``training`` flag (streaming runs in eval mode and must restore it).
    """
    state = {}
    for name, module in named_modules(model):
        hooks = tuple(
            id(fn)
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
            for fn in getattr(module, attr, {}).values()
            if not _library_hook(fn)
        )
        patched = tuple(
            sorted(
                (key, id(value))
                for key, value in vars(module).items()
                if key.startswith("__nnsight") or (callable(value) and hasattr(type(module), key))
            )
        )
        state[name] = (hooks, patched, module.training)
    return state


def assert_same_state(before: dict[str, tuple], after: dict[str, tuple]) -> None:
    """Equal :func:`module_state` snapshots; the message names the modules that changed."""
    changed = [
        f"{name or '<root>'}: {before.get(name)} -> {after.get(name)}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
    assert not changed, "modules changed by the stream:\n" + "\n".join(changed[:10])


def assert_stream_failure_is_clean(lens, model, exc):
    """A sink raising ``exc`` mid-forward: the exception surfaces, the model is as it was.

    "As it was": :func:`module_state` (hooks, instance ``forward`` entries, training
    flags) and the thread's trace function (nnsight arms ``sys.settrace`` per trace).
    """
    before, trace_fn = module_state(model), sys.gettrace()
    try:
        lens.stream(TEXTS, [Recorder(), Boom(min(3, lens.n_layers - 1), exc)], progress=False)
    except type(exc):
        pass
    else:  # pragma: no cover
        raise AssertionError(f"{type(exc).__name__} was swallowed")
    assert_same_state(before, module_state(model))
    assert sys.gettrace() is trace_fn


def stream_order(texts: list[str]) -> list[int]:
    """The order in which ``lens.stream`` batches texts (longest first, stable)."""
    return sorted(range(len(texts)), key=lambda i: -len(texts[i]))


def layer_residuals(lens, texts=TEXTS, layers=None):
    """Residuals of ``texts`` streamed as one batch, rows in :func:`stream_order`."""
    (recorder,) = lens.stream(
        texts, [Recorder()], layers=layers, batch_size=len(texts), progress=False
    )
    return recorder.result()


def hf_hidden_states(model: nn.Module, lens: Any, texts=TEXTS, layers=None) -> dict[int, Tensor]:
    """``output_hidden_states=True`` of a Hugging Face encoder, in :func:`layer_residuals` layout.

    Pass a model loaded independently of the lens's own, so that a lens that left
    something behind in its model cannot agree with itself.
    """
    if any(m.training for m in model.modules()):
        raise ValueError("model: the reference model must be in eval mode")
    batch = lens.tokenize([texts[i] for i in stream_order(list(texts))])
    with torch.no_grad():
        hidden = model(**batch.model_inputs(), output_hidden_states=True).hidden_states
    chosen = range(len(hidden)) if layers is None else layers
    return {layer: hidden[layer] for layer in chosen}


def assert_residuals_equal(a: dict, b: dict, atol=1e-5, mask: Tensor | None = None):
    """Same layers, same residuals (only where ``mask`` is on, when given)."""
    assert sorted(a) == sorted(b)
    for layer in a:
        x, y = (a[layer], b[layer]) if mask is None else (a[layer][mask], b[layer][mask])
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


def attended(lens, texts=TEXTS) -> Tensor:
    """Attention mask of :func:`layer_residuals`'s batch (compare residuals there only)."""
    return lens.tokenize([texts[i] for i in stream_order(list(texts))]).attention_mask.bool()


def load_hf(folder) -> nn.Module:
    """A fresh Hugging Face encoder from ``folder`` (eager attention, eval mode)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def save_tiny_bert(folder, tokenizer, n_ctx: int = 32, dropout: float = 0.1) -> None:
    """Write a small random BERT (2 blocks, d_model 16, ``n_ctx`` positions) to ``folder``.

    Position embeddings for ``n_ctx`` positions only: a longer input makes its
    forward fail, so streaming one shows that truncation happened.
    """
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=n_ctx,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


def wrap_nnsight(model: nn.Module) -> Any:
    import warnings

    import nnsight

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BERT's `output` children are served as E_output
        return nnsight.NNsight(model)


class TrainingProbe(Sink):
    """Records, at each layer, which modules of ``model`` are in training mode."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.in_training: list[str] = []

    def on_layer(self, layer, resid, batch):
        self.in_training += [n for n, m in named_modules(self.model) if m.training]

    def result(self):
        return self.in_training
