"""Input checks and in/out-of-concept token sets shared by the analyses."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor

from superact_lens.detection.base import _as_bool_2d, as_token_masks
from superact_lens.detection.segments import segment_ids
from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores


def check_inputs(
    scores: Any, labels: Any, token_masks: Any | None, columns: Any | None
) -> tuple[Tensor, Tensor | None, list[int]]:
    """Validate and return ``(labels [n, C], token_masks [T, C] | None, columns [C])``.

    ``columns[c]`` is the score column read for ground-truth concept ``c``
    (identity by default; a fitted detector's ``column_`` for clusters / SAE units).
    """
    if not isinstance(scores, TokenScores):
        raise InputTypeError(f"scores must be a TokenScores, got {type(scores).__name__}")
    labels = _as_bool_2d(labels, "labels", scores.n_samples, None)
    n_c = labels.shape[1]
    if token_masks is not None:
        token_masks = as_token_masks(token_masks, scores.n_tokens, n_c)
    if columns is None:
        if n_c != scores.tokens.shape[2]:
            raise InputError(
                f"labels has {n_c} concepts but scores has {scores.tokens.shape[2]} columns: "
                "pass columns= (e.g. detector.column_) to map concepts to columns"
            )
        cols = list(range(n_c))
    else:
        cols = [int(x) for x in (columns.tolist() if isinstance(columns, Tensor) else columns)]
        if len(cols) != n_c or any(not 0 <= k < scores.tokens.shape[2] for k in cols):
            raise InputError(f"columns must list {n_c} valid column indices, got {cols}")
    return labels, token_masks, cols


def check_with_masks(
    scores: Any, labels: Any, token_masks: Any, columns: Any | None
) -> tuple[Tensor, Tensor, list[int]]:
    """:func:`check_inputs` for analyses that need ``token_masks`` (raises if None)."""
    if token_masks is None:
        raise InputError("token_masks is required ([n_tokens, C] in-concept token masks)")
    labels_t, masks_t, cols = check_inputs(scores, labels, token_masks, columns)
    return labels_t, cast(Tensor, masks_t), cols


def in_out_masks(
    scores: TokenScores, labels: Tensor, token_masks: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Token masks ``[T, C]``: D_in (in the concept's mask, positive sample),
    D_out (ALL tokens of negative samples — SPEC §2: unmasked tokens of
    positive samples are left out on purpose, attention leaks the concept into
    them), and the segment id of every token ``[T]``."""
    seg = segment_ids(scores.offsets)
    tok_labels = labels[seg]
    return token_masks & tok_labels, ~tok_labels, seg


def concept_scores(scores: TokenScores, layer_index: int, column: int) -> Tensor:
    """Token scores ``[T]`` of one column at one layer position."""
    return scores.tokens[layer_index, :, column]


def to_list(x: Tensor) -> list:
    return torch.as_tensor(x).tolist()
