"""Concept extraction (SPEC §3): ConceptBank plus sklearn-style extractors fitted on TRAIN only.

Each extractor takes its hyper-parameters in ``__init__``, learns in ``fit`` (token
level, on a bounded :class:`~superact_lens.sinks.token_sample.TokenSample`) or
``fit_cls`` (CLS level, on sample embeddings), and exposes the result as ``bank_``.
Vectors live in the space of the Normalizer passed to ``fit``: score with it.
"""

from superact_lens.concepts.bank import ConceptBank
from superact_lens.concepts.fit import CONCEPT_TYPES, fit_concepts, make_estimator
from superact_lens.concepts.kmeans import KMeansConcepts, KMeansSeparatorConcepts, elbow_k
from superact_lens.concepts.linsep import LinearSeparatorConcepts
from superact_lens.concepts.mean import MeanConcepts
from superact_lens.concepts.sae import SAEConcepts, load_sae, sae_layer

__all__ = [
    "CONCEPT_TYPES",
    "ConceptBank",
    "KMeansConcepts",
    "KMeansSeparatorConcepts",
    "LinearSeparatorConcepts",
    "MeanConcepts",
    "SAEConcepts",
    "elbow_k",
    "fit_concepts",
    "load_sae",
    "make_estimator",
    "sae_layer",
]
