"""ConceptLens on MiniLM: layers, tokenisation, exact streaming, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch

from superact_lens.concepts.bank import ConceptBank
from superact_lens.lens import ConceptLens
from superact_lens.normalization import Normalizer

pytestmark = pytest.mark.model

TEXTS = [
    "The cat sat on the mat.",
    "Hello world",
    "A much longer sentence about the economy, taxes and politics in Europe.",
    "x y",
]


def unit_bank(n_concepts=5, layers=range(7), d_model=384, seed=0, cosine=False):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(len(layers), n_concepts, d_model, generator=g)
    bias = torch.randn(len(layers), n_concepts, generator=g)
    return ConceptBank(
        layers=list(layers),
        names=[f"c{i}" for i in range(n_concepts)],
        vectors=v / v.norm(dim=-1, keepdim=True),
        bias=bias,
        cosine=cosine,
    )


def reference_hidden(hf, batch):
    with torch.no_grad():
        out = hf(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            output_hidden_states=True,
        )
    return out.hidden_states


@pytest.fixture(scope="module")
def left_lens(minilm_hf, minilm_lens):
    tokenizer = copy.deepcopy(minilm_lens.tokenizer)
    tokenizer.padding_side = "left"
    return ConceptLens(minilm_hf, tokenizer=tokenizer)


def test_facts(minilm_lens):
    assert minilm_lens.n_layers == 7
    assert minilm_lens.d_model == 384
    assert minilm_lens.has_cls
    assert minilm_lens.max_length == 512


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (None, [0, 1, 2, 3, 4, 5, 6]),
        (3, [3]),
        ([0, -1], [0, 6]),
        (["50%", "0%", "100%"], [0, 3, 6]),
        ([25.0, 75.0], [2, 4]),  # Python round: 1.5 -> 2, 4.5 -> 4
        (["2", 2], [2]),
    ],
)
def test_resolve_layers(minilm_lens, layers, expected):
    assert minilm_lens.resolve_layers(layers) == expected


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        (7, "unknown layer 7"),
        (-8, "unknown layer -8"),
        (100.5, "outside 0..100"),
        ("-5%", "outside 0..100"),
        ("abc", "neither an index nor a percent"),
        ([], "empty"),
    ],
)
def test_resolve_layers_errors(minilm_lens, layers, match):
    with pytest.raises(ValueError, match=match):
        minilm_lens.resolve_layers(layers)
    with pytest.raises(TypeError, match="layers"):
        minilm_lens.resolve_layers([True])


def test_tokenize_masks_and_offsets(minilm_lens, left_lens):
    rows = torch.arange(2)
    for lens in (minilm_lens, left_lens):
        batch = lens.tokenize(["hello world", "a"])
        assert batch.content_mask.sum(1).tolist() == [2, 1]
        # Every row has its [CLS], attended, first among its row's tokens (position 0).
        assert (batch.cls_index >= 0).all()
        assert (batch.input_ids[rows, batch.cls_index] == lens.tokenizer.cls_token_id).all()
        assert (batch.attention_mask[rows, batch.cls_index] == 1).all()
        assert (batch.position_ids[rows, batch.cls_index] == 0).all()
        assert batch.offsets[0][batch.content_mask[0]].tolist() == [[0, 5], [6, 11]]
    right, left = (
        minilm_lens.tokenize(["hello world", "a"]),
        left_lens.tokenize(["hello world", "a"]),
    )
    assert right.cls_index.tolist() == [0, 0]
    assert left.cls_index.tolist() == [0, 1]
    assert left.attention_mask[1].tolist() == [0, 1, 1, 1]
    assert left.position_ids[1].tolist() == [0, 0, 1, 2]
    assert right.position_ids[1].tolist() == [0, 1, 2, 2]
    offsets = minilm_lens.content_offsets(["hello world", "a"])
    assert [o.tolist() for o in offsets] == [[[0, 5], [6, 11]], [[0, 1]]]


@pytest.mark.parametrize("side", ["right", "left"])
def test_scores_equal_full_cache(minilm_lens, left_lens, minilm_hf, side):
    """Streamed scores == projection of output_hidden_states, padding in the batch.

    The reference is Hugging Face on the right-padded batch (positions = columns on
    every attended token), so a left-padded stream that shifted positions fails.
    """
    lens = minilm_lens if side == "right" else left_lens
    bank, cls_bank = unit_bank(), unit_bank(seed=1)
    scores = lens.scores(TEXTS, bank, cls_bank=cls_bank, batch_size=len(TEXTS), progress=False)
    batch = lens.tokenize(TEXTS)
    pad_column = 0 if side == "left" else -1
    assert (batch.attention_mask[:, pad_column] == 0).any()  # padding on the side under test
    ref_batch = minilm_lens.tokenize(TEXTS)
    hidden = reference_hidden(minilm_hf, ref_batch)
    assert scores.offsets.tolist() == [0, *ref_batch.n_content.cumsum(0).tolist()]
    for layer in range(7):
        ref = bank.score(hidden[layer][ref_batch.content_mask], layer)
        torch.testing.assert_close(scores.tokens[layer], ref, atol=1e-5, rtol=0)
        cls = hidden[layer][torch.arange(len(TEXTS)), ref_batch.cls_index]
        torch.testing.assert_close(scores.cls[layer], cls_bank.score(cls, layer), atol=1e-5, rtol=0)


def test_scores_normalised_and_cosine(minilm_lens, minilm_hf):
    g = torch.Generator().manual_seed(3)
    norm = Normalizer(
        layers=list(range(7)),
        mean=torch.randn(7, 384, generator=g) * 0.1,
        scale=torch.rand(7, 384, generator=g) + 0.5,
    )
    batch = minilm_lens.tokenize(TEXTS)
    hidden = reference_hidden(minilm_hf, batch)
    for cosine in (False, True):
        bank = unit_bank(layers=[1, 4], cosine=cosine)
        scores = minilm_lens.scores(TEXTS, bank, norm, batch_size=8, progress=False)
        assert scores.layers == [1, 4]
        for row, layer in enumerate([1, 4]):
            ref = bank.score(hidden[layer][batch.content_mask], layer, norm)
            torch.testing.assert_close(scores.tokens[row], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
def test_batching_keeps_sample_order(minilm_lens, left_lens, side):
    lens = minilm_lens if side == "right" else left_lens
    bank = unit_bank(layers=[2, 6])
    whole = lens.scores(TEXTS, bank, batch_size=8, progress=False)
    small = lens.scores(TEXTS, bank, batch_size=1, progress=False)
    assert whole.offsets.tolist() == small.offsets.tolist()
    torch.testing.assert_close(whole.tokens, small.tokens, atol=1e-4, rtol=0)
    for i, text in enumerate(TEXTS):
        alone = lens.scores([text], bank, progress=False)
        torch.testing.assert_close(small.sample(i), alone.tokens, atol=1e-5, rtol=0)


def test_progress_on_stderr(minilm_lens, capsys):
    minilm_lens.scores(TEXTS[:2], unit_bank(layers=[1]), progress=True)
    captured = capsys.readouterr()
    assert "text" in captured.err and captured.out == ""


def test_truncation_warns(minilm_hf, minilm_lens):
    lens = ConceptLens(minilm_hf, tokenizer=minilm_lens.tokenizer, max_length=8)
    long_text = "one two three four five six seven eight nine ten"
    with pytest.warns(UserWarning, match="1 of 2 texts .* truncated"):
        scores = lens.scores([long_text, "short"], unit_bank(layers=[1]), progress=False)
    offsets = lens.content_offsets([long_text, "short"])
    assert scores.lengths.tolist() == [6, 1] == [len(o) for o in offsets]
    with pytest.raises(ValueError, match="max_length"):
        ConceptLens(minilm_hf, tokenizer=minilm_lens.tokenizer, max_length=10_000)


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ([], ValueError, "texts: the list is empty"),
        (["fine", ""], ValueError, r"texts\[1\]: empty"),
        (["fine", "   "], ValueError, r"texts\[1\]: empty"),
        ("a single string", TypeError, "wrap it in a list"),
        (["fine", 3], TypeError, r"texts\[1\]"),
    ],
)
def test_bad_texts(minilm_lens, texts, error, match):
    with pytest.raises(error, match=match):
        minilm_lens.scores(texts, unit_bank(layers=[1]), progress=False)


def test_bad_banks(minilm_lens):
    with pytest.raises(ValueError, match="bank: concept vectors have width 10"):
        minilm_lens.scores(TEXTS, unit_bank(layers=[1], d_model=10), progress=False)
    bank = unit_bank(layers=[1])
    bank.vectors[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="bank: vectors or bias contain NaN or inf"):
        minilm_lens.scores(TEXTS, bank, progress=False)
    inf_bank = unit_bank(layers=[1])
    inf_bank.bias[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        minilm_lens.scores(TEXTS, inf_bank, progress=False)
    with pytest.raises(ValueError, match="bank: has no vectors for layers \\[2\\]"):
        minilm_lens.scores(TEXTS, unit_bank(layers=[1]), layers=[2], progress=False)
    with pytest.raises(ValueError, match="unknown layer 9"):
        minilm_lens.scores(TEXTS, unit_bank(layers=[9]), progress=False)


def test_bad_models(tmp_path):
    with pytest.raises(TypeError, match="model: expected"):
        ConceptLens(42)
    with pytest.raises(TypeError, match="no adapter understands"):
        ConceptLens(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="no such model folder"):
        ConceptLens(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="has no config.json"):
        ConceptLens(str(tmp_path))
    with pytest.raises(
        ValueError, match="'no-such-org/no-such-model' is not in the local Hugging Face cache"
    ):
        ConceptLens("no-such-org/no-such-model")


def test_dtype_argument(minilm_lens):
    lens64 = ConceptLens("minilm", dtype=torch.float64)
    assert next(lens64.model.parameters()).dtype == torch.float64
    bank = unit_bank(layers=[0, 6])
    s64 = lens64.scores(TEXTS, bank, progress=False)
    s32 = minilm_lens.scores(TEXTS, bank, progress=False)
    assert s64.tokens.dtype == torch.float32
    torch.testing.assert_close(s64.tokens, s32.tokens, atol=1e-3, rtol=0)
