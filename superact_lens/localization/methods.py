"""Seven attribution methods over the content tokens of one text (SPEC §6).

Each method maps a :class:`~superact_lens.localization.objective.TextObjective`
(a text, a target, ``f``) to one score per content token; higher = more
responsible for ``f``. From Captum (``pip install superact-lens[localize]``):

* ``gradxinput``: ``InputXGradient`` on the token embeddings, summed over ``d``;
* ``ig``: ``IntegratedGradients`` from the baseline embeddings (content tokens
  set to the pad embedding, special tokens kept) to the text, summed over ``d``;
* ``occlusion``: ``FeatureAblation`` with one feature per token: ``f(x)`` minus
  ``f`` with that token replaced by the baseline;
* ``lime``: ``Lime`` on binary keep-masks (ridge regression, Captum's default
  exponential cosine kernel);
* ``kernelshap``: ``KernelShap`` on binary keep-masks.

The perturbation methods act on a keep-mask over the content tokens (ones = the
text, zeros = the baseline), so Captum's ``perturbations_per_eval`` puts many
masked copies in one forward pass. By hand, because Captum has no such method:

* ``direct``: direct alignment, ``cos(z_hat_t(x), target)`` of each token (the
  raw score the objective averages);
* ``rise``: RISE for tokens: ``n_samples`` random keep-masks (each token kept with
  probability ``p``), centred: token ``t`` scores ``E[f | t kept] - E[f | t dropped]``
  over the drawn masks (:func:`_rise` says why not RISE's ``sum_i f(M_i) M_i / (n p)``).

Sampled methods draw from a seeded generator of their own; the global torch RNG
is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.errors import InputError

from .objective import TextObjective

__all__ = ["METHOD_LABELS", "METHODS", "AttributionConfig", "attribute"]

METHOD_LABELS = {
    "direct": "Direct alignment",
    "gradxinput": "Gradient x input",
    "ig": "Integrated Gradients",
    "occlusion": "Occlusion",
    "rise": "RISE",
    "lime": "LIME",
    "kernelshap": "KernelSHAP",
}
METHODS = tuple(METHOD_LABELS)


@dataclass(frozen=True)
class AttributionConfig:
    """Budgets of the methods.

    Attributes:
        n_steps: Integrated Gradients steps (Gauss-Legendre).
        n_samples: masks drawn by RISE, LIME and KernelSHAP.
        rise_p: RISE keep probability.
        batch_size: masked copies (or IG steps) per forward pass.
        seed: seed of the sampled methods.
        reuse: run each distinct masked input of a text once, for both targets and
            every curve (:class:`~superact_lens.localization.objective.TextObjective`);
            False runs every row again (the slower reference path; same results).
    """

    n_steps: int = 16
    n_samples: int = 64
    rise_p: float = 0.5
    batch_size: int = 64
    seed: int = 0
    reuse: bool = True

    def __post_init__(self) -> None:
        for name in ("n_steps", "n_samples", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: expected a positive int, got {value!r}")
        if not 0.0 < self.rise_p < 1.0:
            raise InputError(f"rise_p: expected a probability in (0, 1), got {self.rise_p!r}")


def _per_token(problem: TextObjective, attr: Float[Tensor, "1 pos d"]) -> Tensor:
    return attr[0, problem.content].sum(dim=-1).detach().float()


def _direct(problem: TextObjective, config: AttributionConfig) -> Tensor:
    return problem.token_scores()


def _gradxinput(problem: TextObjective, config: AttributionConfig) -> Tensor:
    from captum.attr import InputXGradient

    attr = InputXGradient(problem.f_embeds).attribute(problem.x.clone().requires_grad_(True))
    return _per_token(problem, attr)


def _ig(problem: TextObjective, config: AttributionConfig) -> Tensor:
    from captum.attr import IntegratedGradients

    attr = IntegratedGradients(problem.f_embeds).attribute(
        problem.x.clone(),
        baselines=problem.baseline,
        n_steps=config.n_steps,
        internal_batch_size=config.batch_size,
    )
    return _per_token(problem, attr)


def _ones(problem: TextObjective) -> tuple[Tensor, Tensor]:
    """The keep-mask of the whole text and one feature id per content token."""
    n = problem.n_tokens
    return torch.ones(1, n), torch.arange(n)[None]


def _occlusion(problem: TextObjective, config: AttributionConfig) -> Tensor:
    from captum.attr import FeatureAblation

    ones, features = _ones(problem)
    attr = FeatureAblation(problem.f_keep).attribute(
        ones, baselines=0.0, feature_mask=features, perturbations_per_eval=config.batch_size
    )
    return attr[0].float()


def _lime(problem: TextObjective, config: AttributionConfig) -> Tensor:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    lime = Lime(problem.f_keep, interpretable_model=SkLearnRidge(alpha=1.0))
    return _surrogate(lime, problem, config)


def _kernelshap(problem: TextObjective, config: AttributionConfig) -> Tensor:
    from captum.attr import KernelShap

    return _surrogate(KernelShap(problem.f_keep), problem, config)


def _surrogate(explainer: Any, problem: TextObjective, config: AttributionConfig) -> Tensor:
    """A Captum surrogate-model explainer (LIME, KernelSHAP) over one keep-flag per token."""
    ones, features = _ones(problem)
    attr = explainer.attribute(
        ones,
        baselines=0.0,
        feature_mask=features,
        n_samples=config.n_samples,
        perturbations_per_eval=config.batch_size,
    )
    return attr[0].float()


def rise_masks(n_tokens: int, config: AttributionConfig) -> Float[Tensor, "n_samples n_tokens"]:
    """RISE's random keep-masks (seeded, independent of the global RNG)."""
    gen = torch.Generator().manual_seed(config.seed)
    return (torch.rand(config.n_samples, n_tokens, generator=gen) < config.rise_p).float()


