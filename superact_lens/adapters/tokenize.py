"""Tokenisation for the lens: padded batches with content masks, offsets and [CLS] positions.

Content tokens are those with the attention mask on that are not special
tokens ([CLS], [SEP], BOS, EOS, PAD). Padding follows the tokenizer's
``padding_side`` and is done here (faster than the tokenizer's own padding
with tensors); tokenizers without a pad token (GPT-2 style) are padded with
id 0 under a zero attention mask, without touching the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.errors import InputError, InputTypeError

__all__ = ["TokenBatch", "check_texts", "encode", "position_ids_from_mask"]


@dataclass
class TokenBatch:
    """A padded, tokenised batch and what the sinks need to read its residuals.

    ``content_mask`` is ``attention & not special``; ``cls_index`` is the [CLS]
    position of each row (-1 when the model has none); ``sample_ids`` are the
    global indices of the rows' texts in the list given to ``stream``.
    """

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    content_mask: Bool[Tensor, "batch pos"]
    offsets: Int[Tensor, "batch pos 2"]
    cls_index: Int[Tensor, " batch"]
    sample_ids: Int[Tensor, " batch"]
    truncated: Bool[Tensor, " batch"]
    extra: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n_content(self) -> Int[Tensor, " batch"]:
        return self.content_mask.sum(dim=1)

    @property
    def position_ids(self) -> Int[Tensor, "batch pos"]:
        """Each token's position among its row's attended tokens (``position_ids_from_mask``)."""
        return position_ids_from_mask(self.attention_mask)

    def model_inputs(self) -> dict[str, Tensor]:
        """What the adapters may pass to the model; each keeps the names its model takes."""
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
            **self.extra,
        }

    def content(self, resid: Float[Tensor, "batch pos d"]) -> Float[Tensor, "n_content d"]:
        """Content tokens of every row, rows concatenated in order (TokenScores order)."""
        return resid[self.content_mask]

    def sample_embedding(self, resid: Float[Tensor, "batch pos d"]) -> Float[Tensor, "batch d"]:
        """[CLS] residual where the model has one, else the mean of the content tokens."""
        if bool((self.cls_index >= 0).all()):
            return resid[torch.arange(resid.shape[0], device=resid.device), self.cls_index]
        weights = self.content_mask.to(resid.dtype)
        total = torch.einsum("bpd,bp->bd", resid, weights)
        return total / weights.sum(dim=1, keepdim=True).clamp_min(1.0)

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            **{
                name: getattr(self, name).to(device)
                for name in (
                    "input_ids",
                    "attention_mask",
                    "content_mask",
                    "offsets",
                    "cls_index",
                    "sample_ids",
                    "truncated",
                )
            },
            extra={k: v.to(device) for k, v in self.extra.items()},
        )


def position_ids_from_mask(attention_mask: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """Positions counted over attended tokens only: ``cumsum(mask) - 1``, 0 on leading pads.

    With left padding a row's first token sits at column ``pad`` but is position 0
    of its text; a model left to number columns (``arange``) would see every token
    shifted by the pad count, and a text's activations would depend on the longest
    text in its batch. Under right padding this equals ``arange`` on every
    attended token, so passing it changes nothing there.
    """
    return (attention_mask.long().cumsum(dim=1) - 1).clamp_min(0)


def check_texts(texts: Any) -> list[str]:
    if isinstance(texts, str):
        raise InputTypeError("texts: expected a list of strings, got one str (wrap it in a list)")
    try:
        texts = list(texts)  # lists, tuples, numpy arrays, pandas Series
    except TypeError:
        raise InputTypeError(
            f"texts: expected a list of strings, got {type(texts).__name__}"
        ) from None
    if len(texts) == 0:
        raise InputError("texts: the list is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputTypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
        if not text.strip():
            raise InputError(f"texts[{i}]: empty text (no content tokens)")
    return texts


def encode(
    tokenizer: Any,
    texts: list[str],
    sample_ids: list[int],
    max_length: int | None,
    has_cls: bool,
) -> TokenBatch:
    """Tokenise, pad and flag ``texts``; ``sample_ids`` are their global indices."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    common = dict(
        truncation=max_length is not None,
        max_length=max_length,
        return_offsets_mapping=fast,
        return_special_tokens_mask=True,
    )
    ids, attention, special, offsets, extra = _pad_by_hand(tokenizer, texts, common, fast)
    content = attention.bool() & ~special
    n_content = content.sum(dim=1)
    empty = torch.nonzero(n_content == 0).flatten()
    if len(empty):
        raise InputError(f"texts[{sample_ids[int(empty[0])]}]: text has no content tokens")
    truncated = torch.zeros(len(texts), dtype=torch.bool)
    if max_length is not None:
        for i in torch.nonzero(attention.sum(dim=1) >= max_length).flatten().tolist():
            ends = offsets[i][content[i], 1]
            truncated[i] = not fast or int(ends[-1]) < len(texts[i].rstrip())
    if has_cls:
        is_cls = (ids == tokenizer.cls_token_id) & attention.bool()
        cls_index = torch.where(is_cls.any(dim=1), is_cls.int().argmax(dim=1), -1)
    else:
        cls_index = torch.full((len(texts),), -1, dtype=torch.long)
    return TokenBatch(
        input_ids=ids,
        attention_mask=attention,
        content_mask=content,
        offsets=offsets,
        cls_index=cls_index,
        sample_ids=torch.tensor(sample_ids, dtype=torch.long),
        truncated=truncated,
        extra=extra,
    )


def _pad_by_hand(
    tokenizer: Any, texts: list[str], common: dict, fast: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
    enc = tokenizer(texts, **common)
    rows = enc["input_ids"]
    n, width = len(rows), max(len(r) for r in rows)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros(n, width, dtype=torch.long)
    special = torch.ones(n, width, dtype=torch.bool)
    offsets = torch.full((n, width, 2), -1, dtype=torch.long)
    extra = {k: torch.zeros(n, width, dtype=torch.long) for k in ("token_type_ids",) if k in enc}
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        attention[i, span] = 1
        special[i, span] = torch.tensor(enc["special_tokens_mask"][i], dtype=torch.bool)
        for key, value in extra.items():
            value[i, span] = torch.tensor(enc[key][i], dtype=torch.long)
        if fast:
            offsets[i, span] = torch.tensor(enc["offset_mapping"][i], dtype=torch.long).view(-1, 2)
    return ids, attention, special, offsets, extra
