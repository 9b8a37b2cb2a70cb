"""Concept fitting of a run: every requested type's token-level and CLS-level banks.

Split out of :mod:`superact_lens.pipeline` (which streams, merges and calibrates).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from torch import Tensor
from tqdm import tqdm

from superact_lens.concepts import ConceptBank, fit_concepts, make_estimator
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

if TYPE_CHECKING:
    from superact_lens.pipeline import RunConfig

__all__ = ["fit_banks", "phases", "spanless_fallback"]

log = logging.getLogger("superact_lens.pipeline")


def spanless_fallback(sample: TokenSample, names: list[str]) -> tuple[TokenSample, list[str]]:
    """Concepts labelled present but never located (no span in any train sample)
    have no in-concept tokens to learn from. Rather than fail, learn them from
    every token of their positive samples (sample-level supervision), and say so."""
    has_tokens = sample.token_concepts.any(0)
    has_samples = sample.sample_labels.any(0)
    weak = [c for c in range(len(names)) if has_samples[c] and not has_tokens[c]]
    if not weak:
        return sample, []
    token_concepts = sample.token_concepts.clone()
    token_concepts[:, weak] = sample.sample_labels[:, weak]
    notes = [
        f"concept {names[c]!r} has no span in the train split: its token-level concepts were "
        "learned from all tokens of its positive samples, and its SuperActivator threshold "
        "falls back to max-token calibration where cal has no span either"
        for c in weak
    ]
    for note in notes:
        log.warning(note)
    return replace(sample, token_concepts=token_concepts), notes


def phases(kinds: Sequence[str], verb: str, progress: bool) -> Iterator[str]:
    """Yield ``kinds`` under a stderr bar named after the current one ("fitting linsep")."""
    bar = tqdm(kinds, disable=not progress, file=sys.stderr, unit="type", leave=False)
    with bar:
        for kind in bar:
            bar.set_description(f"{verb} {kind}")
            yield kind


def fit_banks(
    config: RunConfig,
    sample: TokenSample,
    normalizer: Normalizer,
    train_emb: Tensor,
    train_labels: Tensor,
    layers: list[int],
    names: list[str],
) -> tuple[dict[str, ConceptBank], dict[str, ConceptBank]]:
    """Token-level and CLS-level banks of every requested type, fitted on TRAIN only."""
    n_train = train_emb.shape[1]
    banks: dict[str, ConceptBank] = {}
    cls_banks: dict[str, ConceptBank] = {}
    for kind in phases(config.concepts, "fitting", config.progress):
        log.info("fitting %s concepts", kind)
        unsupervised = kind in ("kmeans", "klinsep")
        # The CLS level clusters train samples, so k cannot exceed their number.
        k = None if config.n_clusters is None else min(config.n_clusters, n_train)
        params = {"n_clusters": k} if unsupervised else {}
        banks[kind] = fit_concepts(kind, sample, normalizer, names, seed=config.seed, **params)
        # CLS-level concepts of the same kind. Clusters: as many as at token level,
        # so one TokenScores carries both (the detector matches columns either way).
        if unsupervised:
            params = {"n_clusters": min(banks[kind].n_concepts, n_train)}
        cls_est = make_estimator(kind, seed=config.seed, **params)
        cls_banks[kind] = cls_est.fit_cls(train_emb, train_labels, layers, normalizer, names).bank_
    return banks, cls_banks
