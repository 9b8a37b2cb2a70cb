"""Unsupervised concepts from k-means (SPEC §3.3 and §3.4).

``KMeansConcepts``: k-means on the normalised tokens of each layer (labels are
ignored); each unit-normalised centroid is a cosine concept.
``KMeansSeparatorConcepts``: the same clustering, then one bias-free, balanced
linear separator per cluster (members vs non-members, one-vs-rest).

Both produce banks with K columns named ``cluster_0..cluster_{K-1}`` and
``metadata["unsupervised"] = True``. Cluster ``j`` of one layer has nothing to do
with cluster ``j`` of another: the detector matches each ground-truth concept to
its best column per layer by cal F1 (SPEC §3.3), so no matching happens here.

Choosing k (``n_clusters=None``), the elbow rule: for each candidate in
``k_grid`` run k-means (``n_init=1``) on ``elbow_tokens`` tokens of the first,
middle and last layer; average over those layers the inertia relative to the
smallest candidate; rescale the curve and ``log2 k`` to [0, 1] and take the
candidate farthest below the chord joining the curve's end points (the
"kneedle" knee). One k serves all layers so
the bank stays rectangular.

Memory and time are bounded by ``max_tokens``: clustering (and the separators)
use a seeded subsample of at most that many tokens, the same rows for every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from superact_lens.concepts._common import (
    ConceptEstimator,
    normalized_layers,
    normalizer_note,
    unit,
)
from superact_lens.concepts._lloyd import kmeans
from superact_lens.concepts.bank import ConceptBank
from superact_lens.concepts.linsep import LinearSeparatorConcepts, separators
from superact_lens.errors import InputError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

__all__ = ["KMeansConcepts", "KMeansSeparatorConcepts", "elbow_k"]

DEFAULT_K_GRID = (2, 4, 8, 16, 32, 64, 128)


def elbow_k(ks: Sequence[int], inertia: Sequence[float]) -> int:
    """Knee of a decreasing inertia curve: the point farthest below the end-to-end chord.

    ``x = log2 k`` and ``inertia`` are both rescaled to [0, 1]; returns the chosen k.
    """
    if len(ks) != len(inertia) or len(ks) == 0:
        raise InputError("ks and inertia must be non-empty and of equal length")
    if len(ks) <= 2:
        return int(ks[0])
    x = np.log2(np.asarray(ks, dtype=float))
    y = np.asarray(inertia, dtype=float)
    x = (x - x[0]) / max(x[-1] - x[0], 1e-12)
    y = (y - y.min()) / max(y.max() - y.min(), 1e-12)
    chord = y[0] + (y[-1] - y[0]) * x
    return int(ks[int(np.argmax(chord - y))])


class KMeansConcepts(ConceptEstimator):
    """k-means centroids of normalised tokens, one bank column per cluster.

    Args:
        n_clusters: K, or None to choose it by the elbow rule over ``k_grid``.
        k_grid: candidate K values for the elbow rule.
        max_tokens: tokens (a seeded subsample) used to cluster each layer.
        elbow_tokens: tokens per layer used for the elbow search.
        n_init, max_iter: k-means restarts and Lloyd iterations (Euclidean, like the
            paper's FAISS; the paper allows 300 iterations, we default to 100 for speed).
        seed: seeds the subsample and k-means.
        level: label of the bank fitted by ``fit`` ("token"); ``fit_cls`` gives "cls".

    Attributes:
        bank_: ConceptBank ``[layers, K, d_model]``, cosine=True, unit centroids.
        n_clusters_: the K used.
        inertia_: ``{k: mean relative inertia}`` of the elbow search (empty if K given).
        labels_: ``[layers, m]`` cluster of each subsampled token; ``indices_``: the rows used.
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        k_grid: Sequence[int] = DEFAULT_K_GRID,
        max_tokens: int = 10000,
        elbow_tokens: int = 2000,
        n_init: int = 1,
        max_iter: int = 100,
        seed: int = 0,
        level: str = "token",
    ) -> None:
        self.n_clusters = n_clusters
        self.k_grid = k_grid
        self.max_tokens = max_tokens
        self.elbow_tokens = elbow_tokens
        self.n_init = n_init
        self.max_iter = max_iter
        self.seed = seed
        self.level = level

    def _check_params(self, n: int) -> None:
        if self.n_clusters is not None and not 1 <= int(self.n_clusters) <= n:
            raise InputError(f"n_clusters must be in [1, {n} tokens], got {self.n_clusters}")
        if self.n_clusters is None and not any(2 <= k <= n for k in self.k_grid):
            raise InputError(f"k_grid {tuple(self.k_grid)} has no candidate in [2, {n} tokens]")
        if self.max_tokens < 1 or self.elbow_tokens < 1:
            raise InputError("max_tokens and elbow_tokens must be positive")

    def _kmeans(self, x: Tensor, k: int, n_init: int | None = None) -> tuple[Tensor, Tensor, float]:
        return kmeans(x, k, seed=self.seed, n_init=n_init or self.n_init, max_iter=self.max_iter)

    def _cluster(
        self, sample: TokenSample, normalizer: Normalizer | None
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per layer: subsampled normalised tokens ``[m, d]``, centroids ``[K, d]``, labels."""
        n = sample.embeddings.shape[1]
        self._check_params(n)
        gen = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=gen)
        self.indices_ = order[: self.max_tokens].sort().values.to(sample.embeddings.device)
        elbow_rows = order[: self.elbow_tokens].to(sample.embeddings.device)
        layers = list(normalized_layers(sample, normalizer))
        self.inertia_: dict[int, float] = {}
        if self.n_clusters is None:
            ks = [k for k in self.k_grid if 2 <= k <= min(n, self.elbow_tokens)]
            curves = []
            # At most 3 evenly spaced layers: the elbow moves little with depth.
            picks = sorted({round(i * (len(layers) - 1) / 2) for i in range(3)})
            for _, z in [layers[i] for i in picks]:
                x = z[elbow_rows]
                curve = np.array([self._kmeans(x, k, 1)[2] for k in ks])
                curves.append(curve / max(curve[0], 1e-12))
            mean_curve = np.mean(curves, axis=0)
            self.inertia_ = {int(k): float(v) for k, v in zip(ks, mean_curve, strict=True)}
            self.n_clusters_ = elbow_k(ks, mean_curve.tolist())
        else:
            self.n_clusters_ = int(self.n_clusters)
        subs, centroids, labels = [], [], []
        for _, z in layers:
            sub = z[self.indices_]
            c, lab, _ = self._kmeans(sub, self.n_clusters_)
            subs.append(sub)
            centroids.append(c)
            labels.append(lab)
        self.labels_ = torch.stack(labels)
        return subs, centroids, labels

    def _metadata(self, normalizer: Normalizer | None, labels: list[Tensor]) -> dict:
        return {
            **normalizer_note(normalizer),
            "unsupervised": True,
            "n_clusters": self.n_clusters_,
            "elbow_inertia": {str(k): v for k, v in self.inertia_.items()},
            "n_fit_tokens": int(self.indices_.numel()),
            "cluster_sizes": [
                torch.bincount(lab, minlength=self.n_clusters_).tolist() for lab in labels
            ],
            "params": {
                k: v
                for k, v in self.get_params(deep=False).items()
                if k not in ("k_grid", "separator")
            }
            | {"k_grid": list(self.k_grid)},
        }

    def _fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None,
        names: Sequence[str] | None,
        level: str,
    ) -> ConceptBank:
        _, centroids, labels = self._cluster(sample, normalizer)
        return ConceptBank(
            layers=list(sample.layers),
            names=[f"cluster_{j}" for j in range(self.n_clusters_)],
            vectors=unit(torch.stack(centroids)),
            cosine=True,
            kind="kmeans",
            level=level,
            metadata=self._metadata(normalizer, labels),
        )


class KMeansSeparatorConcepts(KMeansConcepts):
    """k-means, then a linear separator per cluster (members vs all other tokens).

    Args: those of :class:`KMeansConcepts`, plus
        separator: a :class:`LinearSeparatorConcepts` whose solver settings are used
            (default: the fast lbfgs solver capped at 30 iterations, seeded with ``seed``).

    Attributes:
        bank_: ConceptBank ``[layers, K, d_model]``, kind "klinsep", cosine=False.
    """

    def __init__(
        self,
        n_clusters: int | None = None,
        k_grid: Sequence[int] = DEFAULT_K_GRID,
        max_tokens: int = 10000,
        elbow_tokens: int = 2000,
        n_init: int = 1,
        max_iter: int = 100,
        seed: int = 0,
        level: str = "token",
        separator: LinearSeparatorConcepts | None = None,
    ) -> None:
        super().__init__(
            n_clusters, k_grid, max_tokens, elbow_tokens, n_init, max_iter, seed, level
        )
        self.separator = separator

    def _fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None,
        names: Sequence[str] | None,
        level: str,
    ) -> ConceptBank:
        subs, _, labels = self._cluster(sample, normalizer)
        # Clusters are nearly separable, so full L-BFGS convergence only inflates |w|:
        # 30 iterations gave the same argmax assignment at ~1/6 of the time of 100.
        sep = self.separator
        if sep is None:
            sep = LinearSeparatorConcepts(seed=self.seed, max_iter=30)
        k = torch.arange(self.n_clusters_)
        vectors = []
        for sub, lab in zip(subs, labels, strict=True):
            member = lab[:, None] == k.to(lab.device)[None, :]  # [m, K] one-vs-rest
            vectors.append(separators(sub, member, ~member, sep))
        metadata = self._metadata(normalizer, labels)
        metadata["separator"] = {
            "solver": sep.solver,
            "l2": sep.l2,
            "max_iter": sep.max_iter,
            "seed": sep.seed,
        }
        return ConceptBank(
            layers=list(sample.layers),
            names=[f"cluster_{j}" for j in range(self.n_clusters_)],
            vectors=torch.stack(vectors),
            cosine=False,
            kind="klinsep",
            level=level,
            metadata=metadata,
        )
