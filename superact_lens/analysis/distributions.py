"""In- vs out-of-concept activation distributions per layer (SPEC §5, paper Fig. 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Bool
from torch import Tensor

from superact_lens.errors import InputError
from superact_lens.scores import TokenScores

from ._common import check_with_masks, in_out_masks

__all__ = ["in_out_scores", "activation_distributions"]


def in_out_scores(
    scores: TokenScores,
    labels: Bool[Tensor, "n C"],
    token_masks: Bool[Tensor, "T C"],
    concept: int,
    columns: Sequence[int] | Tensor | None = None,
) -> dict[str, Any]:
    """Raw ``D_in`` and ``D_out`` scores of one concept at every layer:
    ``{"layers", "d_in": [L, m_in], "d_out": [L, m_out]}`` (numpy)."""
    labels, token_masks, cols = check_with_masks(scores, labels, token_masks, columns)
    if not 0 <= concept < labels.shape[1]:
        raise InputError(f"concept must be in [0, {labels.shape[1]}), got {concept}")
    d_in, d_out, _ = in_out_masks(scores, labels, token_masks)
    s = scores.tokens[:, :, cols[concept]]
    return {
        "layers": list(scores.layers),
        "d_in": s[:, d_in[:, concept]].double().numpy(),
        "d_out": s[:, d_out[:, concept]].double().numpy(),
    }


def activation_distributions(
    scores: TokenScores,
    labels: Bool[Tensor, "n C"],
    token_masks: Bool[Tensor, "T C"],
    concept: int,
    bins: int = 60,
    columns: Sequence[int] | Tensor | None = None,
) -> dict[str, Any]:
    """Histograms (densities) of ``D_in`` and ``D_out`` per layer on shared bin
    edges: ``{"layers", "edges" [L, bins+1], "in_density" [L, bins],
    "out_density" [L, bins], "n_in", "n_out", "out_q99" [L]}``."""
    if int(bins) < 1:
        raise InputError(f"bins must be >= 1, got {bins}")
    raw = in_out_scores(scores, labels, token_masks, concept, columns)
    d_in, d_out = raw["d_in"], raw["d_out"]
    n_layers = len(raw["layers"])
    edges = np.zeros((n_layers, bins + 1))
    dens_in, dens_out = np.zeros((n_layers, bins)), np.zeros((n_layers, bins))
    q99 = np.full(n_layers, np.nan)
    for i in range(n_layers):
        both = np.concatenate([d_in[i], d_out[i]])
        lo, hi = (both.min(), both.max()) if both.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        edges[i] = np.linspace(lo, hi, bins + 1)
        if d_in.shape[1]:
            dens_in[i] = np.histogram(d_in[i], edges[i], density=True)[0]
        if d_out.shape[1]:
            dens_out[i] = np.histogram(d_out[i], edges[i], density=True)[0]
            q99[i] = np.quantile(d_out[i], 0.99)
    return {
        "layers": raw["layers"],
        "edges": edges,
        "in_density": dens_in,
        "out_density": dens_out,
        "n_in": d_in.shape[1],
        "n_out": d_out.shape[1],
        "out_q99": q99,
    }
