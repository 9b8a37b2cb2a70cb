"""NormStatsSink: per-layer, per-dimension mean and standard deviation of content tokens.

Accumulated in float64 with the parallel (Chan et al.) update, so two
accumulators over disjoint data merge exactly into the one-pass result:
``n = n_a + n_b``, ``mean = mean_a + delta * n_b / n``,
``M2 = M2_a + M2_b + delta^2 * n_a * n_b / n``. That is what lets a dataset be
split across workers and the statistics combined afterwards.

"Exactly" is in exact arithmetic: in float64 a merged mean or M2 differs from
the one-pass value by rounding only (relative ~1e-15, far below the float32
the :class:`Normalizer` keeps), and the count is exact. ``state_dict`` /
``from_state`` round-trip bit for bit (see :mod:`superact_lens.stats.state`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.errors import InputError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.base import Sink

if TYPE_CHECKING:
    from superact_lens.lens import TokenBatch

__all__ = ["MomentAccumulator", "NormStatsSink"]


@dataclass
class MomentAccumulator:
    """Count, mean and sum of squared deviations per dimension, for several layers.

    Attributes:
        count: number of tokens seen.
        mean: ``[layers, d_model]`` float64.
        m2: ``[layers, d_model]`` float64 sum of squared deviations from the mean.
    """

    count: int
    mean: Float[Tensor, "layers d_model"]
    m2: Float[Tensor, "layers d_model"]

    @classmethod
    def zeros(cls, n_layers: int, d_model: int) -> MomentAccumulator:
        z = torch.zeros(n_layers, d_model, dtype=torch.float64)
        return cls(0, z, z.clone())

    @staticmethod
    def combine(
        n_a: int, mean_a: Tensor, m2_a: Tensor, n_b: int, mean_b: Tensor, m2_b: Tensor
    ) -> tuple[int, Tensor, Tensor]:
        """Chan's parallel merge of two (count, mean, M2) triples."""
        n = n_a + n_b
        if n_b == 0:
            return n_a, mean_a, m2_a
        if n_a == 0:
            return n_b, mean_b, m2_b
        delta = mean_b - mean_a
        mean = mean_a + delta * (n_b / n)
        m2 = m2_a + m2_b + delta.square() * (n_a * n_b / n)
        return n, mean, m2

    def merge(self, other: MomentAccumulator) -> MomentAccumulator:
        """A new accumulator equal to one pass over both inputs."""
        if self.mean.shape != other.mean.shape:
            raise InputError("other: accumulators cover different layers or widths")
        return MomentAccumulator(
            *self.combine(self.count, self.mean, self.m2, other.count, other.mean, other.m2)
        )

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MomentAccumulator:
        mean, m2 = state["mean"], state["m2"]
        if mean.shape != m2.shape or mean.dtype != torch.float64:
            raise InputError("state: mean and m2 must be float64 tensors of one shape")
        return cls(int(state["count"]), mean.clone(), m2.clone())


class NormStatsSink(Sink):
    """Accumulate per-layer mean and standard deviation over content tokens -> Normalizer.

    Args:
        layers: layers to cover (default: every streamed layer).
        min_scale: relative floor on the standard deviation: a dimension's scale is
            at least ``min_scale`` times the layer's mean standard deviation (and
            at least 1e-12), so near-constant ("dead") dimensions, such as one in
            MiniLM's last layer, are not blown up to unit variance.

    The scale is the population standard deviation (divide by n).
    """

    def __init__(self, layers: list[int] | None = None, min_scale: float = 1e-3) -> None:
        self.layers = list(layers) if layers is not None else None
        self.min_scale = min_scale

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        super().begin(n_samples, layers, d_model)
        self.acc_ = MomentAccumulator.zeros(len(layers), d_model)
        self._counts = [0] * len(layers)

    def on_layer(
        self, layer: int, resid: Float[Tensor, "batch pos d_model"], batch: TokenBatch
    ) -> None:
        r = self._row(layer)
        x = batch.content(resid).to(torch.float64)
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        m2_b = (x - mean_b).square().sum(dim=0)
        acc = self.acc_
        n, mean, m2 = MomentAccumulator.combine(
            self._counts[r], acc.mean[r], acc.m2[r], n_b, mean_b.cpu(), m2_b.cpu()
        )
        acc.mean[r], acc.m2[r] = mean, m2
        self._counts[r] = n
        acc.count = min(self._counts)

    def merge(self, other: NormStatsSink) -> NormStatsSink:
        """Combine with a sink that streamed other texts over the same layers (in place)."""
        if other.layers_ != self.layers_:
            raise InputError(f"other: covers layers {other.layers_}, this sink {self.layers_}")
        self.acc_ = self.acc_.merge(other.acc_)
        self._counts = [self.acc_.count] * len(self.layers_)
        return self

    def state_dict(self) -> dict[str, Any]:
        """Layers, ``min_scale`` and the moments (tensors + JSON values)."""
        self._check_begun()
        return {"layers": list(self.layers_), "min_scale": self.min_scale, **self.acc_.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NormStatsSink:
        """A finished sink (ready for ``merge`` and ``result``) from :meth:`state_dict`."""
        acc = MomentAccumulator.from_state(state)
        sink = cls(layers=state["layers"], min_scale=state["min_scale"])
        Sink.begin(sink, 0, state["layers"], acc.mean.shape[1])
        sink.acc_, sink._counts = acc, [acc.count] * len(state["layers"])
        return sink

    def result(self) -> Normalizer:
        self._check_begun()
        if self.acc_.count == 0:
            raise RuntimeError("NormStatsSink saw no tokens")
        std = (self.acc_.m2 / self.acc_.count).sqrt()
        floor = (self.min_scale * std.mean(dim=1, keepdim=True)).clamp_min(1e-12)
        std = torch.maximum(std, floor)
        return Normalizer(layers=list(self.layers_), mean=self.acc_.mean.float(), scale=std.float())
