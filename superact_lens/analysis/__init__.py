"""Analyses of the SuperActivator mechanism (SPEC §5): functions returning data
(numpy arrays / dicts); :mod:`superact_lens.plots` draws them."""

from .depth import f1_by_depth
from .distributions import activation_distributions, in_out_scores
from .separability import separability, separability_chunks, separability_summary
from .sparsity import best_layer_histogram, best_n_histogram, f1_vs_n
from .superactivators import (
    ecdf,
    superactivator_mask,
    superactivator_positions,
    superactivator_ratio,
)

__all__ = [
    "activation_distributions",
    "best_layer_histogram",
    "best_n_histogram",
    "ecdf",
    "f1_by_depth",
    "f1_vs_n",
    "in_out_scores",
    "separability",
    "separability_chunks",
    "separability_summary",
    "superactivator_mask",
    "superactivator_positions",
    "superactivator_ratio",
]
