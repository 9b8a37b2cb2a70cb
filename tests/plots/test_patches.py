"""Patch overlays over images: score grids, PNG output, bad shapes named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from superact_lens.errors import InputError, InputTypeError
from superact_lens.plots.patches import patch_overlay_png, patch_overlay_png_bytes, score_grid

PNG = b"\x89PNG\r\n\x1a\n"


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_score_grid_places_every_score_and_leaves_the_rest_nan(rows, cols, data):
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    chosen = data.draw(st.lists(st.sampled_from(cells), unique=True))
    values = [float(k) for k in range(len(chosen))]
    grid = score_grid(values, chosen, (rows, cols))
    assert grid.shape == (rows, cols)
    assert [grid[r, c] for r, c in chosen] == values
    assert int(np.isfinite(grid).sum()) == len(chosen)


def test_overlay_png_and_bytes(tmp_path):
    image = Image.fromarray(np.full((32, 32, 3), 120, np.uint8))
    grid = np.arange(16, dtype=float).reshape(4, 4)
    grid[0, 0] = np.nan  # a padding patch
    truth = np.zeros((32, 32), bool)
    truth[8:20, 8:20] = True
    path = tmp_path / "sub" / "overlay.png"
    patch_overlay_png(image, grid, path, threshold=10.0, truth=truth, title="x")
    assert path.read_bytes()[:8] == PNG
    assert patch_overlay_png_bytes(image, grid, threshold=None)[:8] == PNG


def test_overlay_refuses_bad_shapes():
    image = Image.fromarray(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="does not tile"):
        patch_overlay_png(image, np.zeros((5, 5)))
    with pytest.raises(InputError, match="truth"):
        patch_overlay_png(image, np.zeros((4, 4)), truth=np.zeros((8, 8), bool))
    with pytest.raises(InputTypeError, match="image"):
        patch_overlay_png(np.zeros((32, 32)), np.zeros((4, 4)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="outside"):
        score_grid([1.0], [(4, 0)], (4, 4))
    with pytest.raises(InputError, match="scores"):
        score_grid([1.0, 2.0], [(0, 0)], (4, 4))
