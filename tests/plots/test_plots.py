"""Every figure renders to a PNG; token heat maps render to HTML and PNG."""

from __future__ import annotations

import pytest

from superact_lens.plots import (
    token_heatmap_html,
    token_heatmap_png,
)
from tests.detection.synth import make_data

PNG = b"\x89PNG"


def test_token_heatmaps(tmp_path):
    tokens = ["The", "<cat>", "sat", "&", "purred"]
    scores = [0.1, 2.5, -0.3, 0.0, 1.9]
    html = token_heatmap_html(tokens, scores, threshold=1.0, in_concept=[0, 1, 0, 0, 1])
    assert html.count("<span") == 5
    assert "&lt;cat&gt;" in html and "&amp;" in html
    assert html.count("outline") == 2  # two SuperActivators
    token_heatmap_png(tokens, scores, tmp_path / "h.png", threshold=1.0)
    assert (tmp_path / "h.png").read_bytes()[:4] == PNG
    with pytest.raises(ValueError, match="scores"):
        token_heatmap_html(tokens, scores[:2])
    assert "<span" not in token_heatmap_html([], [])


def test_save_report_figures(tmp_path):
    """All eight SPEC §5 figures (every plot_* function) render to PNG."""
    from superact_lens.detection import fit_detectors
    from superact_lens.plots import save_report_figures

    scores, labels, masks = make_data(n=40, seed=4, round_to=None)
    dets = fit_detectors(scores, labels, masks, methods=("superact", "max"), n_grid=(2, 10))
    out = save_report_figures(tmp_path, dets, scores, labels, masks, ["a", "b", "c"], "gt_")
    assert len(out["figures"]) == 8
    for p in out["figures"].values():
        assert p.read_bytes()[:4] == PNG and p.name.startswith("gt_")
    assert set(out["separability"]) == {"0", "1", "2"}
