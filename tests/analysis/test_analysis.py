"""Analyses agree with plain loops and with the detectors they read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from superact_lens.analysis import (
    activation_distributions,
    best_layer_histogram,
    best_n_histogram,
    ecdf,
    f1_by_depth,
    f1_vs_n,
    separability,
    separability_summary,
    superactivator_positions,
    superactivator_ratio,
)
from superact_lens.detection import AggregatorDetector, FixedNDetector, SuperActivatorDetector
from tests.detection.synth import make_data


@pytest.fixture(scope="module")
def data():
    scores, labels, masks = make_data(
        n=60, n_layers=3, n_concepts=3, max_len=10, seed=11, round_to=None
    )
    det = SuperActivatorDetector().fit(scores, labels, masks)
    return scores, labels, masks, det


def test_separability_matches_loop(data):
    scores, labels, masks, _ = data
    sep = separability(scores, labels, masks)
    assert sep["q95"].shape == (3, 3)
    seg = torch.repeat_interleave(torch.arange(scores.n_samples), scores.lengths)
    for c in range(3):
        for layer in range(3):
            s = scores.tokens[layer, :, c]
            d_out = s[~labels[seg, c]].double().numpy()
            d_in = s[masks[:, c] & labels[seg, c]].double().numpy()
            q99 = float(torch.quantile(s[~labels[seg, c]], 0.99))
            assert sep["out_quantile99"][layer, c] == pytest.approx(q99)
            assert sep["q99"][layer, c] == pytest.approx(np.mean(d_in > q99))
            assert d_out.size and d_in.size
            hits = []
            for i in range(scores.n_samples):
                if labels[i, c]:
                    hits.append(bool((scores.sample(i)[layer, :, c] > q99).any()))
            assert sep["coverage99"][layer, c] == pytest.approx(np.mean(hits))
    summary = separability_summary(sep)
    assert set(summary) == {"0", "1", "2"}
    assert {"q95", "q99", "coverage99"} <= set(summary["0"])


def test_distributions_are_densities(data):
    scores, labels, masks, _ = data
    dist = activation_distributions(scores, labels, masks, concept=0, bins=20)
    widths = np.diff(dist["edges"], axis=1)
    np.testing.assert_allclose((dist["in_density"] * widths).sum(1), 1.0)
    np.testing.assert_allclose((dist["out_density"] * widths).sum(1), 1.0)
    with pytest.raises(ValueError, match="concept"):
        activation_distributions(scores, labels, masks, concept=9)


def test_f1_vs_n_on_cal_reproduces_the_grid(data):
    scores, labels, _, det = data
    grid = f1_vs_n(det)
    again = f1_vs_n(det, scores, labels)
    np.testing.assert_allclose(grid["f1"], again["f1"])
    assert grid["f1"].shape == (3, len(det.n_grid))


def test_histograms_count_concepts(data):
    _, _, _, det = data
    h = best_n_histogram(det)
    assert h["overall"].sum() == int((~det.fallback_).sum())
    assert (h["per_layer"].sum(1) == 3).all()
    assert best_layer_histogram(det)["counts"].sum() == 3


def test_sa_ratio_and_positions_match_loop(data):
    scores, labels, masks, det = data
    ratio = superactivator_ratio(det, scores, labels, masks)
    pos = superactivator_positions(det, scores, labels)
    for c in range(3):
        expected, n_sa_pos = [], 0
        layer, thr = int(det.layer_index_[c]), float(det.threshold_[c])
        for i in range(scores.n_samples):
            if not labels[i, c]:
                continue
            s = scores.sample(i)[layer, :, c]
            m = masks[scores.offsets[i] : scores.offsets[i + 1], c]
            n_sa_pos += int((s > thr).sum())
            if m.any():
                expected.append(float((s > thr).sum()) / float(m.sum()))
        np.testing.assert_allclose(ratio["ratios"][c], expected)
        assert len(pos["per_concept"][c][0]) == n_sa_pos
    assert ((pos["relative"] >= 0) & (pos["relative"] <= 1)).all()
    x, y = ecdf(ratio["all"])
    assert y[-1] == 1.0 and (np.diff(x) >= 0).all()


def test_f1_by_depth_agrees_with_the_chosen_layer(data):
    scores, labels, masks, det = data
    dets = {
        "superact": det,
        "superact_fixed": FixedNDetector(n=20).fit(scores, labels),
        "mean": AggregatorDetector("mean").fit(scores, labels),
        "max": AggregatorDetector("max").fit(scores, labels),
    }
    depth = f1_by_depth(dets, scores, labels)
    assert depth["matrix"].shape == (4, 3)
    for name, d in dets.items():
        per_layer = d.predict_layers(scores)
        chosen = d.predict(scores)
        for c in range(3):
            assert torch.equal(per_layer[int(d.layer_index_[c]), :, c], chosen[:, c])
            assert depth["per_concept"][name][c, int(d.layer_index_[c])] == pytest.approx(
                float(d.cal_f1_[c])
            )


def test_analysis_errors(data):
    scores, labels, masks, det = data
    with pytest.raises(ValueError, match="labels"):
        separability(scores, labels[:3], masks)
    with pytest.raises(ValueError, match="qs"):
        separability(scores, labels, masks, qs=(1.5,))
    with pytest.raises(TypeError, match="detector"):
        f1_vs_n(AggregatorDetector("max").fit(scores, labels))
    with pytest.raises(ValueError, match="columns"):
        separability(scores, labels[:, :2], masks[:, :2])
    sep = separability(scores, labels[:, :2], masks[:, :2], columns=[2, 0])
    assert sep["q99"].shape == (3, 2)
