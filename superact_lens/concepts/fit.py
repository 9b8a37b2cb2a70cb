"""``fit_concepts``: one call from a concept kind name to a fitted ConceptBank (used by the CLI)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

from superact_lens.concepts._common import ConceptEstimator
from superact_lens.concepts.bank import ConceptBank
from superact_lens.concepts.kmeans import KMeansConcepts, KMeansSeparatorConcepts
from superact_lens.concepts.linsep import LinearSeparatorConcepts
from superact_lens.concepts.mean import MeanConcepts
from superact_lens.concepts.sae import SAEConcepts
from superact_lens.errors import InputError, InputTypeError
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

__all__ = ["CONCEPT_TYPES", "fit_concepts", "make_estimator"]

#: concept kind -> estimator class (``ConceptBank.kind`` of the fitted bank).
CONCEPT_TYPES: dict[str, type[ConceptEstimator]] = {
    "mean": MeanConcepts,
    "linsep": LinearSeparatorConcepts,
    "kmeans": KMeansConcepts,
    "klinsep": KMeansSeparatorConcepts,
    "sae": SAEConcepts,
}


def make_estimator(kind: str, seed: int = 0, **params) -> ConceptEstimator:
    """An unfitted estimator of ``kind``; ``seed`` is passed where the estimator takes one."""
    if kind not in CONCEPT_TYPES:
        raise InputError(f"kind must be one of {sorted(CONCEPT_TYPES)}, got {kind!r}")
    cls = CONCEPT_TYPES[kind]
    accepted = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InputTypeError(f"{cls.__name__} got unexpected parameters {unknown}")
    if "seed" in accepted:
        params.setdefault("seed", seed)
    return cls(**params)


def fit_concepts(
    kind: str,
    sample: TokenSample,
    normalizer: Normalizer | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    **params,
) -> ConceptBank:
    """Fit token-level concepts of ``kind`` ("mean", "linsep", "kmeans", "klinsep", "sae").

    ``names`` name the sample's concepts (ignored by the unsupervised kinds, whose
    columns are clusters / SAE units). ``params`` go to the estimator (e.g.
    ``n_clusters=32``; "sae" needs ``path=...``).
    """
    return make_estimator(kind, seed=seed, **params).fit(sample, normalizer, names).bank_
