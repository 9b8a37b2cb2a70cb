"""Population dynamics: separability grows, equalisation at rate 1 / (1 + beta)."""

import pytest

from theory.population import PopulationParams, equalisation_rate, run_population


def test_separability_grows_and_bulk_stays_overlapped():
    res = run_population(PopulationParams(n_pos=60, n_neg=60, n_layers=10))
    assert float(res.sep99[-1]) > float(res.sep99[0])
    assert float(res.sep99[-1]) < 0.5  # most in-concept activations stay overlapped
    s = res.summary()
    assert {1, 2, 3} & set(s["tail_faster_layers"])  # the tail pulls away first
    assert set(res.to_dict()) >= {"sep95", "sep99", "tail_ratio"}


def test_equalisation_rate_matches_corollary_d4():
    p = PopulationParams(n_pos=30, n_neg=1, n_layers=40, delta=0.0, eta=0.0, beta=0.5)
    rate = float(equalisation_rate(run_population(p).pos))
    assert rate == pytest.approx(1 / 1.5, abs=1e-3)


def test_params_validation():
    with pytest.raises(ValueError, match="in_tokens"):
        PopulationParams(in_tokens=0)
    with pytest.raises(ValueError, match="n_layers"):
        PopulationParams(n_layers=0)
