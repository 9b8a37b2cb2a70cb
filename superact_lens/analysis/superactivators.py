"""Where SuperActivators are and how many (SPEC §5, paper App. J and M).

SuperActivators of concept ``c`` in a sample are its content tokens whose
score (column ``column_[c]`` at layer ``layer_[c]``) exceeds the detector's
``threshold_[c]`` — anywhere in the sample, inside the span or not.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from superact_lens.detection.segments import segment_ids
from superact_lens.scores import TokenScores

from ._common import check_inputs, check_with_masks

__all__ = ["superactivator_mask", "superactivator_ratio", "superactivator_positions", "ecdf"]


def superactivator_mask(detector: Any, scores: TokenScores) -> Bool[Tensor, "T C"]:
    """Token-level SuperActivator indicator: score > threshold_ at the chosen layer/column."""
    detector._check_fitted()
    pos = detector._layer_positions(scores)
    s = scores.tokens[pos, :, detector.column_]  # [C, T]
    return (s > detector.threshold_.unsqueeze(1)).T


def superactivator_ratio(
    detector: Any,
    scores: TokenScores,
    labels: Bool[Tensor, "n C"],
    token_masks: Bool[Tensor, "T C"],
) -> dict[str, Any]:
    """Per positive sample with a span: ``#SA tokens / #in-concept tokens``.

    Returns ``{"ratios": list of numpy arrays (one per concept), "all": the
    concatenation}``. A ratio can exceed 1 when SuperActivators fall outside
    the span (attention spreads the concept).
    """
    labels, token_masks, _ = check_with_masks(scores, labels, token_masks, detector.column_)
    sa = superactivator_mask(detector, scores)
    seg = segment_ids(scores.offsets)
    n = scores.n_samples
    n_sa = torch.zeros(n, sa.shape[1]).index_add_(0, seg, sa.float())
    in_tok = token_masks & labels[seg]
    n_in = torch.zeros(n, sa.shape[1]).index_add_(0, seg, in_tok.float())
    ratios = []
    for c in range(sa.shape[1]):
        keep = labels[:, c] & (n_in[:, c] > 0)
        ratios.append((n_sa[keep, c] / n_in[keep, c]).double().numpy())
    return {"ratios": ratios, "all": np.concatenate(ratios) if ratios else np.zeros(0)}


def superactivator_positions(
    detector: Any,
    scores: TokenScores,
    labels: Bool[Tensor, "n C"] | None = None,
) -> dict[str, Any]:
    """Positions of SuperActivators: ``absolute`` (content-token index in the
    sample) and ``relative`` (index / (length - 1), 0 for one-token samples),
    pooled over concepts; only positive samples if ``labels`` is given.
    Also per concept: ``per_concept`` = list of (absolute, relative) arrays."""
    sa = superactivator_mask(detector, scores)
    seg = segment_ids(scores.offsets)
    if labels is not None:
        labels, _, _ = check_inputs(scores, labels, None, detector.column_)
        sa = sa & labels[seg]
    index = torch.arange(scores.n_tokens) - scores.offsets[:-1][seg]
    length = scores.lengths[seg]
    rel = index.double() / (length - 1).clamp(min=1).double()
    per = []
    for c in range(sa.shape[1]):
        m = sa[:, c]
        per.append((index[m].numpy(), rel[m].numpy()))
    absolute = np.concatenate([p[0] for p in per]) if per else np.zeros(0, dtype=np.int64)
    relative = np.concatenate([p[1] for p in per]) if per else np.zeros(0)
    return {"absolute": absolute, "relative": relative, "per_concept": per}


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: sorted values and P(X <= x)."""
    x = np.sort(np.asarray(values, dtype=float))
    return x, np.arange(1, len(x) + 1) / max(len(x), 1)
