"""Python entry points: :func:`localize` and the :class:`Localizer` behind it.

>>> attributions = localize(lens, detector, texts, "noun.animal", method="ig", target="local")
>>> attributions[0]          # one score per content token of texts[0]

With a lens on a vision transformer the inputs are images (paths, PIL images,
arrays) and the attribution units their content patches, row-major
(``lens.content_patches(images)`` gives each score's ``(row, col)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxtyping import Bool, Float
from torch import Tensor

from superact_lens.adapters.tokenize import check_texts
from superact_lens.errors import InputError, InputTypeError
from superact_lens.vision.inputs import check_images

from .forward import TruncatedForward
from .methods import METHODS, AttributionConfig, attribute
from .objective import TextObjective
from .targets import TARGETS, concept_index, global_target, local_target, superactivator_mask

__all__ = ["Localizer", "localize"]


class Localizer:
    """Explain a calibrated detector's concepts on texts, one truncated forward per layer.

    Args:
        lens: the :class:`~superact_lens.lens.ConceptLens` of the detector's model.
        detector: a :class:`~superact_lens.detection.artefact.ConceptDetector`.
        config: the methods' budgets (:class:`AttributionConfig`).
    """

    def __init__(self, lens: Any, detector: Any, config: AttributionConfig | None = None) -> None:
        for name in ("bank", "normalizer", "layer_of", "threshold_of", "concepts"):
            if not hasattr(detector, name):
                raise InputTypeError(
                    f"detector: expected a ConceptDetector, got {type(detector).__name__}"
                )
        if detector.bank.d_model != lens.d_model:
            raise InputError(
                f"detector: its concept vectors have width {detector.bank.d_model}, "
                f"the lens's model has d_model {lens.d_model}"
            )
        self.lens = lens
        self.detector = detector
        self.config = config if config is not None else AttributionConfig()
        self._forwards: dict[int, TruncatedForward] = {}

    def forward_at(self, layer: int) -> TruncatedForward:
        if layer not in self._forwards:
            self._forwards[layer] = TruncatedForward(self.lens, layer)
        return self._forwards[layer]

    def problem(self, text: str, concept: int | str) -> tuple[TextObjective, Bool[Tensor, " n"]]:
        """The text's objective at the concept's layer (no target yet) and its SuperActivators."""
        c = concept_index(self.detector, concept)
        problem = TextObjective(
            self.forward_at(self.detector.layer_of(c)),
            self.detector.normalizer,
            text,
            batch_size=self.config.batch_size,
            reuse=self.config.reuse,
        )
        resid = problem.resid(problem.x).detach()[0, problem.content]
        return problem, superactivator_mask(self.detector, c, resid)

    def set_target(
        self, problem: TextObjective, concept: int | str, target: str, sa: Tensor
    ) -> TextObjective:
        """Point ``problem`` at the global concept vector or the local target."""
        c = concept_index(self.detector, concept)
        if target == "global":
            problem.target = global_target(self.detector, c).to(problem.x.device)
        elif target == "local":
            z_hat = problem.z_hat(problem.x).detach()[0, problem.content]
            problem.target = local_target(z_hat, sa.to(z_hat.device))
        else:
            raise InputError(f"target: expected one of {TARGETS}, got {target!r}")
        return problem

    def attribute(self, problem: TextObjective, method: str) -> Float[Tensor, " n_content"]:
        return attribute(problem, method, self.config)


def localize(
    lens: Any,
    detector: Any,
    texts: Sequence[str],
    concept: int | str,
    method: str = "ig",
    target: str = "local",
    config: AttributionConfig | None = None,
) -> list[Float[Tensor, " n_content"]]:
    """Per-token attributions of ``concept`` on each text (content tokens, stream order);
    per-patch attributions on each image when the lens's model is a vision transformer.

    Args:
        lens: the :class:`~superact_lens.lens.ConceptLens` of the detector's model.
        detector: a calibrated :class:`~superact_lens.detection.artefact.ConceptDetector`.
        texts: the texts to explain (images for an image model).
        concept: a concept name or index of ``detector.concepts``.
        method: one of ``METHODS`` (direct, gradxinput, ig, occlusion, rise, lime, kernelshap).
        target: ``"local"`` (mean of the text's SuperActivator embeddings; every text
            must contain one) or ``"global"`` (the concept vector).
        config: budgets of the methods.
    """
    items: list[Any] = check_images(texts) if lens.is_vision else check_texts(texts)
    if method not in METHODS:
        raise InputError(f"method: unknown attribution method {method!r}; choose from {METHODS}")
    if target not in TARGETS:
        raise InputError(f"target: expected one of {TARGETS}, got {target!r}")
    localizer = Localizer(lens, detector, config)
    out = []
    for i, text in enumerate(items):
        problem, sa = localizer.problem(text, concept)
        if target == "local" and not bool(sa.any()):
            raise InputError(
                f"texts[{i}]: no SuperActivator of {concept!r}, so no local target "
                "(use target='global' for it)"
            )
        localizer.set_target(problem, concept, target, sa)
        out.append(localizer.attribute(problem, method))
    return out
