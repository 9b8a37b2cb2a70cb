"""A hand-built model where one word carries the concept, and a detector for it.

Token embeddings: the planted words get ``PLANT * e0``; every other token a random
vector orthogonal to ``e0``; the pad token zeros (the text baseline). Each block
adds the mean of its input over positions (a crude attention: tokens see each
other, so a word's embedding moves every token's residual). The concept vector
is ``e0`` at layer 1 (output of block 0); the normaliser is the identity; the
threshold 0.5 makes exactly the planted words SuperActivators.
"""

from __future__ import annotations

import torch
from torch import nn

from superact_lens.concepts.bank import ConceptBank
from superact_lens.detection.artefact import ConceptDetector, ModelIdentity
from superact_lens.detection.superact import SuperActivatorDetector
from superact_lens.lens import ConceptLens
from superact_lens.normalization import Normalizer

D_MODEL = 16
PLANT = 4.0
LAYER = 1


class MeanMix(nn.Module):
    """``x + mean_pos(x)``; counts its calls (to see the forward stop early)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + x.mean(dim=1, keepdim=True)


class PlantedModel(nn.Module):
    def __init__(self, vocab_size: int, planted_ids: list[int], seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        weight = torch.randn(vocab_size, D_MODEL, generator=g)
        weight[:, 0] = 0.0
        weight[planted_ids] = 0.0
        weight[planted_ids, 0] = PLANT
        weight[0] = 0.0  # [PAD]
        self.embed = nn.Embedding(vocab_size, D_MODEL, _weight=weight)
        self.blocks = nn.ModuleList([MeanMix(), MeanMix()])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        return x


def planted_lens(tokenizer, words=("cat", "dog")) -> ConceptLens:
    ids = [tokenizer.convert_tokens_to_ids(w) for w in words]
    model = PlantedModel(tokenizer.vocab_size, ids)
    return ConceptLens(model, tokenizer=tokenizer)


def one_concept_detector(
    vector: torch.Tensor,
    scale: float,
    layer: int,
    threshold: float,
    concept: str,
    model_name: str,
) -> ConceptDetector:
    """A SuperActivator detector of one cosine ``mean`` concept ``vector`` (``[d]``) at
    ``layer``, normalised by ``scale`` (zero mean), with a fixed ``threshold``."""
    width = vector.shape[-1]
    bank = ConceptBank(
        layers=[layer], names=[concept], vectors=vector.reshape(1, 1, width), cosine=True,
        kind="mean",
    )  # fmt: skip
    normalizer = Normalizer(
        layers=[layer], mean=torch.zeros(1, width), scale=torch.full((1, width), scale)
    )
    det = SuperActivatorDetector()
    det.layer_, det.column_ = torch.tensor([layer]), torch.tensor([0])
    det.threshold_, det.n_columns_ = torch.tensor([threshold]), 1
    return ConceptDetector(
        bank=bank,
        normalizer=normalizer,
        detector=det,
        concepts=[concept],
        concept_type="mean",
        model=ModelIdentity(model_name, 3, width, "-"),
    )


def planted_detector(threshold: float = 0.5) -> ConceptDetector:
    e0 = torch.zeros(D_MODEL)
    e0[0] = 1.0
    return one_concept_detector(e0, 1.0, LAYER, threshold, "animal", "planted")
