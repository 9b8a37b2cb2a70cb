"""Metrics agree with scikit-learn; the bootstrap is vectorised and seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from superact_lens.detection import bootstrap_weighted_f1, detection_metrics


def _random(seed: int, n: int = 80, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    labels = torch.rand(n, c, generator=g) < 0.3
    pred = labels ^ (torch.rand(n, c, generator=g) < 0.25)
    labels[:, -1] = False  # a concept absent from the labels
    pred[:, -2] = False  # a concept never predicted
    return pred, labels


@pytest.mark.parametrize("seed", range(4))
def test_metrics_match_sklearn(seed):
    pred, labels = _random(seed)
    m = detection_metrics(pred, labels)
    y, p = labels.numpy().astype(int), pred.numpy().astype(int)
    kw = {"average": None, "zero_division": 0}
    np.testing.assert_allclose(m["f1"], f1_score(y, p, **kw), rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["precision"], precision_score(y, p, **kw), atol=1e-12)
    np.testing.assert_allclose(m["recall"], recall_score(y, p, **kw), atol=1e-12)
    weighted = f1_score(y, p, average="weighted", zero_division=0)
    assert m["weighted_f1"] == pytest.approx(weighted, abs=1e-12)
    np.testing.assert_array_equal(m["support"], y.sum(0))


def test_bootstrap_contains_point_and_is_deterministic():
    pred, labels = _random(0, n=300)
    point = detection_metrics(pred, labels)["weighted_f1"]
    lo, hi = bootstrap_weighted_f1(pred, labels, n_resamples=1000, seed=0)
    assert lo <= point <= hi
    assert hi - lo < 0.2
    assert bootstrap_weighted_f1(pred, labels, n_resamples=1000, seed=0) == (lo, hi)
    assert bootstrap_weighted_f1(pred, labels, n_resamples=1000, seed=1) != (lo, hi)


def test_bootstrap_matches_a_loop_of_resamples():
    pred, labels = _random(1, n=50)
    lo, hi = bootstrap_weighted_f1(pred, labels, n_resamples=300, seed=5)
    gen = torch.Generator().manual_seed(5)
    idx = torch.randint(0, 50, (300, 50), generator=gen)
    vals = [detection_metrics(pred[i], labels[i])["weighted_f1"] for i in idx]
    ref = np.quantile(vals, [0.025, 0.975])
    assert lo == pytest.approx(ref[0], abs=1e-12) and hi == pytest.approx(ref[1], abs=1e-12)


@pytest.mark.parametrize("block", [1, 7 * 50, 300 * 50])
def test_bootstrap_does_not_depend_on_its_block_size(monkeypatch, block):
    """The block bounds memory only: one resample per block, 7 per block or all
    at once give the same interval (the draws come from one generator in order)."""
    from superact_lens.detection import metrics

    pred, labels = _random(2, n=50)
    ref = bootstrap_weighted_f1(pred, labels, n_resamples=300, seed=3)
    monkeypatch.setattr(metrics, "_BOOTSTRAP_BLOCK", block)
    assert bootstrap_weighted_f1(pred, labels, n_resamples=300, seed=3) == ref


def test_bootstrap_float32_counts_equal_float64(monkeypatch):
    """Below 2^24 samples the resampled counts are summed in float32: every partial
    sum is a whole number under 2^24, so the interval is the float64 one exactly."""
    from superact_lens.detection import metrics

    pred, labels = _random(4, n=3000)
    ref = bootstrap_weighted_f1(pred, labels, n_resamples=200, seed=2)
    monkeypatch.setattr(metrics, "_EXACT_FLOAT32", 0)  # float64 from the first sample
    assert bootstrap_weighted_f1(pred, labels, n_resamples=200, seed=2) == ref


def test_metric_errors():
    pred, labels = _random(0)
    with pytest.raises(ValueError, match="pred"):
        detection_metrics(pred[:10], labels)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_weighted_f1(pred, labels, n_resamples=0)
    m = detection_metrics(torch.zeros(0, 2, dtype=torch.bool), torch.zeros(0, 2, dtype=torch.bool))
    assert m["weighted_f1"] == 0.0
