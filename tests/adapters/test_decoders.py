"""Decoders (issue 10, item 2): no CLS, BOS and padding excluded, causal, padding-side free.

A decoder has no [CLS]: its sample embedding is the mean of its content tokens,
and BOS (Llama / Gemma tokenizers prepend one) is not content. Its token scores
must respect causality (a text's scores do not change when text is appended
after it) and must not depend on the padding side. Checked here on small random
decoders built in the test (tests/tiny_decoders.py: a BOS + pad tokenizer with a
Llama, a no-BOS, no-pad tokenizer with a GPT-2), through every adapter, against
an independent unpadded run of the model; and once on real Gemma-3-270M (slow).
Position ids under padding in general, and batch-composition invariance, are in
test_padding.py.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from superact_lens.lens import ConceptLens
from superact_lens.sinks import SampleEmbeddingSink
from tests.extras import needs_extra
from tests.test_lens import unit_bank
from tests.tiny_decoders import gpt2_style, llama_style, save, tiny_gpt2, tiny_llama

TOL = 1e-4  # the bound for padding sides; measured differences are ~1e-6

SHORT = "The cat sat on the mat."
LONG = "A much longer sentence about the economy, taxes and politics in Europe."
MORE = " The dog ate the bread and drank the milk in the garden."
TEXTS = [SHORT, LONG, "She walked to the river.", "Yes"]

ARCHS = {  # architecture -> (base model without LM head, tokenizer style)
    "llama": (lambda: tiny_llama(head=False), llama_style),
    "gpt2": (lambda: tiny_gpt2(head=False), gpt2_style),
}


def raw_residuals(model: nn.Module, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Residual stream of one unpadded text, computed without the lens.

    A copy of the model with its final norm replaced by the identity, so that
    ``hidden_states[-1]`` is the raw output of the last block (the lens's last
    layer) rather than the normed one; no attention mask, no position ids.
    """
    reference = copy.deepcopy(model)
    for name in ("norm", "ln_f"):  # LlamaModel, GPT2Model
        if hasattr(reference, name):
            setattr(reference, name, nn.Identity())
    with torch.no_grad():
        out = reference(input_ids=input_ids, output_hidden_states=True)
    return [h[0] for h in out.hidden_states]


def content_ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- BOS, content and the sample embedding --------------------------------------------


@pytest.mark.parametrize("side", ["right", "left"])
def test_bos_is_neither_content_nor_cls(side):
    """A Llama-style tokenizer prepends BOS: it is attended, never content, and the
    model has no CLS (the sample embedding must not fall back to BOS)."""
    lens = ConceptLens(tiny_llama(head=False), tokenizer=llama_style(side))
    assert not lens.has_cls
    batch = lens.tokenize([SHORT, LONG])
    bos = lens.tokenizer.bos_token_id
    for row, text in enumerate([SHORT, LONG]):
        attended = batch.attention_mask[row].bool()
        first = int(attended.nonzero()[0])
        assert int(batch.input_ids[row, first]) == bos
        assert not batch.content_mask[row, first]
        assert batch.input_ids[row][batch.content_mask[row]].tolist() == content_ids(
            lens.tokenizer, text
        )
    assert (batch.cls_index == -1).all()
    scores = lens.scores(
        [SHORT, LONG], unit_bank(5, range(lens.n_layers), lens.d_model), progress=False
    )
    assert scores.lengths.tolist() == [len(content_ids(lens.tokenizer, t)) for t in (SHORT, LONG)]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_sample_embedding_is_mean_of_content_tokens(arch, side):
    """SampleEmbeddingSink (and the CLS-level scores) = mean of the content tokens'
    residuals of the unpadded text, at every layer: BOS and padding excluded."""
    build, style = ARCHS[arch]
    model, tokenizer = build(), style(side)
    lens = ConceptLens(model, tokenizer=tokenizer)
    (sink,) = lens.stream(TEXTS, [SampleEmbeddingSink()], batch_size=len(TEXTS), progress=False)
    got = sink.result()  # [layers, n, d]
    bank = unit_bank(5, range(lens.n_layers), lens.d_model)
    scores = lens.scores(TEXTS, bank, cls_bank=bank, batch_size=len(TEXTS), progress=False)
    for i, text in enumerate(TEXTS):
        enc = tokenizer([text], return_tensors="pt", return_special_tokens_mask=True)
        content = ~enc["special_tokens_mask"][0].bool()
        assert int(content.sum()) == len(content_ids(tokenizer, text))
        hidden = raw_residuals(model, enc["input_ids"])
        assert len(hidden) == lens.n_layers
        for layer, h in enumerate(hidden):
            expected = h[content].mean(dim=0)
            torch.testing.assert_close(got[layer, i], expected, atol=TOL, rtol=0)
            torch.testing.assert_close(
                scores.cls[layer, i], bank.score(expected[None], layer)[0], atol=TOL, rtol=0
            )


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_left_and_right_padding_agree(arch):
    """Token scores and sample scores of a batch of unequal texts: left == right."""
    build, style = ARCHS[arch]
    model = build()
    out = {}
    for side in ("left", "right"):
        lens = ConceptLens(model, tokenizer=style(side))
        bank = unit_bank(5, range(lens.n_layers), lens.d_model)
        out[side] = lens.scores(TEXTS, bank, cls_bank=bank, batch_size=4, progress=False)
    torch.testing.assert_close(out["left"].offsets, out["right"].offsets)
    torch.testing.assert_close(out["left"].tokens, out["right"].tokens, atol=TOL, rtol=0)
    torch.testing.assert_close(out["left"].cls, out["right"].cls, atol=TOL, rtol=0)


