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

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor

from superact_lens.detection.calibration import linear_quantiles
from superact_lens.detection.segments import segment_any
from superact_lens.errors import InputError, InputTypeError
from superact_lens.scores import TokenScores
from superact_lens.stats.select import streamed_quantiles

from ._common import check_with_masks, in_out_masks

__all__ = ["separability", "separability_chunks", "separability_summary"]


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


Parts = Callable[[], Iterable[tuple[TokenScores, Tensor, Tensor]]]


def separability_chunks(
    chunks: Parts,
    qs: Sequence[float] = (0.95, 0.99),
    columns: Sequence[int] | Tensor | None = None,
) -> dict[str, Any]:
    """:func:`separability` of a split read in parts, without holding its tokens.

    ``chunks()`` returns a fresh iterable over ``(scores, labels [n_j, C],
    token_masks [T_j, C])``, the split's samples in parts (whole samples, any
    order); the result equals ``separability`` on the concatenation, same keys,
    arrays equal with NaN in the same places. The D_out thresholds are exact
    (:func:`superact_lens.stats.streamed_quantiles` over rows ``(concept,
    layer)``), then one more read counts, per layer and concept, D_in tokens
    above them and the positive samples with a token above them.

    Calls ``chunks()`` 5 times for float32 scores: once to read the first part
    (layers, concepts), 3 times for the quantiles (11/11/10 key bits), once to
    count (8 times for float64: 6 quantile reads). Memory: a few times one
    part's ``[L, T_j, C]`` scores, plus ``L * C * Q * 2**11`` int64 histogram
    counts and ``O(L * C * Q)`` counters -- nothing grows with the number of
    samples or tokens of the split.
    """
    if not qs or any(not 0.0 < float(q) < 1.0 for q in qs):
        raise InputError(f"qs must be quantile levels in (0, 1), got {list(qs)}")
    first = next(iter(_parts(chunks, columns, None)), None)
    if first is None:
        raise InputError("chunks: yielded no part (separability needs the split's samples)")
    layers, n_c = first[0].layers, first[1].shape[1]
    n_layers, n_q = len(layers), len(qs)

    def out_scores() -> Iterable[tuple[Tensor, Tensor]]:
        for scores, _labels, cols, _d_in, d_out in _parts(chunks, columns, layers):
            s = scores.tokens[:, :, cols].permute(2, 0, 1)  # [C, L, T_j]
            keep = d_out.T.unsqueeze(1).expand_as(s)
            yield s.reshape(n_c * n_layers, -1), keep.reshape(n_c * n_layers, -1)

    qt = torch.tensor([float(q) for q in qs])  # as separability: float32 levels, cast to the scores
    thr = streamed_quantiles(out_scores, n_c * n_layers, qt).view(n_c, n_layers, n_q)
    thr = thr.permute(1, 2, 0)  # [L, Q, C]

    n_in_above = torch.zeros(n_layers, n_q, n_c, dtype=torch.long)
    pos_hit = torch.zeros_like(n_in_above)
    span_hit = torch.zeros_like(n_in_above)
    support = torch.zeros(n_c, dtype=torch.long)
    n_in = torch.zeros_like(support)
    n_out = torch.zeros_like(support)
    n_spans = torch.zeros_like(support)
    for scores, labels, cols, d_in, d_out in _parts(chunks, columns, layers):
        s = scores.tokens[:, :, cols]  # [L, T_j, C]
        support += labels.sum(0)
        n_in += d_in.sum(0)
        n_out += d_out.sum(0)
        n_spans += segment_any(d_in, scores.offsets).sum(0)
        for j in range(n_q):
            above = s > thr[:, j].unsqueeze(1)  # [L, T_j, C]
            in_above = above & d_in
            n_in_above[:, j] += in_above.sum(1)
            hit = segment_any(above.transpose(0, 1), scores.offsets)  # [n_j, L, C]
            pos_hit[:, j] += (hit & labels.unsqueeze(1)).sum(0)
            span_hit[:, j] += segment_any(in_above.transpose(0, 1), scores.offsets).sum(0)

    out: dict[str, Any] = {"layers": list(layers)}
    for j, q in enumerate(qs):
        k = _key(q)
        has_out = n_out > 0  # concepts without D_out keep NaN everywhere, as in separability
        columns_of = {  # the mean of 0/1 flags in separability is exactly count / n
            f"q{k}": (n_in_above[:, j].double() / n_in, has_out & (n_in > 0)),
            f"coverage{k}": (pos_hit[:, j].double() / support, has_out & (support > 0)),
            f"coverage_in{k}": (span_hit[:, j].double() / n_spans, has_out & (n_spans > 0)),
            f"out_quantile{k}": (thr[:, j].double(), has_out),
        }
        for name, (value, ok) in columns_of.items():
            arr = np.full((n_layers, n_c), np.nan)
            arr[:, ok.numpy()] = value[:, ok].numpy()
            out[name] = arr
    out["support"] = support.numpy()
    out["n_in"] = n_in.numpy()
    return out


def _parts(
    chunks: Parts, columns: Sequence[int] | Tensor | None, layers: list[int] | None
) -> Iterable[tuple[TokenScores, Tensor, list[int], Tensor, Tensor]]:
    """Validated parts with their columns and D_in / D_out token masks ``[T_j, C]``."""
    if not callable(chunks):
        raise InputTypeError(
            f"chunks: expected a callable returning parts, got {type(chunks).__name__}"
        )
    n_c = None
    for i, part in enumerate(chunks()):
        if not isinstance(part, tuple) or len(part) != 3:
            raise InputTypeError(f"chunks: part {i} must be a (scores, labels, token_masks) triple")
        labels, token_masks, cols = check_with_masks(*part, columns)
        scores = part[0]
        if layers is not None and list(scores.layers) != list(layers):
            raise InputError(
                f"chunks: part {i} has layers {scores.layers}, the first part {layers}"
            )
        if n_c is not None and labels.shape[1] != n_c:
            raise InputError(
                f"chunks: part {i} has {labels.shape[1]} concepts, the first part {n_c}"
            )
        n_c = labels.shape[1]
        d_in, d_out, _ = in_out_masks(scores, labels, token_masks)
        yield scores, labels, cols, d_in, d_out


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
