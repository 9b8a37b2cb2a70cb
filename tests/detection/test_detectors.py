"""Detector behaviour: planted signal, persistence, errors, edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from superact_lens.detection import (
    AggregatorDetector,
    BaseDetector,
    FixedNDetector,
    SuperActivatorDetector,
    detection_metrics,
    detection_report,
    load_detector,
)
from superact_lens.scores import TokenScores

from .synth import make_data


def planted(n: int = 200, length: int = 60, seed: int = 0):
    """Concept 0 lights up ONE token strongly in long positive samples; noise elsewhere.
    Mean aggregation dilutes that token 60-fold; max / SuperActivators do not."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, 1, dtype=torch.bool)
    labels[: n // 2, 0] = True
    offsets = torch.arange(n + 1) * length
    tokens = torch.randn(2, n * length, 1, generator=g) * 0.5
    masks = torch.zeros(n * length, 1, dtype=torch.bool)
    for i in range(n // 2):
        t = i * length + int(torch.randint(0, length, (1,), generator=g))
        masks[t, 0] = True
        tokens[1, t, 0] += 4.0  # layer 1 carries the signal
    scores = TokenScores(layers=[0, 6], concepts=["c"], tokens=tokens, offsets=offsets)
    return scores, labels, masks


def test_planted_superact_beats_mean():
    cal, y_cal, m_cal = planted(seed=0)
    test, y_test, _ = planted(seed=1)
    sa = SuperActivatorDetector().fit(cal, y_cal, m_cal)
    mean = AggregatorDetector("mean").fit(cal, y_cal)
    f_sa = detection_metrics(sa.predict(test), y_test)["weighted_f1"]
    f_mean = detection_metrics(mean.predict(test), y_test)["weighted_f1"]
    assert f_sa > 0.95
    assert f_sa > f_mean + 0.2
    assert int(sa.layer_[0]) == 6
    fixed = FixedNDetector(n=1).fit(cal, y_cal)  # one top token per 60-token sample
    assert detection_metrics(fixed.predict(test), y_test)["weighted_f1"] > 0.9


@pytest.mark.parametrize(
    "make",
    [
        lambda: SuperActivatorDetector(n_grid=(2, 10, 50)),
        lambda: SuperActivatorDetector(match_columns=True),
        lambda: FixedNDetector(n=10),
        lambda: AggregatorDetector("random", seed=3),
        lambda: AggregatorDetector("cls", match_columns=True),
    ],
)
def test_save_load_round_trip(tmp_path, make):
    det = make()
    match = det.match_columns
    scores, labels, masks = make_data(n=40, n_cols=5 if match else None, seed=2)
    if isinstance(det, SuperActivatorDetector):
        det.fit(scores, labels, masks)
    else:
        det.fit(scores, labels)
    det.save(tmp_path / "det")
    back = load_detector(tmp_path / "det")
    assert type(back) is type(det)
    assert torch.equal(back.predict(scores), det.predict(scores))
    assert torch.equal(back.decision_function(scores), det.decision_function(scores))
    assert back.summary() == det.summary()
    assert type(det).load(tmp_path / "det").summary() == det.summary()


def test_predict_consistent_with_decision_function_and_empty_samples():
    scores, labels, masks = make_data(n=40, seed=4)
    for det in (
        SuperActivatorDetector().fit(scores, labels, masks),
        AggregatorDetector("mean").fit(scores, labels),
        AggregatorDetector("last").fit(scores, labels),
    ):
        assert torch.equal(det.predict(scores), det.decision_function(scores) > 0)
        assert not det.predict(scores)[0].any()  # sample 0 has no content token
        assert math.isinf(float(det.decision_function(scores)[0, 0]))


def test_out_of_concept_tokens_and_negative_masks_are_ignored():
    """D_in uses only masked tokens of positive samples: a mask set on a
    negative sample, or scores of unmasked tokens in positives, do not move tau."""
    scores, labels, masks = make_data(n=40, seed=6)
    base = SuperActivatorDetector().fit(scores, labels, masks)
    noisy = masks.clone()
    neg_tokens = ~labels[torch.repeat_interleave(torch.arange(40), scores.lengths)]
    noisy |= neg_tokens  # masks on negative samples must be ignored
    other = SuperActivatorDetector().fit(scores, labels, noisy)
    assert torch.equal(base.threshold_, other.threshold_)


def test_concept_without_spans_falls_back_to_max(recwarn):
    scores, labels, masks = make_data(n=40, seed=8)
    masks[:, 1] = False
    det = SuperActivatorDetector().fit(scores, labels, masks)
    assert bool(det.fallback_[1]) and not bool(det.fallback_[0])
    assert det.summary()["col1"]["sparsity"] is None
    assert any("no in-concept cal tokens" in str(w.message) for w in recwarn)
    mx = AggregatorDetector("max").fit(scores, labels)
    assert float(det.threshold_[1]) == float(mx.threshold_[1])


def test_summary_and_report_fields():
    scores, labels, masks = make_data(n=40, seed=9)
    det = SuperActivatorDetector().fit(scores, labels, masks)
    names = ["a", "b", "c"]
    rep = detection_report(det, scores, labels, names, n_resamples=200)
    assert set(rep) == {"weighted_f1", "ci95", "per_concept"}
    assert list(rep["per_concept"]) == names
    for v in rep["per_concept"].values():
        for key in ("f1", "precision", "recall", "layer", "sparsity", "threshold"):
            assert key in v
        assert v["sparsity"] in det.n_grid or v["sparsity"] is None
    agg = AggregatorDetector("max").fit(scores, labels)
    assert all(v["sparsity"] is None for v in agg.summary(names).values())
    assert det.cal_f1_grid_.shape == (3, 3, len(det.n_grid))


def test_errors_name_the_argument():
    scores, labels, masks = make_data(n=20, seed=1)
    with pytest.raises(ValueError, match="labels"):
        SuperActivatorDetector().fit(scores, labels[:5], masks)
    with pytest.raises(ValueError, match="labels"):
        SuperActivatorDetector().fit(scores, labels[:, :2], masks[:, :2])
    with pytest.raises(ValueError, match="token_masks"):
        SuperActivatorDetector().fit(scores, labels, masks[:-1])
    with pytest.raises(TypeError, match="cal"):
        SuperActivatorDetector().fit(scores.tokens, labels, masks)
    with pytest.raises(ValueError, match="n_grid"):
        SuperActivatorDetector(n_grid=(150,)).fit(scores, labels, masks)
    with pytest.raises(ValueError, match="method"):
        AggregatorDetector("median")
    with pytest.raises(ValueError, match="n must"):
        FixedNDetector(n=0)
    with pytest.raises(ValueError, match="not fitted"):
        SuperActivatorDetector().predict(scores)
    no_cls = TokenScores(scores.layers, scores.concepts, scores.tokens, scores.offsets)
    with pytest.raises(ValueError, match="cls"):
        AggregatorDetector("cls").fit(no_cls, labels)
    det = AggregatorDetector("max").fit(scores, labels)
    with pytest.raises(ValueError, match="columns"):
        det.predict(scores.select_concepts([0, 1]))
    with pytest.raises(ValueError, match="config.json"):
        BaseDetector.load("/nonexistent/path")


def test_all_empty_and_no_positive_concepts_do_not_crash():
    offsets = torch.zeros(6, dtype=torch.long)
    scores = TokenScores([0, 1], ["a"], torch.zeros(2, 0, 1), offsets, torch.zeros(2, 5, 1))
    labels = torch.tensor([[True], [False], [True], [False], [False]])
    masks = torch.zeros(0, 1, dtype=torch.bool)
    with pytest.warns(UserWarning):
        det = SuperActivatorDetector().fit(scores, labels, masks)
    assert not det.predict(scores).any()
    for m in ("mean", "last", "random", "max", "cls"):
        AggregatorDetector(m).fit(scores, labels).predict(scores)
    FixedNDetector().fit(scores, labels).predict(scores)
    scores2, labels2, masks2 = make_data(n=20, seed=3)
    labels2[:, 2] = False
    with pytest.warns(UserWarning, match="no in-concept cal tokens"):
        det2 = SuperActivatorDetector().fit(scores2, labels2, masks2 & labels2[0])
    assert float(det2.cal_f1_[2]) == 0.0


def test_token_masks_may_be_a_list_per_sample():
    scores, labels, masks = make_data(n=30, seed=12)
    per_sample = [masks[scores.offsets[i] : scores.offsets[i + 1]] for i in range(30)]
    a = SuperActivatorDetector().fit(scores, labels, masks)
    b = SuperActivatorDetector().fit(scores, labels, per_sample)
    assert torch.equal(a.threshold_, b.threshold_)


def test_fit_and_evaluate_all_methods():
    from superact_lens.detection import METHODS, evaluate_detectors, fit_detectors

    scores, labels, masks = make_data(n=40, seed=13)
    dets = fit_detectors(scores, labels, masks, n_grid=(2, 10, 50))
    assert list(dets) == list(METHODS)
    res = evaluate_detectors(dets, scores, labels, ["a", "b", "c"], n_resamples=100)
    assert res["superact"]["per_concept"]["a"]["sparsity"] in (2.0, 10.0, 50.0)
    assert res["mean"]["per_concept"]["a"]["sparsity"] is None
    no_cls = TokenScores(scores.layers, scores.concepts, scores.tokens, scores.offsets)
    with pytest.warns(UserWarning, match="cls"):
        assert "cls" not in fit_detectors(no_cls, labels, masks, methods=("cls", "max"))
    with pytest.raises(ValueError, match="methods"):
        fit_detectors(scores, labels, masks, methods=("median",))
