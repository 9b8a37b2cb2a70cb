"""The sink protocol: what the stream calls, in order.

``begin(n_samples, layers, d_model)`` once; then per batch
``begin_batch(batch)``, ``on_layer(layer, resid, batch)`` for each of the
sink's layers in increasing order (``resid`` is ``[batch pos d_model]`` on the
model's device and dtype, valid only during the call), ``end_batch(batch)``;
finally ``result()``. A sink keeps only what it needs (scores, running sums,
a bounded sample), never the residuals themselves.

``layers``: the layers a sink needs (None = every streamed layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from superact_lens.lens import TokenBatch

__all__ = ["Sink"]


class Sink:
    """Base class with no-op hooks; subclasses override what they need."""

    layers: list[int] | None = None

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        self.n_samples_ = n_samples
        self.layers_ = list(layers)
        self.d_model_ = d_model

    def begin_batch(self, batch: TokenBatch) -> None:
        pass

    def on_layer(
        self, layer: int, resid: Float[Tensor, "batch pos d_model"], batch: TokenBatch
    ) -> None:
        raise NotImplementedError

    def end_batch(self, batch: TokenBatch) -> None:
        pass

    def result(self) -> Any:
        raise NotImplementedError

    def _row(self, layer: int) -> int:
        return self.layers_.index(layer)

    def _check_begun(self) -> None:
        if not hasattr(self, "layers_"):
            raise RuntimeError(f"{type(self).__name__}.result() called before streaming")
