"""SampleEmbeddingSink: the raw sample embedding of every text at every streamed layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.sinks.base import Sink

if TYPE_CHECKING:
    from superact_lens.lens import TokenBatch

__all__ = ["SampleEmbeddingSink"]


class SampleEmbeddingSink(Sink):
    """Keep ``[layers, n_samples, d_model]`` sample embeddings (float32, CPU).

    The sample embedding is the [CLS] residual where the model has one, else the
    mean of the content tokens; un-normalised. Rows follow the texts' order.
    """

    def __init__(self, layers: list[int] | None = None) -> None:
        self.layers = list(layers) if layers is not None else None

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        super().begin(n_samples, layers, d_model)
        self._out = torch.zeros(len(layers), n_samples, d_model)
        self._seen = torch.zeros(n_samples, dtype=torch.bool)

    def on_layer(
        self, layer: int, resid: Float[Tensor, "batch pos d_model"], batch: TokenBatch
    ) -> None:
        ids = batch.sample_ids.cpu()
        self._out[self._row(layer), ids] = batch.sample_embedding(resid).float().cpu()
        self._seen[ids] = True

    def result(self) -> Float[Tensor, "layers n_samples d_model"]:
        self._check_begun()
        if not bool(self._seen.all()):
            raise RuntimeError("SampleEmbeddingSink saw an incomplete stream")
        return self._out
