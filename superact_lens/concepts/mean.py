"""Mean prototypes (SPEC §3.1): the unit-normalised mean of a concept's positives.

Token level: mean of the normalised in-concept tokens (``token_concepts[:, c]``).
CLS level (``fit_cls``): mean of the normalised sample embeddings of positive
samples. Scores are cosine similarities (``cosine=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from superact_lens.concepts._common import (
    ConceptEstimator,
    check_names,
    check_on_empty,
    empty_concepts,
    normalized_layers,
    normalizer_note,
    unit,
)
from superact_lens.concepts.bank import ConceptBank
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

__all__ = ["MeanConcepts"]


class MeanConcepts(ConceptEstimator):
    """Mean-prototype concept vectors, one per concept per layer.

    Args:
        level: "token" (default) labels the bank fitted by ``fit``; ``fit_cls`` always gives "cls".
        on_empty: a concept with no positives raises ValueError ("raise", default) or
            gets a zero vector recorded in ``metadata["empty"]`` ("zero").

    Attributes:
        bank_: ConceptBank ``[layers, concepts, d_model]``, kind "mean", cosine=True.
    """

    def __init__(self, level: str = "token", on_empty: str = "raise") -> None:
        self.level = level
        self.on_empty = on_empty

    def _fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None,
        names: Sequence[str] | None,
        level: str,
    ) -> ConceptBank:
        check_on_empty(self.on_empty)
        names = check_names(names, sample.n_concepts)
        pos = sample.token_concepts.to(sample.embeddings.device).float()
        counts = pos.sum(0)
        empty = empty_concepts(counts, names, "positive tokens", self.on_empty)
        vectors: list[Tensor] = []
        for _, z in normalized_layers(sample, normalizer):
            total = torch.einsum("nc,nd->cd", pos, z)
            vectors.append(unit(total / counts.clamp_min(1)[:, None]))
        metadata = {**normalizer_note(normalizer), "n_positive": counts.long().tolist()}
        if empty:
            metadata["empty"] = {n: "no positive tokens: zero vector" for n in empty}
        return ConceptBank(
            layers=list(sample.layers),
            names=names,
            vectors=torch.stack(vectors),
            cosine=True,
            kind="mean",
            level=level,
            metadata=metadata,
        )
