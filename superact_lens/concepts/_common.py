"""Shared plumbing of the concept extractors: input checks, per-layer normalisation,
the sklearn-style base class and the CLS-level adapter.

Every extractor works one layer at a time on the normalised embeddings
``z_hat = normalizer.apply(z, layer)`` (float32, on the device of the input), so
peak memory is one ``[n, d_model]`` copy on top of the bounded token sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from jaxtyping import Bool, Float
from sklearn.base import BaseEstimator
from torch import Tensor

from superact_lens.concepts.bank import ConceptBank
from superact_lens.errors import InputError, InputTypeError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

ON_EMPTY = ("raise", "zero")


def check_sample(sample: object, argname: str = "sample") -> TokenSample:
    if not isinstance(sample, TokenSample):
        raise InputTypeError(f"{argname} must be a TokenSample, got {type(sample).__name__}")
    if sample.embeddings.ndim != 3:
        raise InputError(
            f"{argname}.embeddings must be [layers, n, d_model]; "
            f"got {tuple(sample.embeddings.shape)}"
        )
    if sample.embeddings.shape[1] == 0:
        raise InputError(f"{argname} holds no tokens")
    if not sample.embeddings.is_floating_point():
        raise InputTypeError(
            f"{argname}.embeddings must be floating point, got {sample.embeddings.dtype}"
        )
    return sample


def check_normalizer(normalizer: object, sample: TokenSample) -> Normalizer | None:
    if normalizer is None:
        return None
    if not isinstance(normalizer, Normalizer):
        raise InputTypeError(
            f"normalizer must be a Normalizer or None, got {type(normalizer).__name__}"
        )
    d = sample.embeddings.shape[2]
    if normalizer.mean.shape[1] != d:
        raise InputError(f"normalizer has d_model {normalizer.mean.shape[1]}, sample has {d}")
    missing = [layer for layer in sample.layers if layer not in normalizer.layers]
    if missing:
        raise InputError(f"normalizer has no statistics for sample layers {missing}")
    return normalizer


def check_names(names: Sequence[str] | None, n_concepts: int) -> list[str]:
    if names is None:
        return [f"concept_{c}" for c in range(n_concepts)]
    names = list(names)
    if len(names) != n_concepts:
        raise InputError(f"names has {len(names)} entries but the sample has {n_concepts} concepts")
    if len(set(names)) != len(names):
        raise InputError("names must be unique")
    return names


def check_on_empty(on_empty: str) -> None:
    if on_empty not in ON_EMPTY:
        raise InputError(f"on_empty must be one of {ON_EMPTY}, got {on_empty!r}")


def normalized_layers(
    sample: TokenSample, normalizer: Normalizer | None
) -> Iterator[tuple[int, Float[Tensor, "n d_model"]]]:
    """Yield ``(layer, z_hat)`` one layer at a time, float32 on the sample's device."""
    for i, layer in enumerate(sample.layers):
        x = sample.embeddings[i].float()
        yield layer, (normalizer.apply(x, layer) if normalizer is not None else x)


def unit(v: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
    """Rows scaled to unit norm; zero rows stay zero."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def empty_concepts(
    counts: Float[Tensor, " concepts"], names: list[str], what: str, on_empty: str
) -> list[str]:
    """Names of concepts with no training examples; raise unless ``on_empty="zero"``."""
    empty = [names[c] for c in torch.nonzero(counts == 0).flatten().tolist()]
    if empty and on_empty == "raise":
        raise InputError(
            f"concepts {empty} have no {what} in the training sample; collect more "
            "train data or pass on_empty='zero' to give them a zero vector"
        )
    return empty


def normalizer_note(normalizer: Normalizer | None) -> dict:
    """Metadata recording which space the vectors live in (the bank must be used with it)."""
    if normalizer is None:
        return {
            "normalized": False,
            "normalizer_note": "vectors act on raw residuals; score with normalizer=None",
        }
    return {
        "normalized": True,
        "normalizer_layers": list(normalizer.layers),
        "normalizer_note": "vectors live in the space of the TRAIN Normalizer used at fit time; "
        "score with that same normalizer (ConceptBank.fold folds it in)",
    }


def cls_sample(
    embeddings: Float[Tensor, "layers n d_model"],
    labels: Bool[Tensor, "n concepts"],
    layers: Sequence[int],
) -> TokenSample:
    """View sample embeddings as a TokenSample with one 'token' per sample.

    At CLS level a sample is its own single token: positives for ``c`` are the
    samples labelled ``c`` and negatives the samples not labelled ``c``, which is
    exactly ``token_concepts = sample_labels = labels``.
    """
    if not isinstance(embeddings, Tensor) or embeddings.ndim != 3:
        raise InputError(
            "cls_embeddings must be a tensor [layers, n_samples, d_model]; got "
            f"{getattr(embeddings, 'shape', type(embeddings))}"
        )
    if not isinstance(labels, Tensor) or labels.ndim != 2 or labels.shape[0] != embeddings.shape[1]:
        raise InputError(
            f"labels must be Bool[n_samples={embeddings.shape[1]}, concepts]; got "
            f"{getattr(labels, 'shape', type(labels))}"
        )
    layers = [int(layer) for layer in layers]
    if len(layers) != embeddings.shape[0]:
        raise InputError(
            f"layers lists {len(layers)} layers but cls_embeddings has {embeddings.shape[0]} rows"
        )
    labels = labels.to(device=embeddings.device, dtype=torch.bool)
    n = embeddings.shape[1]
    return TokenSample(
        layers=layers,
        embeddings=embeddings,
        token_concepts=labels,
        sample_labels=labels,
        sample_ids=torch.arange(n, device=embeddings.device),
    )


class ConceptEstimator(BaseEstimator):
    """Base of the extractors: ``fit`` on a TokenSample, ``fit_cls`` on sample embeddings.

    Subclasses implement ``_fit(sample, normalizer, names, level) -> ConceptBank``.
    Hyper-parameters live in ``__init__`` (no work there); the fitted bank is ``bank_``.
    """

    level: str = "token"

    def fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None = None,
        names: Sequence[str] | None = None,
    ) -> ConceptEstimator:
        """Fit token-level concepts on a (bounded) token sample from the TRAIN split."""
        sample = check_sample(sample)
        normalizer = check_normalizer(normalizer, sample)
        level = getattr(self, "level", "token")
        if level not in ("token", "cls"):
            raise InputError(f"level must be 'token' or 'cls', got {level!r}")
        self.bank_ = self._fit(sample, normalizer, names, level)
        return self

    def fit_cls(
        self,
        cls_embeddings: Float[Tensor, "layers n_samples d_model"],
        labels: Bool[Tensor, "n_samples concepts"],
        layers: Sequence[int],
        normalizer: Normalizer | None = None,
        names: Sequence[str] | None = None,
    ) -> ConceptEstimator:
        """Fit CLS-level concepts on TRAIN sample embeddings (e.g. from SampleEmbeddingSink).

        Positives for ``c`` are samples with ``labels[:, c]``, negatives the rest.
        The resulting bank has ``level="cls"`` (use it as the lens's ``cls_bank``).
        """
        sample = cls_sample(cls_embeddings, labels, layers)
        normalizer = check_normalizer(normalizer, sample)
        self.bank_ = self._fit(sample, normalizer, names, "cls")
        return self

    def _fit(
        self,
        sample: TokenSample,
        normalizer: Normalizer | None,
        names: Sequence[str] | None,
        level: str,
    ) -> ConceptBank:
        raise NotImplementedError
