"""Detection metrics: per-concept precision / recall / F1, frequency-weighted F1
and its bootstrap confidence interval (SPEC §4).

Zero divisions give 0 (a concept never predicted has precision 0; a concept
absent from the labels has recall and F1 0 and weight 0). The weighted F1 is
``sum_c support_c * f1_c / sum_c support_c`` with ``support_c`` the number of
samples labelled positive for ``c``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from superact_lens.errors import InputError

from .base import _as_bool_2d
from .calibration import f1_from_counts

__all__ = ["detection_metrics", "bootstrap_weighted_f1", "weighted_f1", "detection_report"]


def _check_pair(pred: Any, labels: Any) -> tuple[Tensor, Tensor]:
    labels_t = torch.as_tensor(labels) if not isinstance(labels, Tensor) else labels
    if labels_t.ndim != 2:
        raise InputError(f"labels must be [n, C], got shape {tuple(labels_t.shape)}")
    labels_t = _as_bool_2d(labels_t, "labels", labels_t.shape[0], labels_t.shape[1])
    pred_t = _as_bool_2d(pred, "pred", labels_t.shape[0], labels_t.shape[1])
    return pred_t.cpu(), labels_t.cpu()


def weighted_f1(f1: Tensor, support: Tensor) -> Tensor:
    """Support-weighted mean F1 along the last axis (0 when no support)."""
    f1, support = f1.to(torch.float64), support.to(torch.float64)
    total = support.sum(-1)
    return torch.where(
        total > 0, (f1 * support).sum(-1) / total.clamp(min=1), torch.zeros_like(total)
    )


def detection_metrics(pred: Bool[Tensor, "n C"], labels: Bool[Tensor, "n C"]) -> dict[str, Any]:
    """Per-concept ``precision``, ``recall``, ``f1`` (float64 numpy ``[C]``),
    ``support`` (int64 ``[C]``, positives in ``labels``), and ``weighted_f1`` (float)."""
    pred, labels = _check_pair(pred, labels)
    tp = (pred & labels).sum(0)
    pp = pred.sum(0)
    support = labels.sum(0)
    precision, recall, f1 = f1_from_counts(tp, pp, support)
    return {
        "precision": precision.numpy(),
        "recall": recall.numpy(),
        "f1": f1.numpy(),
        "support": support.long().numpy(),
        "weighted_f1": float(weighted_f1(f1, support)),
    }


_BOOTSTRAP_BLOCK = 1 << 18  # index draws per resampling block (memory, not results)
_EXACT_FLOAT32 = 1 << 24  # integers below this are exact in float32


def bootstrap_weighted_f1(
    pred: Bool[Tensor, "n C"],
    labels: Bool[Tensor, "n C"],
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap ``(lo, hi)`` of the weighted F1, resampling samples.

    Vectorised: each resample is a vector of sample multiplicities ``w`` and
    TP / predicted / actual positives are ``w @ indicators``; resamples are
    processed in blocks of about 2^18 index draws (~3 MB of working memory
    whatever ``n``); the draws come from one generator in order, so the result
    does not depend on the block size. The counts are integers below ``n``, so
    they are exact in float32 while ``n < 2^24`` (float64 above). Deterministic
    given ``seed``.
    """
    if int(n_resamples) < 1:
        raise InputError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise InputError(f"alpha must be in (0, 1), got {alpha}")
    pred, labels = _check_pair(pred, labels)
    n = pred.shape[0]
    if n == 0:
        return 0.0, 0.0
    dtype = torch.float32 if n < _EXACT_FLOAT32 else torch.float64
    ind = torch.cat([(pred & labels), pred, labels], dim=1).to(dtype)  # [n, 3C]
    n_c = pred.shape[1]
    gen = torch.Generator().manual_seed(int(seed))
    block = max(1, _BOOTSTRAP_BLOCK // n)
    one = torch.ones((), dtype=dtype)
    stats = []
    for start in range(0, int(n_resamples), block):
        b = min(block, int(n_resamples) - start)
        idx = torch.randint(0, n, (b, n), generator=gen)
        w = torch.zeros(b, n, dtype=dtype)
        w.scatter_add_(1, idx, one.expand(b, n))
        counts = (w @ ind).to(torch.float64)  # [b, 3C], whole numbers
        tp, pp, sup = counts[:, :n_c], counts[:, n_c : 2 * n_c], counts[:, 2 * n_c :]
        _, _, f1 = f1_from_counts(tp, pp, sup)
        stats.append(weighted_f1(f1, sup))
    values = torch.cat(stats).numpy()
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def detection_report(
    detector: Any,
    scores: Any,
    labels: Bool[Tensor, "n C"],
    concept_names: list[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """One method's entry of results.json: ``weighted_f1``, ``ci95`` and
    ``per_concept`` (f1, precision, recall, layer, sparsity, threshold, column,
    column_name, cal_f1, support) for a fitted detector on test scores."""
    pred = detector.predict(scores)
    m = detection_metrics(pred, labels)
    lo, hi = bootstrap_weighted_f1(pred, labels, n_resamples=n_resamples, seed=seed)
    summary = detector.summary(concept_names)
    per = {}
    for c, (name, s) in enumerate(summary.items()):
        per[name] = {
            "f1": float(m["f1"][c]),
            "precision": float(m["precision"][c]),
            "recall": float(m["recall"][c]),
            "support": int(m["support"][c]),
            **s,
        }
    return {"weighted_f1": m["weighted_f1"], "ci95": [lo, hi], "per_concept": per}
