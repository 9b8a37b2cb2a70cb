"""Patch heat maps over an image: the image counterpart of the token heat map.

The image is drawn as the model sees it (fitted to its ``T x T`` input), each
content patch coloured by its concept score on a diverging scale centred on the
threshold (blue below, red above, as :mod:`.heatmap`), SuperActivator patches
(score > threshold) outlined in green, and, when given, the ground-truth concept
mask drawn as a white contour. Padding patches (letterbox) stay uncoloured.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from superact_lens.errors import InputError, InputTypeError

from ._common import finish, new_figure

__all__ = ["draw_patch_overlay", "patch_overlay_png", "patch_overlay_png_bytes", "score_grid"]


def score_grid(
    values: Sequence[float] | np.ndarray,
    patches: Sequence[Sequence[int]] | np.ndarray,
    grid: tuple[int, int],
) -> Float[np.ndarray, "rows cols"]:
    """Scores of the content patches ``values[k]`` at ``patches[k] = (row, col)`` on a
    ``rows x cols`` grid; patches without a score (padding) are NaN."""
    rows, cols = int(grid[0]), int(grid[1])
    out = np.full((rows, cols), np.nan)
    vals = np.asarray(values, dtype=float).reshape(-1)
    rc = np.asarray(patches, dtype=int).reshape(-1, 2)
    if len(vals) != len(rc):
        raise InputError(f"values: {len(vals)} scores for {len(rc)} patches")
    if len(rc) and (rc.min() < 0 or rc[:, 0].max() >= rows or rc[:, 1].max() >= cols):
        raise InputError(f"patches: a (row, col) lies outside the {rows}x{cols} grid")
    out[rc[:, 0], rc[:, 1]] = vals
    return out


def _check(image: Image.Image, scores: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    if not isinstance(image, Image.Image):
        raise InputTypeError(f"image: expected a PIL image, got {type(image).__name__}")
    grid = np.asarray(scores, dtype=float)
    if grid.ndim != 2:
        raise InputError(f"scores: expected a [rows, cols] grid, got shape {grid.shape}")
    if image.width % grid.shape[1] or image.height % grid.shape[0]:
        raise InputError(
            f"scores: a {grid.shape[0]}x{grid.shape[1]} grid does not tile a "
            f"{image.width}x{image.height} image"
        )
    if truth is not None and np.asarray(truth).shape != (image.height, image.width):
        raise InputError(
            f"truth: expected a [{image.height}, {image.width}] mask, got {np.asarray(truth).shape}"
        )
    return grid


def draw_patch_overlay(
    ax: Axes,
    image: Image.Image,
    scores: Float[np.ndarray, "rows cols"],
    threshold: float | None = None,
    truth: Bool[np.ndarray, "H W"] | None = None,
    alpha: float = 0.55,
    title: str = "",
) -> None:
    """Draw the overlay on ``ax`` (see the module docstring); ``image`` is the model's
    ``T x T`` view, ``scores`` the patch grid (NaN = no score)."""
    grid = _check(image, scores, truth)
    width, height = image.size
    ph, pw = height / grid.shape[0], width / grid.shape[1]
    ax.imshow(np.asarray(image.convert("RGB")), extent=(0, width, height, 0))
    finite = grid[np.isfinite(grid)]
    center = 0.0 if threshold is None else float(threshold)
    if finite.size:
        lo, hi = min(float(finite.min()), center - 1e-6), max(float(finite.max()), center + 1e-6)
        norm = TwoSlopeNorm(vcenter=center, vmin=lo, vmax=hi)
        shown = np.ma.masked_invalid(grid)
        ax.imshow(
            shown,
            cmap="coolwarm",
            norm=norm,
            alpha=alpha,
            extent=(0, width, height, 0),
            interpolation="nearest",
        )
    if threshold is not None:
        for r, c in np.argwhere(np.isfinite(grid) & (grid > threshold)):
            ax.add_patch(
                Rectangle(
                    (c * pw, r * ph), pw, ph, fill=False, edgecolor="#1a9850", lw=2.0, zorder=3
                )
            )
    if truth is not None and np.asarray(truth).any():
        mask = np.asarray(truth, dtype=float)  # pixel (r, c) centred at (c + 0.5, r + 0.5)
        xs, ys = np.arange(mask.shape[1]) + 0.5, np.arange(mask.shape[0]) + 0.5
        ax.contour(xs, ys, mask, levels=[0.5], colors="white", linewidths=1.2)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)


def _figure(image, scores, threshold, truth, title, inches) -> Figure:
    fig, axes = new_figure(inches, inches + (0.3 if title else 0.0))
    draw_patch_overlay(axes[0, 0], image, scores, threshold, truth, title=title)
    return fig


def patch_overlay_png(
    image: Image.Image,
    scores: Float[np.ndarray, "rows cols"],
    path: str | Path | None = None,
    threshold: float | None = None,
    truth: Bool[np.ndarray, "H W"] | None = None,
    title: str = "",
    inches: float = 4.0,
) -> Figure:
    """The overlay as a matplotlib figure, saved as PNG at ``path`` when given."""
    return finish(_figure(image, scores, threshold, truth, title, inches), path)


def patch_overlay_png_bytes(
    image: Image.Image,
    scores: Float[np.ndarray, "rows cols"],
    threshold: float | None = None,
    truth: Bool[np.ndarray, "H W"] | None = None,
    title: str = "",
    inches: float = 2.4,
    dpi: int = 80,
) -> bytes:
    """The overlay as PNG bytes (small, for inline ``data:`` images on an HTML page)."""
    fig = _figure(image, scores, threshold, truth, title, inches)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    return buf.getvalue()
