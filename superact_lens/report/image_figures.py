"""Patch heat maps of an image run: SuperActivator patches over TEST images.

The image counterpart of the report's token heat map: for each concept, the
positive TEST image whose best patch scores highest at the layer the
SuperActivator detector chose, drawn as the model saw it with every content
patch coloured by its score, the patches above the threshold outlined and the
ground-truth mask as a contour (:mod:`superact_lens.plots.patches`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from superact_lens.data.patches import fit_image, fit_mask
from superact_lens.plots._common import finish, new_figure
from superact_lens.plots.patches import draw_patch_overlay, score_grid
from superact_lens.vision.masks import patch_grid_masks

if TYPE_CHECKING:
    from superact_lens.pipeline import Experiment

__all__ = ["best_positive", "image_overlay_data", "save_image_heatmaps"]


def _det(exp: Experiment, kind: str) -> Any:
    return exp.detectors[kind]["superact"]


def _patch_scores(exp: Experiment, kind: str, split: str, pos: int, concept: int) -> np.ndarray:
    """Content-patch scores ``[n_content]`` of the ``pos``-th image of ``split`` for
    ``concept`` at its calibrated layer and column."""
    det = _det(exp, kind)
    scores = (exp.test if split == "test" else exp.cal)[kind].scores
    layer_pos = exp.layers.index(int(det.layer_[concept]))
    return scores.sample(pos)[layer_pos, :, int(det.column_[concept])].numpy()


def best_positive(exp: Experiment, kind: str, concept: int, split: str = "test") -> int | None:
    """Position in ``split`` of the positive image with the highest patch score for
    ``concept`` (None when the split has no positive)."""
    part = (exp.test if split == "test" else exp.cal)[kind]
    positives = [int(i) for i in part.labels[:, concept].nonzero().flatten()]
    if not positives:
        return None

    def peak(i: int) -> float:
        s = _patch_scores(exp, kind, split, i, concept)
        return float(s.max()) if s.size else float("-inf")

    return max(positives, key=peak)


def image_overlay_data(
    exp: Experiment, kind: str, pos: int, concept: int, split: str = "test"
) -> tuple[Image.Image, np.ndarray, float, np.ndarray]:
    """What one overlay draws: the model's view of the image, the patch score grid
    ``[rows, cols]`` (NaN on padding), the threshold and the fitted truth mask ``[T, T]``."""
    ds: Any = exp.dataset
    encoder = exp.lens.image_encoder
    if encoder is None:
        raise TypeError("image_overlay_data: the experiment's model takes text")
    row = int(ds.split_indices(split)[pos])
    _, content = patch_grid_masks(ds, row, encoder)
    grid = score_grid(
        _patch_scores(exp, kind, split, pos, concept), np.argwhere(content), encoder.grid
    )
    view, _ = fit_image(ds.image(row), encoder.image_size, encoder.fit, fill=encoder.fill)
    truth = fit_mask(ds.images.concept_mask(row, concept), encoder.image_size, encoder.fit)
    return view, grid, float(_det(exp, kind).threshold_[concept]), truth


def save_image_heatmaps(exp: Experiment, kind: str, path: str | Path) -> bool:
    """One panel per concept (its best positive TEST image); False if no concept has one."""
    det = _det(exp, kind)
    names = list(exp.dataset.concepts)
    chosen = [(c, best_positive(exp, kind, c)) for c in range(len(names))]
    panels = [(c, pos) for c, pos in chosen if pos is not None]
    if not panels:
        return False
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = new_figure(3.0 * ncols, 3.2 * nrows, ncols=ncols, nrows=nrows)
    for k, (c, pos) in enumerate(panels):
        view, grid, threshold, truth = image_overlay_data(exp, kind, pos, c)
        title = f"{names[c]} · layer {int(det.layer_[c])} · N={float(det.n_[c]):g}%"
        draw_patch_overlay(axes.flat[k], view, grid, threshold, truth, title=title)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_axis_off()
    fig.suptitle(
        f"{kind}: patch scores (red above the threshold), SuperActivators outlined green, "
        "ground truth in white",
        fontsize=8,
    )
    finish(fig, path)
    return True
