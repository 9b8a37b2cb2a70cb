"""Per-layer normalisation of residual embeddings (SPEC §1).

Every layer's embeddings are mean-centred and scaled with statistics from the
TRAIN split only: ``z_hat = (z - mean[l]) / scale[l]`` with a per-dimension
mean and a per-dimension scale (standard deviation). The statistics are
accumulated by :class:`superact_lens.sinks.NormStatsSink`; this module holds
the result and applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from superact_lens.errors import InputError

__all__ = ["Normalizer"]


@dataclass
class Normalizer:
    """Per-layer mean and scale.

    Attributes:
        layers: residual layer indices the rows refer to.
        mean: ``[layers, d_model]``.
        scale: ``[layers, d_model]``, strictly positive.
    """

    layers: list[int]
    mean: Float[Tensor, "layers d_model"]
    scale: Float[Tensor, "layers d_model"]

    def __post_init__(self) -> None:
        if self.mean.shape != self.scale.shape or self.mean.ndim != 2:
            raise InputError(
                f"mean and scale must both be [layers, d_model]; got {tuple(self.mean.shape)} "
                f"and {tuple(self.scale.shape)}"
            )
        if self.mean.shape[0] != len(self.layers):
            raise InputError("mean has a different number of rows than layers")
        if not torch.isfinite(self.mean).all() or not torch.isfinite(self.scale).all():
            raise InputError("normaliser statistics contain NaN or inf")
        if (self.scale <= 0).any():
            raise InputError("normaliser scale must be strictly positive")

    def row(self, layer: int) -> int:
        """Row of ``layer`` in mean/scale; a clear error for a layer not covered."""
        try:
            return self.layers.index(layer)
        except ValueError:
            raise InputError(
                f"normaliser has no statistics for layer {layer}; it covers {self.layers}"
            ) from None

    def apply(self, x: Float[Tensor, "... d_model"], layer: int) -> Float[Tensor, "... d_model"]:
        r = self.row(layer)
        mean = self.mean[r].to(device=x.device, dtype=x.dtype)
        scale = self.scale[r].to(device=x.device, dtype=x.dtype)
        return (x - mean) / scale

    def to_dict(self) -> dict:
        return {"layers": list(self.layers)}