def _rise(problem: TextObjective, config: AttributionConfig) -> Tensor:
    """RISE, centred: ``a_t = E[f | t kept] - E[f | t dropped]`` over the drawn masks.

    Computed as ``sum_j (f_j - mean f)(m_jt - mean_j m_jt) / sum_j (m_jt - mean_j m_jt)^2``
    (the slope of ``f`` on token ``t``'s keep flag; for 0/1 masks the same number).
    RISE's own ``sum_j f_j m_jt / (n p)`` is ``E[f | t kept]`` scaled by how often ``t``
    was kept: with a few dozen masks the keep counts differ by tens of percent between
    tokens, and wherever ``f`` is far from 0 that difference (``mean f`` times the
    count) swamps the token's effect, so the map followed the mask draw (the same for
    every input under one seed), not the input. Centring removes both: adding a
    constant to ``f`` leaves the map unchanged, and unequal keep counts do not enter.
    A token kept in every mask or in none has no contrast and scores 0.
    """
    masks = rise_masks(problem.n_tokens, config)
    scores = problem.f_keep(masks).double()
    kept = masks.double() - masks.double().mean(dim=0)
    spread = (kept * kept).sum(dim=0)
    slope = (scores - scores.mean()) @ kept / spread.clamp_min(1e-12)
    return torch.where(spread > 0, slope, torch.zeros_like(slope)).float()


_FUNCS: dict[str, Callable[[TextObjective, AttributionConfig], Tensor]] = {
    "direct": _direct,
    "gradxinput": _gradxinput,
    "ig": _ig,
    "occlusion": _occlusion,
    "rise": _rise,
    "lime": _lime,
    "kernelshap": _kernelshap,
}


def attribute(
    problem: TextObjective, method: str, config: AttributionConfig | None = None
) -> Float[Tensor, " n_content"]:
    """One attribution score per content token of ``problem``'s text."""
    if method not in _FUNCS:
        raise InputError(f"method: unknown attribution method {method!r}; choose from {METHODS}")
    config = config if config is not None else AttributionConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # Captum's LIME/KernelSHAP sample from the global RNG
        out = _FUNCS[method](problem, config)
    return out.detach().float().cpu()
