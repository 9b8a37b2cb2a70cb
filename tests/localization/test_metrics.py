"""Accuracy and faithfulness metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.localization.metrics import (
    auroc,
    best_f1,
    bootstrap_mean,
    curve_area,
    curve_steps,
    insertion_deletion,
    ranking_masks,
)


class LinearProblem:
    """``f(keep) = keep . w``: inserting token t adds ``w_t``; the curves are known."""

    def __init__(self, w):
        self.w = torch.as_tensor(w, dtype=torch.float64)

    def f_keep(self, keep):
        return keep.double() @ self.w


def test_areas_of_a_known_curve():
    # w = (3, 2, 1, 0) inserted best first: f = 0, 3, 5, 6, 6 at fractions 0, 1/4, ..., 1
    curves = insertion_deletion(LinearProblem([0.0, 1.0, 3.0, 2.0]), torch.tensor([0, 1, 3, 2.0]))
    assert curves["insertion_curve"] == [0.0, 3.0, 5.0, 6.0, 6.0]
    assert curves["deletion_curve"] == [6.0, 3.0, 1.0, 0.0, 0.0]
    assert curves["insertion"] == pytest.approx((0 + 2 * (3 + 5 + 6) + 6) / 8)
    assert curves["deletion"] == pytest.approx((6 + 2 * (3 + 1 + 0) + 0) / 8)


def test_a_better_ranking_has_more_insertion_and_less_deletion():
    problem = LinearProblem([0.0, 1.0, 3.0, 2.0])
    good = insertion_deletion(problem, torch.tensor([0, 1, 3, 2.0]))
    bad = insertion_deletion(problem, torch.tensor([3, 2, 0, 1.0]))
    assert good["insertion"] > bad["insertion"]
    assert good["deletion"] < bad["deletion"]


def test_curve_area_of_a_line_and_ties_keep_position_order():
    assert curve_area(torch.linspace(0, 1, 11)) == pytest.approx(0.5)
    assert ranking_masks(torch.tensor([1.0, 1.0, 2.0])).tolist() == [
        [0, 0, 0],
        [0, 0, 1],
        [1, 0, 1],
        [1, 1, 1],
    ]


def test_auroc_and_best_f1_known_values():
    mask = torch.tensor([True, False, True, False])
    assert auroc(torch.tensor([0.9, 0.1, 0.8, 0.2]), mask) == 1.0
    assert auroc(torch.tensor([0.1, 0.9, 0.2, 0.8]), mask) == 0.0
    assert auroc(torch.ones(4), mask) == 0.5
    assert best_f1(torch.tensor([0.9, 0.1, 0.8, 0.2]), mask) == 1.0
    # best: threshold 0.5 keeps {0, 1, 2}: tp 2, f1 = 4 / (3 + 2)
    assert best_f1(torch.tensor([0.9, 0.7, 0.5, 0.2]), mask) == pytest.approx(0.8)
    assert np.isnan(auroc(torch.ones(3), torch.ones(3, dtype=torch.bool)))
    assert np.isnan(best_f1(torch.ones(3), torch.zeros(3, dtype=torch.bool)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.booleans()), min_size=2, max_size=20))
def test_auroc_matches_sklearn_and_flips(pairs):
    from sklearn.metrics import roc_auc_score

    scores = torch.tensor([float(s) for s, _ in pairs])
    mask = torch.tensor([m for _, m in pairs])
    if mask.all() or not mask.any():
        return
    assert auroc(scores, mask) == pytest.approx(roc_auc_score(mask.numpy(), scores.numpy()))
    assert auroc(scores, mask) + auroc(-scores, mask) == pytest.approx(1.0)


def test_bootstrap_mean_skips_nan_and_brackets_the_mean():
    stat = bootstrap_mean([1.0, 2.0, float("nan"), 3.0, 4.0], n_resamples=500)
    assert stat["n"] == 4
    assert stat["mean"] == 2.5
    assert stat["lo"] <= 2.5 <= stat["hi"]
    assert bootstrap_mean([float("nan")])["n"] == 0


def test_curves_on_a_grid_of_fractions():
    problem = LinearProblem([1.0] * 10)  # f = number of tokens kept
    curves = insertion_deletion(problem, torch.arange(10.0), n_points=6)
    assert curves["fractions"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert curves["insertion_curve"] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert curves["insertion"] == pytest.approx(5.0)
    assert curves["deletion"] == pytest.approx(5.0)
    assert curve_steps(3, 11) == [0, 1, 2, 3]
    assert curve_steps(7, 3) == [0, 4, 7]  # round(3.5) = 4 (banker's rounding)


def test_normalised_areas_are_rescaled_over_both_curves():
    from superact_lens.localization.evaluate import _faithfulness

    curves = insertion_deletion(LinearProblem([0.0, 1.0, 3.0, 2.0]), torch.tensor([0, 1, 3, 2.0]))
    norm = _faithfulness(curves)  # range 0..6: areas divided by 6
    assert norm["insertion_norm"] == pytest.approx(curves["insertion"] / 6)
    assert norm["deletion_norm"] == pytest.approx(curves["deletion"] / 6)
    flat = insertion_deletion(LinearProblem([0.0] * 3), torch.arange(3.0))
    assert np.isnan(_faithfulness(flat)["insertion_norm"])
