"""RISE is centred: its map is ``E[f | token kept] - E[f | token dropped]``, so a
constant added to ``f`` changes nothing and the keep counts of the drawn masks do not
leak into the map (the uncentred ``sum_j f_j m_j / (n p)`` followed the counts
whenever ``f`` was far from 0)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.localization import AttributionConfig, Localizer, attribute
from superact_lens.localization.methods import rise_masks


class _Objective:
    """A stand-in for TextObjective: ``f`` of keep-masks given as a plain function."""

    def __init__(self, n_tokens, f):
        self.n_tokens = n_tokens
        self.f = f

    def f_keep(self, keep):
        return self.f(keep.reshape(-1, self.n_tokens).double()).float()


def _weights(n_tokens, seed):
    return torch.randn(n_tokens, generator=torch.Generator().manual_seed(seed)).double()


@settings(max_examples=30, deadline=None)
@given(
    n_tokens=st.integers(2, 40),
    n_samples=st.integers(4, 64),
    seed=st.integers(0, 2**16),
    offset=st.floats(0.5, 50.0) | st.floats(-50.0, -0.5),
)
def test_adding_a_constant_to_f_leaves_the_map_unchanged(n_tokens, n_samples, seed, offset):
    w = _weights(n_tokens, seed)
    config = AttributionConfig(n_samples=n_samples, seed=seed)
    plain = attribute(_Objective(n_tokens, lambda m: torch.tanh(m @ w)), "rise", config)
    shifted = attribute(_Objective(n_tokens, lambda m: torch.tanh(m @ w) + offset), "rise", config)
    torch.testing.assert_close(shifted, plain, atol=1e-4 * (1 + abs(offset)), rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(
    n_tokens=st.integers(2, 40),
    planted=st.integers(0, 39),
    seed=st.integers(0, 2**16),
    offset=st.floats(0.0, 100.0),
)
def test_the_token_f_depends_on_gets_the_top_score_under_any_offset(
    n_tokens, planted, seed, offset
):
    """``f = offset + 0.1 * keep[planted]``: exactly 0.1 for the planted token; any
    other token only picks up its sample correlation with it (below 0.1 unless the
    two columns of the 32 masks coincide)."""
    planted %= n_tokens
    config = AttributionConfig(n_samples=32, seed=seed)
    masks = rise_masks(n_tokens, config)
    column = masks[:, planted]
    others = [t for t in range(n_tokens) if t != planted]
    if column.min() == column.max() or any(torch.equal(masks[:, t], column) for t in others):
        return  # no contrast for the planted token, or a twin column: no unique answer
    rise = attribute(_Objective(n_tokens, lambda m: offset + 0.1 * m[:, planted]), "rise", config)
    assert int(rise.argmax()) == planted
    assert float(rise[planted]) == pytest.approx(0.1, abs=1e-5)


def test_a_token_never_dropped_scores_zero_not_nan():
    rise = attribute(_Objective(3, lambda m: m.sum(dim=1)), "rise", AttributionConfig(n_samples=1))
    assert torch.equal(rise, torch.zeros(3))


@pytest.mark.parametrize("target", ["global", "local"])
def test_planted_word_stays_on_top_with_a_large_offset_on_the_real_objective(planted, target):
    """The planted model's own ``f`` plus 10: the planted word ("cat", content position
    2) still gets the top score, and the map is the one without the offset."""
    lens, detector = planted
    localizer = Localizer(lens, detector, AttributionConfig(n_samples=32))
    problem, sa = localizer.problem("a small cat sat on the big mat near a red door", "animal")
    problem = localizer.set_target(problem, "animal", target, sa)
    config = localizer.config
    plain = attribute(problem, "rise", config)
    f_keep = problem.f_keep
    problem.f_keep = lambda keep: f_keep(keep) + 10.0
    shifted = attribute(problem, "rise", config)
    assert int(shifted.argmax()) == 2
    torch.testing.assert_close(shifted, plain, atol=1e-4, rtol=1e-3)
