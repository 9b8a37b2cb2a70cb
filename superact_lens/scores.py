"""Token scores: what the stream keeps of a dataset once residuals are projected.

Every sample contributes its *content* tokens only (attention mask on, not a
special token such as [CLS], [SEP], BOS or padding), in position order. The
content tokens of all samples are concatenated along one axis; ``offsets``
says where each sample starts. Per-token concept masks produced by the data
module follow exactly the same order, so ``scores.tokens[:, mask[:, c], c]``
are the in-concept scores of concept ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from superact_lens.errors import InputError

__all__ = ["TokenScores", "segment_positions"]


def segment_positions(
    starts: Int[Tensor, " k"], lengths: Int[Tensor, " k"]
) -> Int[Tensor, " total"]:
    """Positions of ``lengths[i]`` consecutive rows from ``starts[i]``, segment after
    segment: the gather index that packs segments of a concatenated axis in a new
    order (or, used as a scatter index, puts packed segments back in place)."""
    new_starts = torch.cumsum(lengths, 0) - lengths
    total = int(lengths.sum())
    return torch.arange(total, device=starts.device) + torch.repeat_interleave(
        starts - new_starts, lengths, output_size=total
    )


@dataclass
class TokenScores:
    """Concept scores of every content token of every sample, at several layers.

    Attributes:
        layers: residual-stream layer indices (0 = embeddings, i = after block i).
        concepts: one name per score column.
        tokens: ``[layers, n_tokens, concepts]`` scores of content tokens,
            samples concatenated in order.
        offsets: ``[n_samples + 1]``; sample ``i`` owns tokens
            ``offsets[i]:offsets[i + 1]``. A sample may own zero tokens.
        cls: ``[layers, n_samples, concepts]`` score of the sample embedding
            ([CLS] where the model has one, else the mean of content tokens),
            or None when not requested.
    """

    layers: list[int]
    concepts: list[str]
    tokens: Float[Tensor, "layers n_tokens concepts"]
    offsets: Int[Tensor, " n_plus_1"]
    cls: Float[Tensor, "layers n_samples concepts"] | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise InputError(
                f"tokens must be [layers, n_tokens, concepts], got {tuple(self.tokens.shape)}"
            )
        if self.tokens.shape[0] != len(self.layers):
            raise InputError(
                f"tokens has {self.tokens.shape[0]} layers but layers lists {len(self.layers)}"
            )
        if self.tokens.shape[2] != len(self.concepts):
            raise InputError(
                f"tokens has {self.tokens.shape[2]} concept columns but concepts lists "
                f"{len(self.concepts)}"
            )
        if self.offsets.ndim != 1 or int(self.offsets[-1]) != self.tokens.shape[1]:
            raise InputError("offsets must be 1-D and end at the number of tokens")
        if self.cls is not None and self.cls.shape != (
            len(self.layers),
            self.n_samples,
            len(self.concepts),
        ):
            raise InputError(
                f"cls must be [layers, n_samples, concepts], got {tuple(self.cls.shape)}"
            )

    @property
    def n_samples(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return self.tokens.shape[1]

    @property
    def lengths(self) -> Int[Tensor, " n_samples"]:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def n_columns(self) -> int:
        return self.tokens.shape[2]

    @property
    def device(self) -> torch.device:
        return self.tokens.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tokens.dtype

    def sample(self, i: int) -> Float[Tensor, "layers t concepts"]:
        """Scores of sample ``i``'s content tokens."""
        return self.tokens[:, int(self.offsets[i]) : int(self.offsets[i + 1])]

    def select_samples(self, index: Int[Tensor, " k"] | Bool[Tensor, " n_samples"]) -> TokenScores:
        """A new TokenScores holding only the given samples, in the given order."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        index = index.to(self.offsets.device)
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        offsets = torch.zeros(len(index) + 1, dtype=torch.long, device=self.offsets.device)
        offsets[1:] = torch.cumsum(lengths, 0)
        token_index = segment_positions(starts, lengths)
        return TokenScores(
            layers=list(self.layers),
            concepts=list(self.concepts),
            tokens=self.tokens[:, token_index],
            offsets=offsets,
            cls=None if self.cls is None else self.cls[:, index],
            metadata=dict(self.metadata),
        )

    def select_concepts(self, columns: list[int], names: list[str] | None = None) -> TokenScores:
        """A new TokenScores with only the given score columns (e.g. one concept type)."""
        return TokenScores(
            layers=list(self.layers),
            concepts=names if names is not None else [self.concepts[c] for c in columns],
            tokens=self.tokens[:, :, columns],
            offsets=self.offsets,
            cls=None if self.cls is None else self.cls[:, :, columns],
            metadata=dict(self.metadata),
        )

    def to(self, device: torch.device | str) -> TokenScores:
        return TokenScores(
            layers=list(self.layers),
            concepts=list(self.concepts),
            tokens=self.tokens.to(device),
            offsets=self.offsets.to(device),
            cls=None if self.cls is None else self.cls.to(device),
            metadata=dict(self.metadata),
        )
