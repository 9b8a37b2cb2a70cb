"""Token heat maps for one sample: HTML (notebooks) and PNG (reports).

Scores are coloured on a diverging scale (blue = low, red = high, centred on
0 or on ``threshold``); SuperActivators (score > ``threshold``) are boxed in
green; in-concept tokens (``in_concept``) are underlined.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import TwoSlopeNorm, to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from superact_lens.errors import InputError

from ._common import finish, new_figure

__all__ = ["token_heatmap_html", "token_heatmap_png"]


def _colours(scores: np.ndarray, center: float) -> list[str]:
    if scores.size == 0:
        return []
    lo, hi = float(scores.min()), float(scores.max())
    lo, hi = min(lo, center - 1e-6), max(hi, center + 1e-6)
    norm = TwoSlopeNorm(vcenter=center, vmin=lo, vmax=hi)
    cmap = colormaps["coolwarm"]
    return [to_hex(cmap(norm(s))) for s in scores]


def _check(tokens: Sequence[str], scores: Sequence[float]) -> np.ndarray:
    arr = np.asarray(scores, dtype=float).reshape(-1)
    if len(tokens) != arr.size:
        raise InputError(f"scores must have one value per token ({len(tokens)}), got {arr.size}")
    return arr


def token_heatmap_html(
    tokens: Sequence[str],
    scores: Sequence[float],
    threshold: float | None = None,
    in_concept: Sequence[bool] | None = None,
    title: str = "",
) -> str:
    """An HTML snippet: one coloured ``<span>`` per token, score in the tooltip."""
    arr = _check(tokens, scores)
    center = 0.0 if threshold is None else float(threshold)
    parts = [f"<div style='font-family:monospace;line-height:2'><b>{html.escape(title)}</b><br>"]
    for i, (tok, col) in enumerate(zip(tokens, _colours(arr, center), strict=True)):
        style = f"background:{col};padding:2px 3px;margin:1px;border-radius:3px;"
        if threshold is not None and arr[i] > threshold:
            style += "outline:2px solid #1a9850;"
        if in_concept is not None and in_concept[i]:
            style += "text-decoration:underline;"
        parts.append(f"<span style='{style}' title='{arr[i]:.3f}'>{html.escape(str(tok))}</span>")
    parts.append("</div>")
    return "".join(parts)


def token_heatmap_png(
    tokens: Sequence[str],
    scores: Sequence[float],
    path: str | Path | None = None,
    threshold: float | None = None,
    in_concept: Sequence[bool] | None = None,
    title: str = "",
    per_line: int = 16,
) -> Figure:
    """The same heat map drawn with matplotlib (tokens wrapped ``per_line``)."""
    arr = _check(tokens, scores)
    colours = _colours(arr, 0.0 if threshold is None else float(threshold))
    n_lines = max(1, -(-len(tokens) // per_line))
    fig, ax = new_figure(min(14, 0.8 * per_line), 0.5 + 0.4 * n_lines)
    a = ax[0, 0]
    a.set_axis_off()
    a.set_xlim(0, per_line)
    a.set_ylim(n_lines, 0)
    for i, tok in enumerate(tokens):
        x, y = i % per_line, i // per_line
        edge = "#1a9850" if threshold is not None and arr[i] > threshold else "none"
        a.add_patch(
            Rectangle((x + 0.03, y + 0.1), 0.94, 0.8, facecolor=colours[i], edgecolor=edge, lw=2)
        )
        under = in_concept is not None and bool(in_concept[i])
        a.text(
            x + 0.5,
            y + 0.5,
            str(tok)[:10],
            ha="center",
            va="center",
            fontsize=7,
            fontweight="bold" if under else "normal",
        )
    if title:
        a.set_title(title, fontsize=9)
    return finish(fig, path)
