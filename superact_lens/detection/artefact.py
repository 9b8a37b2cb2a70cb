"""A calibrated detector as one artefact: everything needed to apply it to new input.

``ConceptDetector`` bundles the token-level concept bank, the train-split
normaliser, a fitted SuperActivator detector (layer, N and threshold per
concept), the concept names and type, the identity of the model it was
calibrated on, and where it came from (command, dataset). ``superact run``
writes one per concept type to ``OUT/detectors/<concept_type>/``;
``superact detect`` and :class:`~superact_lens.monitor.ConceptMonitor` read it.

A concept ``c`` fires on a text iff some content token's score at
``layer_of(c)`` (on bank column ``column_of(c)``) is strictly greater than
``threshold_of(c)``: the SuperActivator rule, ``max_t s_c(z_t) > tau_c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError, InputTypeError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.projection import _Projector

from .base import BaseDetector

__all__ = ["FORMAT_VERSION", "ConceptDetector", "ModelIdentity"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelIdentity:
    """What a detector was calibrated on: enough to refuse a different model.

    ``vocab_hash`` is a hash of the tokenizer's vocabulary (token -> id pairs).
    """

    name: str
    n_layers: int
    d_model: int
    vocab_hash: str


@dataclass
class ConceptDetector:
    """A calibrated SuperActivator detector, ready to apply to new text.

    Attributes:
        bank: token-level concept vectors (at least the detector's layers).
        normalizer: train-split statistics the bank expects.
        detector: a fitted max-token detector (``SuperActivatorDetector``; the
            per-concept ``layer_``, ``column_`` and ``threshold_`` are what is used).
        concepts: ground-truth concept names, one per detector entry.
        concept_type: "linsep", "mean", "kmeans", ...
        model: the model it was calibrated on.
        provenance: free JSON (command, dataset, seed, ...).
    """

    bank: ConceptBank
    normalizer: Normalizer
    detector: BaseDetector
    concepts: list[str]
    concept_type: str
    model: ModelIdentity
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.bank, ConceptBank):
            raise InputTypeError(f"bank: expected a ConceptBank, got {type(self.bank).__name__}")
        if not isinstance(self.normalizer, Normalizer):
            raise InputTypeError(
                f"normalizer: expected a Normalizer, got {type(self.normalizer).__name__}"
            )
        if len(self.detector.threshold_) != len(self.concepts):
            raise InputError(
                f"concepts: {len(self.concepts)} names for a detector of "
                f"{len(self.detector.threshold_)} concepts"
            )
        missing = sorted({int(x) for x in self.detector.layer_} - set(self.bank.layers))
        if missing:
            raise InputError(f"bank has no vectors for the detector's layers {missing}")

    # --- what the detector uses, per concept -------------------------------------------
    def layer_of(self, c: int) -> int:
        return int(self.detector.layer_[c])

    def column_of(self, c: int) -> int:
        return int(self.detector.column_[c])

    def threshold_of(self, c: int) -> float:
        return float(self.detector.threshold_[c])

    @property
    def layers(self) -> list[int]:
        """The residual layers any concept is read at (sorted, unique)."""
        return sorted({int(x) for x in self.detector.layer_})

    def concepts_at(self, layer: int) -> list[int]:
        """Indices of the concepts read at ``layer``."""
        return [c for c in range(len(self.concepts)) if self.layer_of(c) == layer]

    def projector(self) -> _Projector:
        """Bank and normaliser folded for :attr:`layers` (what the stream applies)."""
        return _Projector(self.bank, self.normalizer, self.layers)

    def concept_scores(
        self, resid: Float[Tensor, "... d_model"], layer: int, projector: _Projector | None = None
    ) -> Float[Tensor, "... C_at_layer"]:
        """Scores of the concepts read at ``layer`` (order of :meth:`concepts_at`)."""
        proj = projector if projector is not None else self.projector()
        cols = torch.tensor([self.column_of(c) for c in self.concepts_at(layer)], dtype=torch.long)
        return proj(resid, layer)[..., cols.to(resid.device)]