def test_position_ids_reach_the_model_with_bos_and_left_padding():
    """What the Llama forward receives: BOS at position 0 in every row, pads clamped to 0."""
    model = tiny_llama(head=False)
    lens = ConceptLens(model, tokenizer=llama_style("left"))
    seen: list[torch.Tensor] = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["position_ids"].clone()), with_kwargs=True
    )
    try:
        lens.scores([SHORT, LONG], unit_bank(5, range(lens.n_layers), lens.d_model), progress=False)
    finally:
        handle.remove()
    (positions,) = seen
    n_short = len(content_ids(lens.tokenizer, SHORT)) + 1  # + BOS
    n_long = len(content_ids(lens.tokenizer, LONG)) + 1
    width = positions.shape[1]
    # Rows are sorted longest first by the stream.
    assert positions[0].tolist() == list(range(n_long))
    assert positions[1].tolist() == [0] * (width - n_short) + list(range(n_short))


# --- causality through every adapter ---------------------------------------------------


@pytest.fixture(scope="module")
def decoder_folders(tmp_path_factory):
    """Saved tiny decoders (LM head included, as a checkpoint would be) with their tokenizers."""
    out = {}
    for arch, make, style in (("llama", tiny_llama, llama_style), ("gpt2", tiny_gpt2, gpt2_style)):
        folder = tmp_path_factory.mktemp(f"tiny_{arch}")
        out[arch] = save(folder, make(head=True), style())
    return out


def _load(kind: str, folder):
    """The model object an adapter path wraps, loaded independently from ``folder``."""
    from transformers import AutoModel

    if kind == "hf":
        return AutoModel.from_pretrained(folder).eval()
    if kind == "nnsight":
        import nnsight

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nnsight.NNsight(AutoModel.from_pretrained(folder).eval())
    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TransformerBridge.boot_transformers(str(folder), device="cpu")


