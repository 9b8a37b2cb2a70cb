"""Attribution targets and the objective they define (SPEC §6).

Everything lives in the space the concept bank was fitted in: the residual at
the detector's layer for concept ``c``, normalised with the train-split
statistics, ``z_hat_t = (z_t - mean[l]) / scale[l]`` (SPEC §1).

* Global target: the concept vector ``v_c`` (the bank row the detector reads).
* Local target: ``v_hat_c(x)``, the mean ``z_hat_t(x)`` over the SuperActivators
  of ``c`` in ``x``: content tokens whose score ``s_c(z_t)`` exceeds the
  detector's threshold ``tau_c`` (the same strict ``>`` the detector uses).
* Objective: ``f(x; target) = mean_t cos(z_hat_t(x), target)`` over the content
  tokens of ``x`` (special tokens such as [CLS] and [SEP] excluded).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.errors import InputError

__all__ = [
    "TARGETS",
    "concept_index",
    "global_target",
    "local_target",
    "objective",
    "superactivator_mask",
    "token_cosines",
]

TARGETS = ("global", "local")


def concept_index(detector: Any, concept: int | str) -> int:
    """Index of ``concept`` (a name or an index) among ``detector.concepts``."""
    names = list(detector.concepts)
    if isinstance(concept, str):
        if concept not in names:
            raise InputError(f"concept: {concept!r} is not one of the detector's concepts {names}")
        return names.index(concept)
    if isinstance(concept, bool) or not isinstance(concept, int) or not 0 <= concept < len(names):
        raise InputError(f"concept: expected a name or an index in 0..{len(names) - 1}")
    return concept


def global_target(detector: Any, c: int) -> Float[Tensor, " d_model"]:
    """The concept vector the detector reads for concept ``c`` (normalised space)."""
    bank = detector.bank
    return bank.vectors[bank.row(detector.layer_of(c)), detector.column_of(c)].float()


def superactivator_mask(
    detector: Any, c: int, resid: Float[Tensor, "n d_model"]
) -> Bool[Tensor, " n"]:
    """Which of the (raw, content) residuals ``resid`` at ``c``'s layer are SuperActivators."""
    layer = detector.layer_of(c)
    scores = detector.bank.score(resid.float(), layer, detector.normalizer)
    return scores[..., detector.column_of(c)] > detector.threshold_of(c)


def local_target(
    z_hat: Float[Tensor, "n d_model"], superactivators: Bool[Tensor, " n"]
) -> Float[Tensor, " d_model"]:
    """``v_hat_c(x)``: the mean normalised embedding of the SuperActivator tokens."""
    if not bool(superactivators.any()):
        raise InputError("the text has no SuperActivator of this concept: no local target")
    return z_hat[superactivators].float().mean(dim=0)


def token_cosines(
    z_hat: Float[Tensor, "... d_model"], target: Float[Tensor, " d_model"]
) -> Float[Tensor, "..."]:
    """``cos(z_hat_t, target)`` for every token."""
    target = target.to(z_hat)
    return torch.einsum("...d,d->...", z_hat, target) / (
        z_hat.norm(dim=-1) * target.norm()
    ).clamp_min(1e-12)


def objective(
    z_hat: Float[Tensor, "B pos d_model"],
    content: Bool[Tensor, " pos"],
    target: Float[Tensor, " d_model"],
) -> Float[Tensor, " B"]:
    """``f(x; target)``: mean over the content positions of the token cosines."""
    return token_cosines(z_hat[:, content], target).mean(dim=1)
