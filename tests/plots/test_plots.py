"""Every figure renders to a PNG; token heat maps render to HTML and PNG."""

from __future__ import annotations

import pytest

from superact_lens.analysis import (
    activation_distributions,
    best_layer_histogram,
    best_n_histogram,
    f1_by_depth,
    f1_vs_n,
    separability,
    superactivator_positions,
    superactivator_ratio,
)
from superact_lens.detection import AggregatorDetector, SuperActivatorDetector
from superact_lens.plots import (
    plot_best_layer,
    plot_best_n,
    plot_distributions,
    plot_f1_by_depth,
    plot_f1_vs_n,
    plot_sa_positions,
    plot_sa_ratio_cdf,
    plot_separability,
    token_heatmap_html,
    token_heatmap_png,
)
from tests.detection.synth import make_data

PNG = b"\x89PNG"


def test_all_figures_write_png(tmp_path):
    scores, labels, masks = make_data(n=50, seed=3, round_to=None)
    det = SuperActivatorDetector().fit(scores, labels, masks)
    dets = {"superact": det, "mean": AggregatorDetector("mean").fit(scores, labels)}
    figures = {
        "sep": lambda p: plot_separability(separability(scores, labels, masks), p),
        "dist": lambda p: plot_distributions(activation_distributions(scores, labels, masks, 0), p),
        "f1n": lambda p: plot_f1_vs_n(f1_vs_n(det, scores, labels), p, names=["a", "b", "c"]),
        "bestn": lambda p: plot_best_n(best_n_histogram(det), p),
        "bestl": lambda p: plot_best_layer(best_layer_histogram(det), p),
        "ratio": lambda p: plot_sa_ratio_cdf(superactivator_ratio(det, scores, labels, masks), p),
        "pos": lambda p: plot_sa_positions(superactivator_positions(det, scores, labels), p),
        "depth": lambda p: plot_f1_by_depth(f1_by_depth(dets, scores, labels), p, ["a", "b", "c"]),
    }
    for name, draw in figures.items():
        path = tmp_path / "figs" / f"{name}.png"
        draw(path)
        assert path.read_bytes()[:4] == PNG, name


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
