"""Separability and coverage by depth (SPEC §5, paper §3.1 and App. C).

For concept ``c`` at layer ``l``, let ``Q_q`` be the q-quantile of ``D_out``
(all tokens of samples without ``c``; linear interpolation):

- ``q{95,99}``: fraction of ``D_in`` (in-span tokens of positive samples)
  strictly above ``Q_q``.
- ``coverage{95,99}``: fraction of positive samples with at least one content
  token (anywhere in the sample) strictly above ``Q_q`` — what a max-based
  detector can see; positives without a span are included.
- ``coverage_in{95,99}``: the same counting only in-span tokens, over positive
  samples that have a span (the paper's "in-concept samples that contain a
  separable in-concept token").

Concepts without ``D_in`` (or ``D_out``) get NaN for the affected entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from superact_lens.detection.calibration import linear_quantiles
from superact_lens.detection.segments import segment_any
from superact_lens.errors import InputError
from superact_lens.scores import TokenScores

from ._common import check_with_masks, in_out_masks

__all__ = ["separability", "separability_summary"]


def _key(q: float) -> str:
    return f"{round(q * 100):d}"


def separability(
    scores: TokenScores,
    labels: Bool[Tensor, "n C"],
    token_masks: Bool[Tensor, "T C"],
    qs: Sequence[float] = (0.95, 0.99),
    columns: Sequence[int] | Tensor | None = None,
) -> dict[str, Any]:
    """Per layer and concept separability / coverage.

    Returns a dict of numpy arrays ``[L, C]``: ``q95``, ``q99``, ``coverage95``,
    ``coverage99``, ``coverage_in95``, ``coverage_in99`` (keys follow ``qs``),
    ``out_quantile95`` / ``out_quantile99`` (the thresholds), plus ``layers``,
    ``support`` ``[C]`` (positive samples) and ``n_in`` ``[C]``.
    """
    labels, token_masks, cols = check_with_masks(scores, labels, token_masks, columns)
    if not qs or any(not 0.0 < float(q) < 1.0 for q in qs):
        raise InputError(f"qs must be quantile levels in (0, 1), got {list(qs)}")
    d_in, d_out, _ = in_out_masks(scores, labels, token_masks)
    n_layers, n_c = len(scores.layers), labels.shape[1]
    qt = torch.tensor([float(q) for q in qs])
    out: dict[str, Any] = {"layers": list(scores.layers)}
    for q in qs:
        for name in ("q", "coverage", "coverage_in", "out_quantile"):
            out[f"{name}{_key(q)}"] = np.full((n_layers, n_c), np.nan)
    has_span = segment_any(d_in, scores.offsets)  # [n, C]
    for c in range(n_c):
        s = scores.tokens[:, :, cols[c]]  # [L, T]
        pos = labels[:, c]
        if not bool(d_out[:, c].any()):
            continue
        thr = linear_quantiles(s[:, d_out[:, c]].contiguous(), qt)  # [L, Q]
        for j, q in enumerate(qs):
            k = _key(q)
            above = s > thr[:, j : j + 1]  # [L, T]
            out[f"out_quantile{k}"][:, c] = thr[:, j].double().numpy()
            if bool(d_in[:, c].any()):
                out[f"q{k}"][:, c] = above[:, d_in[:, c]].double().mean(1).numpy()
            if bool(pos.any()):
                hit = segment_any(above.T, scores.offsets)  # [n, L]
                out[f"coverage{k}"][:, c] = hit[pos].double().mean(0).numpy()
            spans = has_span[:, c]
            if bool(spans.any()):
                hit_in = segment_any((above & d_in[:, c]).T, scores.offsets)
                out[f"coverage_in{k}"][:, c] = hit_in[spans].double().mean(0).numpy()
    out["support"] = labels.sum(0).numpy()
    out["n_in"] = d_in.sum(0).numpy()
    return out


def separability_summary(
    result: dict[str, Any], weighted: bool = False
) -> dict[str, dict[str, float | None]]:
    """Average over concepts (NaN-aware; support-weighted if ``weighted``) per
    layer, as results.json wants: ``{"<layer>": {"q95", "q99", "coverage99", ...}}``."""
    keys = [k for k in result if k.startswith(("q", "coverage")) and k[-2:].isdigit()]
    w = np.asarray(result["support"], dtype=float) if weighted else None
    summary: dict[str, dict[str, float | None]] = {}
    for i, layer in enumerate(result["layers"]):
        row: dict[str, float | None] = {}
        for k in sorted(keys):
            v = np.asarray(result[k][i], dtype=float)
            ok = ~np.isnan(v)
            if not ok.any():
                row[k] = None
            elif w is not None and w[ok].sum() > 0:
                row[k] = float(np.average(v[ok], weights=w[ok]))
            else:
                row[k] = float(v[ok].mean())
        summary[str(layer)] = row
    return summary
