"""TokenSample: a bounded sample of raw token embeddings with their labels.

Produced by :class:`superact_lens.sinks.TokenCollector` during a stream over
the TRAIN split; consumed by the concept extractors. Positives for concept
``c`` are ``token_concepts[:, c]``; negatives are ``~sample_labels[:, c]``
(tokens of samples that do not contain ``c`` -- tokens outside the span in a
positive sample are excluded on purpose, SPEC §2).
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.errors import InputError

__all__ = ["TokenSample"]


@dataclass
class TokenSample:
    layers: list[int]
    embeddings: Float[Tensor, "layers n d_model"]
    token_concepts: Bool[Tensor, "n concepts"]
    sample_labels: Bool[Tensor, "n concepts"]
    sample_ids: Int[Tensor, " n"]

    def __post_init__(self) -> None:
        n = self.embeddings.shape[1]
        if self.embeddings.shape[0] != len(self.layers):
            raise InputError("embeddings must have one row per layer")
        for name in ("token_concepts", "sample_labels"):
            if getattr(self, name).shape[0] != n:
                raise InputError(f"{name} must have one row per collected token ({n})")
        if self.token_concepts.shape != self.sample_labels.shape:
            raise InputError("token_concepts and sample_labels must have the same shape")
        if self.sample_ids.shape != (n,):
            raise InputError("sample_ids must have one entry per collected token")

    @property
    def n_concepts(self) -> int:
        return self.token_concepts.shape[1]

    def layer(self, layer: int) -> Float[Tensor, "n d_model"]:
        try:
            return self.embeddings[self.layers.index(layer)]
        except ValueError:
            raise InputError(
                f"token sample has no layer {layer}; it covers {self.layers}"
            ) from None
