"""The seven methods on the planted model: the planted word comes out on top, for
both targets; Captum-backed and hand-written methods agree where they overlap;
batched perturbation equals one mask at a time."""

from __future__ import annotations

import pytest
import torch

from superact_lens.errors import InputError
from superact_lens.localization import (
    METHODS,
    AttributionConfig,
    Localizer,
    attribute,
    localize,
)
from superact_lens.localization.methods import rise_masks

TEXTS = [
    "the cat sat on the mat",
    "a small house near the river with a dog in the garden",
    "nobody saw the cat",
]


@pytest.mark.parametrize("target", ["global", "local"])
@pytest.mark.parametrize("method", METHODS)
def test_planted_word_gets_the_top_attribution(planted, method, target):
    lens, detector = planted
    maps = localize(lens, detector, TEXTS, "animal", method=method, target=target)
    planted_at = [1, 8, 3]  # content positions of "cat" / "dog"
    assert [int(m.argmax()) for m in maps] == planted_at
    for m, text in zip(maps, TEXTS, strict=True):
        assert m.shape == (len(lens.tokenize([text]).input_ids[0]) - 2,)  # no [CLS]/[SEP]


def _problem(planted, text="the cat sat on the mat", target="global", batch_size=64):
    lens, detector = planted
    localizer = Localizer(lens, detector, AttributionConfig(batch_size=batch_size))
    problem, sa = localizer.problem(text, "animal")
    return localizer.set_target(problem, "animal", target, sa)


@pytest.mark.parametrize("target", ["global", "local"])
def test_captum_occlusion_equals_occlusion_by_hand(planted, target):
    problem = _problem(planted, target=target)
    n = problem.n_tokens
    full = problem.f_keep(torch.ones(1, n))
    by_hand = torch.stack(
        [full[0] - problem.f_keep(1 - torch.eye(n)[t : t + 1])[0] for t in range(n)]
    )
    captum = attribute(problem, "occlusion")
    torch.testing.assert_close(captum, by_hand.float(), atol=1e-6, rtol=1e-5)


def test_integrated_gradients_are_complete(planted):
    """Completeness: IG scores sum to f(x) - f(baseline) (special tokens are not moved)."""
    problem = _problem(planted, target="local")
    ig = attribute(problem, "ig", AttributionConfig(n_steps=64))
    n = problem.n_tokens
    gap = problem.f_keep(torch.ones(1, n))[0] - problem.f_keep(torch.zeros(1, n))[0]
    assert float(ig.sum()) == pytest.approx(float(gap), abs=2e-3)


def test_direct_alignment_averages_to_the_objective(planted):
    problem = _problem(planted, target="local")
    direct = attribute(problem, "direct")
    assert float(direct.mean()) == pytest.approx(
        float(problem.f_keep(torch.ones(1, len(direct)))[0])
    )


def test_batched_masks_equal_one_at_a_time(planted):
    batched, single = _problem(planted, batch_size=64), _problem(planted, batch_size=1)
    masks = torch.rand(37, batched.n_tokens, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(batched.f_keep(masks), single.f_keep(masks), atol=1e-6, rtol=1e-5)
    for method in ("occlusion", "rise", "lime", "kernelshap"):
        a = attribute(batched, method, AttributionConfig(batch_size=64))
        b = attribute(single, method, AttributionConfig(batch_size=1))
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_rise_equals_its_formula(planted):
    problem = _problem(planted)
    config = AttributionConfig(n_samples=50, rise_p=0.3)
    masks = rise_masks(problem.n_tokens, config).bool()
    f = torch.stack([problem.f_keep(m[None].float())[0] for m in masks])
    kept_minus_dropped = [f[m].mean() - f[~m].mean() for m in masks.T]  # one per token
    loop = torch.stack(kept_minus_dropped)
    torch.testing.assert_close(
        attribute(problem, "rise", config), loop.float(), atol=1e-5, rtol=1e-4
    )


def test_sampled_methods_are_seeded_and_leave_the_global_rng_alone(planted):
    problem = _problem(planted)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = attribute(problem, "lime", AttributionConfig(seed=3))
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.testing.assert_close(a, attribute(problem, "lime", AttributionConfig(seed=3)))


def test_bad_arguments_are_named(planted):
    lens, detector = planted
    with pytest.raises(InputError, match="method"):
        localize(lens, detector, TEXTS, "animal", method="gradcam")
    with pytest.raises(InputError, match="target"):
        localize(lens, detector, TEXTS, "animal", target="both")
    with pytest.raises(InputError, match="concept"):
        localize(lens, detector, TEXTS, "plant")
    with pytest.raises(InputError, match=r"texts\[0\]: no SuperActivator"):
        localize(lens, detector, ["the house is red"], "animal", target="local")
    with pytest.raises(InputError, match="n_samples"):
        AttributionConfig(n_samples=0)
