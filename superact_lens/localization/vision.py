"""Localisation on image patches: ground-truth patch masks and patch-grid heat maps.

The attribution unit of an image is a content patch (letterbox padding excluded,
like padding tokens); the methods, targets and metrics are those of text
(:mod:`.forward` perturbs the patch embeddings). What differs is here:

* :func:`image_cases_masks`: per test image, the in-concept flags of its content
  patches (a patch is in-concept when at least half of its pixels are,
  :mod:`superact_lens.data.patches`), and which positive images locate their
  concept at all. A positive image without a mask says "present, location
  unknown": it has no ground truth to score a map against, so it is left out;
  a dataset where no positive test image has a mask is refused.
* :func:`save_patch_heatmaps`: per kept case, the image as the model sees it, with
  the ground truth and the SuperActivator patches, then every method's map for
  the global and the local target side by side, drawn as patch-grid overlays
  (:mod:`superact_lens.plots.patches`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from PIL import Image
from torch import Tensor

from superact_lens.data.patches import fit_image, fit_mask
from superact_lens.errors import InputError
from superact_lens.plots._common import finish, new_figure
from superact_lens.plots.patches import draw_patch_overlay, score_grid
from superact_lens.vision.masks import patch_grid_masks

from .evaluate import LocalizationCase, local_minus_global
from .methods import METHOD_LABELS

__all__ = [
    "IMAGE_BASELINE",
    "by_concept",
    "image_cases_masks",
    "interleave_concepts",
    "save_patch_heatmaps",
]

IMAGE_BASELINE = (
    "the mean-colour patch (the patch embedding of normalised pixel values 0, the "
    "processor's mean colour, which letterbox padding is filled with) in place of each "
    "removed content patch; [CLS] and position embeddings still added"
)


def image_cases_masks(
    lens: Any, dataset: Any, rows: list[int], where: str = "--dataset"
) -> tuple[dict[int, Bool[Tensor, "n_content C"]], np.ndarray]:
    """``(masks, located)`` of an image dataset's ``rows`` as ``lens`` sees them.

    ``masks[row]``: ``bool [n_content, C]``, the in-concept flags of the row's
    content patches in stream order. ``located``: ``bool [n, C]``, the labels with
    every positive that has no mask for its concept turned off (nothing to score a
    map against). Raises :class:`InputError` when no row of ``rows`` is located.
    """
    encoder = lens.image_encoder
    if encoder is None:
        raise InputError(f"{where}: holds images but the model takes text")
    images = dataset.images
    located = np.asarray(dataset.labels, dtype=bool).copy()
    masks: dict[int, Tensor] = {}
    for r in rows:
        for c in np.flatnonzero(located[r]):
            located[r, c] = images.has_mask(r, int(c))
        in_concept, content = patch_grid_masks(dataset, r, encoder)
        masks[r] = torch.from_numpy(np.ascontiguousarray(in_concept[:, content].T))
    if not located[rows].any():
        raise InputError(
            f"{where}: no positive test image has a concept mask "
            "(masks/<image stem>/<concept>.png), so there is no ground truth to localise "
            "against"
        )
    return masks, located


def interleave_concepts(cases: list[LocalizationCase]) -> list[LocalizationCase]:
    """The cases in rounds, one per concept per round (concept order kept within a round),
    so the first few, whose maps are drawn, span the concepts instead of the first one."""
    by_concept: dict[int, list[LocalizationCase]] = {}
    for case in cases:
        by_concept.setdefault(case.concept, []).append(case)
    rounds = max((len(v) for v in by_concept.values()), default=0)
    return [v[i] for i in range(rounds) for v in by_concept.values() if i < len(v)]


def by_concept(
    localizer: Any, cases: list[LocalizationCase], n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per concept: its layer, pairs, SuperActivator patches per image and the share of
    them on the concept (the local target is their mean), and the paired local - global
    differences over its pairs (:func:`.evaluate.local_minus_global`)."""
    detector = localizer.detector
    out: dict[str, dict[str, Any]] = {}
    for c in sorted({case.concept for case in cases}):
        chosen = [case for case in cases if case.concept == c]
        n_sa, on = 0, 0
        for case in chosen:
            _, sa = localizer.problem(case.text, c)
            n_sa += int(sa.sum())
            on += int((sa.cpu() & case.mask).sum())
        out[detector.concepts[c]] = {
            "layer": detector.layer_of(c),
            "n_cases": len(chosen),
            "superactivators": n_sa / len(chosen),
            "superactivators_on_concept": on / max(n_sa, 1),
            "in_concept_units": float(np.mean([float(case.mask.sum()) for case in chosen])),
            "local_minus_global": local_minus_global(chosen, n_bootstrap, seed),
        }
    return out


def _view(dataset: Any, row: int, c: int, encoder: Any, scale: int):
    """The image as the model sees it and its fitted concept mask, both ``scale`` x larger."""
    t = encoder.image_size
    view, _ = fit_image(dataset.image(row), t, encoder.fit, fill=encoder.fill)
    truth = fit_mask(dataset.images.concept_mask(row, c), t, encoder.fit)
    view = view.resize((t * scale, t * scale), Image.Resampling.NEAREST)
    return view, np.kron(truth, np.ones((scale, scale), dtype=bool))


def _scaled(values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    peak = np.abs(arr).max() if arr.size else 0.0
    return arr / peak if peak > 0 else arr


def save_patch_heatmaps(
    cases: list[LocalizationCase],
    dataset: Any,
    lens: Any,
    concepts: list[str],
    out: Path,
    limit: int = 4,
) -> list[str]:
    """One PNG per case with kept maps (at most ``limit``); returns the paths.

    Columns: ground truth (top; in-concept patches red, the pixel mask as a white
    contour) and SuperActivator patches (bottom; outlined green), then one column
    per method, its global-target map on top and its local-target map below, each
    scaled by its largest absolute value (red positive, blue negative).
    """
    encoder = lens.image_encoder
    scale = max(1, 240 // encoder.image_size)
    paths = []
    for case in [c for c in cases if c.maps][:limit]:
        _, content = patch_grid_masks(dataset, case.row, encoder)
        patches = np.argwhere(content)
        view, truth = _view(dataset, case.row, case.concept, encoder, scale)
        methods = list(dict.fromkeys(m for per in case.maps.values() for m in per))
        fig, axes = new_figure(2.3 * (1 + len(methods)), 5.0, nrows=2, ncols=1 + len(methods))

        def draw(ax, values, title, threshold=None, patches=patches, view=view, truth=truth):
            grid = score_grid(values, patches, encoder.grid)
            draw_patch_overlay(ax, view, grid, threshold, truth, title=title)

        draw(axes[0, 0], case.mask.float().numpy(), "ground truth", 0.5)
        draw(axes[1, 0], np.asarray(case.superactivators, dtype=float), "SuperActivators", 0.5)
        for j, method in enumerate(methods, start=1):
            for i, target in enumerate(("global", "local")):
                values = case.maps.get(target, {}).get(method)
                if values is None:
                    axes[i, j].set_axis_off()
                    continue
                label = "SuperActivator" if target == "local" else "global"
                draw(axes[i, j], _scaled(values), f"{METHOD_LABELS.get(method, method)}\n{label}")
        fig.suptitle(
            f"row {case.row}: {concepts[case.concept]} (top: global target, bottom: local; "
            "ground truth in white)",
            fontsize=9,
        )
        name = f"localize_row{case.row}_{concepts[case.concept]}".replace("/", "_")
        path = out / f"{name}.png"
        finish(fig, path)
        paths.append(str(path))
    return paths
