"""Linear separators (SPEC §3.2, TCAV-style): ``v_c = w_c / |w_c|`` of a bias-free
classifier of positives vs negatives, classes balanced.

Token level: positives are the in-concept tokens (``token_concepts[:, c]``),
negatives are ALL tokens of samples that do not contain ``c``
(``~sample_labels[:, c]``). Out-of-span tokens of positive samples are left out
on purpose: self-attention leaks concept signal into them (SPEC §2).
CLS level (``fit_cls``): positive vs negative sample embeddings.

Scores are signed distances of the normalised embedding to the hyperplane
(``cosine=False``, zero bias).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from superact_lens.concepts import _solvers
from superact_lens.concepts._common import (
    ConceptEstimator,
    check_names,
    check_on_empty,
    empty_concepts,
    normalized_layers,
    normalizer_note,
    unit,
)
from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

__all__ = ["LinearSeparatorConcepts", "SOLVERS"]

SOLVERS = ("lbfgs", "adam")


class LinearSeparatorConcepts(ConceptEstimator):
    """Bias-free, class-balanced linear separators, one per concept per layer.

    Args:
        solver: "lbfgs" (default; balanced L2 logistic regression, all concepts of a
            layer at once) or "adam" (the paper's recipe; slow, kept as the reference).
        l2: L2 strength of the lbfgs objective (per-class mean losses + ``l2/2 |w|^2``).
        max_iter, tol: L-BFGS iterations per layer and gradient tolerance.
        warm_start: start each layer's L-BFGS from the previous layer's solution
            (layers in the sample's order; convex problem, so the same optimum up to
            the iteration cap; measured no faster on synthetic data, hence off).
        seed: seeds the adam solver's subsampling, splits and batches.
        lr, weight_decay, epochs, batch_size, lr_step, lr_gamma, patience, min_delta,
            val_frac: the adam recipe (Adam, StepLR, early stopping on held-out BCE).
        level: label of the bank fitted by ``fit`` ("token"); ``fit_cls`` gives "cls".
        on_empty: a concept with no positives or no negatives raises ValueError
            ("raise") or gets a zero vector recorded in ``metadata["empty"]`` ("zero").

    Attributes:
        bank_: ConceptBank, kind "linsep", cosine=False, unit vectors.
        weight_norm_: ``[layers, concepts]`` norms of the raw weights (0 = degenerate).
    """

    def __init__(
        self,
        solver: str = "lbfgs",
        l2: float = 1e-3,
        max_iter: int = 100,
        tol: float = 1e-6,
        warm_start: bool = False,
        seed: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        epochs: int = 100,
        batch_size: int = 32,
        lr_step: int = 10,
        lr_gamma: float = 0.5,
        patience: int = 15,
        min_delta: float = 1e-4,
        val_frac: float = 0.2,
        level: str = "token",
        on_empty: str = "raise",
    ) -> None:
        self.solver = solver
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol
        self.warm_start = warm_start
        self.seed = seed
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_step = lr_step
        self.lr_gamma = lr_gamma
        self.patience = patience
        self.min_delta = min_delta
        self.val_frac = val_frac
        self.level = level
        self.on_empty = on_empty

    def _solve(self, z: Tensor, pos: Tensor, neg: Tensor, init: Tensor | None = None) -> Tensor:
        """Raw weights ``[concepts, d]`` for one layer (``init``: lbfgs warm start)."""
        if self.solver == "lbfgs":
            return _solvers.fit_lbfgs(
                z, pos, neg, l2=self.l2, max_iter=self.max_iter, tol=self.tol, init=init
            )
        return _solvers.fit_adam(
            z, pos, neg, seed=self.seed, lr=self.lr, weight_decay=self.weight_decay,
            epochs=self.epochs, batch_size=self.batch_size, lr_step=self.lr_step,
            lr_gamma=self.lr_gamma, patience=self.patience, min_delta=self.min_delta,
            val_frac=self.val_frac,
        )  # fmt: skip

    def _check_params(self) -> None:
        if self.solver not in SOLVERS:
            raise InputError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.l2 < 0:
            raise InputError(f"l2 must be >= 0, got {self.l2}")
        if not 0 <= self.val_frac < 1:
            raise InputError(f"val_frac must be in [0, 1), got {self.val_frac}")
        check_on_empty(self.on_empty)

    def _fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None,
        names: Sequence[str] | None,
        level: str,
    ) -> ConceptBank:
        self._check_params()
        names = check_names(names, sample.n_concepts)
        device = sample.embeddings.device
        pos = sample.token_concepts.to(device=device, dtype=torch.bool)
        neg = ~sample.sample_labels.to(device=device, dtype=torch.bool)
        empty = set(empty_concepts(pos.sum(0), names, "positive tokens", self.on_empty))
        empty |= set(empty_concepts(neg.sum(0), names, "negative tokens", self.on_empty))
        keep = torch.tensor([n not in empty for n in names], device=device)
        vectors, norms = [], []
        w = None
        for _, z in normalized_layers(sample, normalizer):
            # Adjacent residual layers are similar: warm-start from the previous layer.
            w = self._solve(z, pos, neg, init=w if self.warm_start else None) * keep[:, None]
            norms.append(w.norm(dim=-1))
            vectors.append(unit(w))
        self.weight_norm_ = torch.stack(norms)
        metadata = {
            **normalizer_note(normalizer),
            "solver": self.solver,
            "params": {k: v for k, v in self.get_params().items() if k != "level"},
            "n_positive": pos.sum(0).tolist(),
            "n_negative": neg.sum(0).tolist(),
        }
        if empty:
            metadata["empty"] = {n: "no positives or negatives: zero vector" for n in sorted(empty)}
        return ConceptBank(
            layers=list(sample.layers),
            names=names,
            vectors=torch.stack(vectors),
            cosine=False,
            kind="linsep",
            level=level,
            metadata=metadata,
        )


def separators(z: Tensor, pos: Tensor, neg: Tensor, estimator: LinearSeparatorConcepts) -> Tensor:
    """Unit separator vectors ``[concepts, d]`` for one layer with ``estimator``'s solver."""
    estimator._check_params()
    return unit(estimator._solve(z, pos, neg))