@pytest.fixture(scope="module")
def decoder_models(decoder_folders):
    """``(arch, adapter) -> (model, ConceptLens kwargs)``; each model loaded once."""
    cache: dict = {}

    def get(arch: str, adapter: str):
        kind = "bridge" if adapter.startswith("bridge") else adapter
        if (arch, kind) not in cache:
            cache[arch, kind] = _load(kind, decoder_folders[arch])
        kwargs = {"fast_path": adapter == "bridge_fast"} if kind == "bridge" else {}
        return cache[arch, kind], kwargs

    return get


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("adapter", ["hf", "nnsight", "bridge_fast", "bridge_hooks"])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_appending_text_does_not_change_earlier_scores(
    decoder_folders, decoder_models, arch, adapter, side
):
    """Causality: SHORT's token scores are the first tokens' scores of SHORT + MORE,
    whether the two run in one batch or apart, and equal the unpadded model's."""
    from transformers import AutoModel

    folder = decoder_folders[arch]
    style = ARCHS[arch][1]
    model, kwargs = decoder_models(arch, adapter)
    lens = ConceptLens(model, tokenizer=style(side), **kwargs)
    expected_path = {"bridge_fast": "fast", "bridge_hooks": "hook_points"}.get(adapter, adapter)
    prefix, longer = content_ids(lens.tokenizer, SHORT), content_ids(lens.tokenizer, SHORT + MORE)
    assert longer[: len(prefix)] == prefix  # appending text keeps SHORT's tokens
    n = len(prefix)
    bank = unit_bank(5, range(lens.n_layers), lens.d_model)
    alone = lens.scores([SHORT], bank, progress=False)
    appended = lens.scores([SHORT + MORE], bank, progress=False)
    together = lens.scores([SHORT, SHORT + MORE], bank, batch_size=2, progress=False)
    assert lens.adapter.path == expected_path
    assert appended.lengths.tolist() == [len(longer)]
    torch.testing.assert_close(appended.sample(0)[:, :n], alone.tokens, atol=TOL, rtol=0)
    torch.testing.assert_close(together.sample(1)[:, :n], together.sample(0), atol=TOL, rtol=0)
    torch.testing.assert_close(together.sample(0), alone.tokens, atol=TOL, rtol=0)
    # ... and both are the model's own causal computation, from an independent load.
    reference = AutoModel.from_pretrained(folder).eval()
    ids = lens.tokenizer([SHORT + MORE], return_tensors="pt")["input_ids"]
    hidden = raw_residuals(reference, ids)
    skip = ids.shape[1] - len(longer)  # BOS, if the tokenizer adds one
    want = torch.stack([bank.score(h[skip:], layer) for layer, h in enumerate(hidden)])
    torch.testing.assert_close(appended.tokens, want, atol=TOL, rtol=0)


# --- real Gemma -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.models
@needs_extra("gemma-270m")
def test_gemma_padding_side_causality_and_bos():
    """On Gemma-3-270M: left vs right padding and appended text change no score by more
    than 1e-4 of that layer's score scale (its residuals reach ~1e5), and BOS is not content."""
    lens = ConceptLens("gemma-270m")
    tokenizer = lens.tokenizer
    batch = lens.tokenize([SHORT, LONG])
    for row in range(2):
        first = int(batch.attention_mask[row].bool().nonzero()[0])
        assert int(batch.input_ids[row, first]) == tokenizer.bos_token_id
        assert not batch.content_mask[row, first]
    assert not lens.has_cls
    bank = unit_bank(5, range(lens.n_layers), lens.d_model)
    texts = [SHORT, LONG, SHORT + MORE]
    out = {}
    for side in ("left", "right"):
        sided = copy.deepcopy(tokenizer)
        sided.padding_side = side
        sided_lens = ConceptLens(lens.model, tokenizer=sided)
        pads = sided_lens.tokenize([SHORT, LONG]).attention_mask[0] == 0
        assert bool(pads[0]) == (side == "left") and bool(pads[-1]) == (side == "right")
        out[side] = sided_lens.scores(texts, bank, cls_bank=bank, batch_size=3, progress=False)
    left, right = out["left"], out["right"]
    scale = left.tokens.abs().amax(dim=(1, 2), keepdim=True)  # per layer
    assert ((left.tokens - right.tokens).abs() <= TOL * scale).all()
    cls_scale = left.cls.abs().amax(dim=(1, 2), keepdim=True)
    assert ((left.cls - right.cls).abs() <= TOL * cls_scale).all()
    n = len(content_ids(tokenizer, SHORT))
    assert left.lengths.tolist()[0] == n
    for scores in (left, right):
        diff = (scores.sample(2)[:, :n] - scores.sample(0)).abs()
        assert (diff <= TOL * scale).all()
