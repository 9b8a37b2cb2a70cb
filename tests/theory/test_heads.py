"""Measured heads: exactness on an aligned native model, alignment numbers, MiniLM smoke."""

import math

import pytest
import torch

from theory.heads import AttentionWeights, head_alignment, measure_layer
from theory.native import aligned_native_model, native_exactness, tl_attention_weights


def test_native_model_update_equals_scalar_prediction():
    res = native_exactness(alpha=3.0, beta=0.7)
    assert res["max_abs_err"] < 1e-5
    assert res["max_rel_err"] < 1e-9  # float64 model: rounding only


def test_alignment_and_layer_report_on_native_model():
    model, c = aligned_native_model(alpha=2.0, beta=0.5, seed=3)
    w = tl_attention_weights(model, 0)
    al = head_alignment(w, c)
    assert float(al["alpha"][0]) == pytest.approx(2.0, rel=1e-12)
    assert float(al["kappa"][0]) == pytest.approx(2.0 / math.sqrt(8), rel=1e-12)
    assert float(al["beta"][0]) == pytest.approx(0.5, rel=1e-12)
    assert abs(float(al["beta"][1])) < 1e-12 and int(al["rank"][0]) == 0
    tokens = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    x = cache["blocks.0.hook_resid_pre"]
    out = cache["blocks.0.hook_resid_post"] - x
    rep = measure_layer(w, c, x, out)
    assert rep.exact_err < 1e-12
    assert rep.corr_scalar == pytest.approx(1.0, abs=1e-12)
    assert rep.eta_max < 1e-10  # nothing along c besides the aligned head
    assert rep.fit["r2"] > 0.99


def test_validation_names_argument():
    H, d, dh = 2, 4, 2
    z = torch.zeros
    with pytest.raises(ValueError, match="W_O"):
        AttentionWeights(
            z(H, d, dh),
            z(H, d, dh),
            z(H, d, dh),
            z(H, d, dh),
            z(H, dh),
            z(H, dh),
            z(H, dh),
            z(d),
            1.0,
        )
    w = AttentionWeights(
        z(H, d, dh), z(H, d, dh), z(H, d, dh), z(H, dh, d), z(H, dh), z(H, dh), z(H, dh), z(d), 1.0
    )
    with pytest.raises(ValueError, match="c:"):
        head_alignment(w, torch.zeros(d))
    with pytest.raises(ValueError, match="x, attn_out"):
        measure_layer(w, torch.ones(d), z(1, 3, d), z(1, 2, d))


@pytest.mark.slow
@pytest.mark.model
def test_minilm_report_runs():
    from theory.minilm import minilm_head_report

    rep = minilm_head_report()
    assert len(rep["layers"]) == 6
    for layer in rep["layers"]:
        assert layer["exact_err"] < 1e-4  # hooks capture what the weights compute
        assert math.isfinite(layer["corr_measured_attention"])
