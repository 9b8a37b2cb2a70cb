"""Character spans -> token masks, through a fast tokenizer's offset mapping.

Token masks cover *content* tokens only (not [CLS]/[SEP]/BOS/EOS/padding), in
position order, as ``lens.content_offsets`` and ``TokenScores`` do. A token is
in-concept when its character span overlaps a concept span, both half-open;
zero-width tokens never overlap anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from superact_lens.data.dataset import TextDataset
from superact_lens.errors import InputError

__all__ = ["content_offsets", "token_masks"]

Spans = Sequence[Sequence[tuple[int, int, int]]]


def token_masks(
    dataset_or_spans: TextDataset | Spans,
    offsets: Sequence[Int[Tensor, "n_content 2"]],
    n_concepts: int | None = None,
) -> list[Bool[Tensor, "n_content C"]]:
    """Per sample, which content tokens lie in a span of each concept.

    Args:
        dataset_or_spans: a :class:`TextDataset`, or per-sample lists of
            ``(char_start, char_end, concept_index)``.
        offsets: per sample, the ``[n_content, 2]`` character spans of its
            content tokens (e.g. from :func:`content_offsets`).
        n_concepts: number of concepts ``C``; taken from the dataset, else
            required unless it may be inferred as ``max concept index + 1``.

    Returns:
        One ``bool [n_content, C]`` tensor per sample.
    """
    spans: Spans
    if isinstance(dataset_or_spans, TextDataset):
        spans = dataset_or_spans.spans
        n_concepts = dataset_or_spans.n_concepts if n_concepts is None else n_concepts
    else:
        spans = dataset_or_spans
        if n_concepts is None:
            n_concepts = 1 + max((c for s in spans for _, _, c in s), default=-1)
    if len(offsets) != len(spans):
        raise InputError(
            f"offsets: expected {len(spans)} samples (one per text), got {len(offsets)}"
        )
    masks = []
    for i, (sample_spans, off) in enumerate(zip(spans, offsets, strict=True)):
        off = torch.as_tensor(off, dtype=torch.long).reshape(-1, 2)
        mask = torch.zeros(off.shape[0], n_concepts, dtype=torch.bool)
        if sample_spans and off.shape[0]:
            sp = torch.as_tensor([list(s) for s in sample_spans], dtype=torch.long)
            if int(sp[:, 2].max()) >= n_concepts or int(sp[:, 2].min()) < 0:
                raise InputError(f"spans[{i}]: concept index outside 0..{n_concepts - 1}")
            t_start, t_end = off[:, :1], off[:, 1:]
            overlap = (t_start < sp[:, 1]) & (sp[:, 0] < t_end) & (t_start < t_end)
            overlap &= sp[:, 0] < sp[:, 1]  # zero-width spans mark nothing
            hits = torch.zeros(off.shape[0], n_concepts).index_add_(1, sp[:, 2], overlap.float())
            mask = hits > 0
        masks.append(mask)
    return masks


def content_offsets(
    tokenizer, texts: Sequence[str], max_length: int | None = None
) -> list[Int[Tensor, "n_content 2"]]:
    """Character spans of the content tokens of each text (special tokens dropped).

    Uses the tokenizer's ``offset_mapping`` and ``special_tokens_mask``, so it
    works for any fast (Rust ``tokenizers``) tokenizer: WordPiece, BPE,
    SentencePiece/Unigram. ``max_length`` truncates like the lens does.

    Raises:
        ValueError: the tokenizer gives no offsets (a slow, pure-Python tokenizer).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(
            f"tokenizer: {type(tokenizer).__name__} is not a fast tokenizer and gives no "
            "character offsets; load it with AutoTokenizer.from_pretrained(..., use_fast=True) "
            "or pass a tokenizers-backed (PreTrainedTokenizerFast) tokenizer"
        )
    try:
        enc = tokenizer(
            list(texts),
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            truncation=max_length is not None,
            max_length=max_length,
            padding=False,
        )
    except NotImplementedError as err:
        raise InputError(
            f"tokenizer: {type(tokenizer).__name__} gives no offsets ({err})"
        ) from None
    out = []
    for off, special in zip(enc["offset_mapping"], enc["special_tokens_mask"], strict=True):
        keep = [tuple(o) for o, s in zip(off, special, strict=True) if not s]
        out.append(torch.tensor(keep, dtype=torch.long).reshape(-1, 2))
    return out
