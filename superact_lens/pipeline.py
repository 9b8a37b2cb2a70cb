"""The whole method on one model and one dataset: what ``superact run`` does.

Two streaming passes over the data, never holding residuals:

1. TRAIN split -> normalisation statistics, a bounded token sample (in-concept
   tokens and tokens of negative samples) and the sample embeddings; concepts
   of every requested type are fitted from these.
2. CAL and TEST splits -> token scores of every concept bank, and the sample
   embedding's score on the CLS-level bank of the same type (CLS baseline).

Then every detector is calibrated on CAL (layer, N or threshold per concept)
and evaluated on TEST with bootstrap confidence intervals.

Both passes stream a fixed plan of chunks (:mod:`superact_lens.runstate`,
:mod:`superact_lens.run_passes`): each chunk's mergeable statistics are committed
to disk as it finishes, so a killed run resumes where it stopped, and several
processes (``run_rank`` on each rank of a torch.distributed group) can share the
chunks; the merged state, and so ``results``, is the same bit for bit in every case.

With ``"prompt"`` among the methods (generative models only, off by default: it
costs one forward pass per test sample and concept), the model is loaded once
with its language-model head, the lens streams its base model, and the prompting
baseline asks it about every TEST sample and concept; it needs no calibration.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from superact_lens.detection import METHODS, fit_detectors
from superact_lens.errors import InputError, InputTypeError
from superact_lens.experiment import Experiment, SplitScores
from superact_lens.results import build_results
from superact_lens.run_fit import fit_banks, phases
from superact_lens.run_fit import spanless_fallback as _spanless_fallback
from superact_lens.run_masks import PackedMasks, SomeRows
from superact_lens.run_passes import (
    load_fit,
    merge_pass1,
    merge_pass2,
    sample_range,
    save_fit,
    split_parts,
    stream_pass1,
    stream_pass2,
    summarize_pass2,
)
from superact_lens.run_prepare import RowsView, prepare
from superact_lens.runstate import RunState, World
from superact_lens.scores import TokenScores
from superact_lens.sinks import ProjectionSink, TokenCollector, sample_subset
from superact_lens.stats.summary import SplitSummary

__all__ = [
    "ALL_METHODS",
    "CONCEPT_KINDS",
    "METHODS",
    "Experiment",
    "RunConfig",
    "run_experiment",
    "run_rank",
]

log = logging.getLogger(__name__)

CONCEPT_KINDS = ("linsep", "mean", "kmeans", "klinsep")
#: Every method ``superact run`` knows; the default (``METHODS``) leaves out ``prompt``.
ALL_METHODS = (*METHODS, "prompt")


def _check_device(device: str) -> None:
    """Fail early, with the argument's name, on a device this machine does not have."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(
            f"--device: {device!r} is not a torch device (cpu, cuda, cuda:1, mps)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available on this machine")


@dataclass
class RunConfig:
    """Everything ``superact run`` takes. Layers may be indices or percents ("50%")."""

    model: str = "minilm"
    dataset: str = "wordnet-supersenses"
    concepts: tuple[str, ...] = ("linsep", "mean", "kmeans", "klinsep")
    layers: list[int | str] | None = None
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    n_bootstrap: int = 1000
    cap_in: int = 2000
    cap_neg: int = 20000
    max_length: int | None = None
    # Token-level clusters for kmeans/klinsep. None picks k by the elbow rule, which
    # on MiniLM's normalised tokens finds no knee (inertia falls almost linearly in
    # log k) and returns k=2; a fixed, generous k gives the matching real candidates.
    n_clusters: int | None = 64
    # Methods to report; "superact" is always added (separability, figures and the
    # report's claim check are built on it). "prompt" needs a generative model.
    methods: tuple[str, ...] = METHODS
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.methods, str):
            raise InputTypeError(f"methods: expected a tuple of method names, got {self.methods!r}")
        unknown_methods = [m for m in self.methods if m not in ALL_METHODS]
        if unknown_methods:
            raise InputError(
                f"--methods: unknown method(s) {unknown_methods}; "
                f"choose from {', '.join(ALL_METHODS)}"
            )
        chosen = {"superact", *self.methods}
        self.methods = tuple(m for m in ALL_METHODS if m in chosen)
        unknown = [c for c in self.concepts if c not in CONCEPT_KINDS]
        if unknown or not self.concepts:
            raise InputError(
                f"--concepts: unknown concept type(s) {unknown or self.concepts}; "
                f"choose from {', '.join(CONCEPT_KINDS)}"
            )
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be a positive integer, got {self.batch_size}")
        _check_device(self.device)
        if self.n_bootstrap < 1:
            raise InputError(f"n_bootstrap must be positive, got {self.n_bootstrap}")


def run_experiment(config: RunConfig, state_dir: str | Path | None = None) -> Experiment:
    """Run the whole method in this process and return the in-memory experiment
    (results in ``.results``). ``state_dir``: where the streamed state is committed
    (``OUT/.superact`` of a resumable run); a temporary folder when None."""
    if state_dir is not None:
        exp = run_rank(config, RunState(state_dir), World())
    else:
        with tempfile.TemporaryDirectory(prefix="superact-run-") as tmp:
            exp = run_rank(config, RunState(tmp), World())
            if exp is not None:  # the token scores are read from tmp: read them now
                for split in (exp.cal, exp.test):
                    for part in split.values():
                        part.scores  # noqa: B018
    if exp is None:  # pragma: no cover -- rank 0 of 1 always returns
        raise RuntimeError("run_experiment: no experiment on rank 0")
    return exp


def run_rank(
    config: RunConfig, state: RunState, world: World, dataset: Any = None
) -> Experiment | None:
    """One process's part of a run whose state lives in ``state`` (see runstate).

    Every rank streams its chunks of both passes; rank 0 merges pass 1 and fits
    the concepts, and after pass 2 merges the scores, calibrates and returns the
    experiment; the other ranks return None. Committed chunks are not streamed
    again, so a killed run continues where it stopped. ``dataset``: ``config.dataset``
    already read (the CLI reads it to fingerprint the run), or None to read it here.
    """
    t_start = time.perf_counter()
    if world.rank == 0:
        state.clean()
    world.barrier()
    lens, ds, layers, masks_of, prompt = prepare(config, dataset)
    names = list(ds.concepts)
    labels_all = torch.as_tensor(np.asarray(ds.labels, dtype=bool))
    idx = {s: np.asarray(ds.split_indices(s)) for s in ("train", "cal", "test")}
    for split, rows in idx.items():
        if len(rows) == 0:
            raise InputError(f"dataset {config.dataset!r} has no samples in split {split!r}")

    # Pass 1: TRAIN -> normaliser, token sample, sample embeddings.
    t0 = time.perf_counter()
    train_texts = RowsView(ds.texts, idx["train"])
    train_labels = labels_all[idx["train"]]

    def make_collector(sample_index: list[int] | None) -> TokenCollector:
        """A collector of TRAIN samples ``sample_index`` holding their masks only (None:
        no samples, to load a committed state into)."""
        chosen = [] if sample_index is None else sample_index
        masks = SomeRows(masks_of(idx["train"][chosen]), chosen, len(train_labels))
        return TokenCollector(
            masks,
            train_labels,
            cap_in=config.cap_in,
            cap_neg=config.cap_neg,
            seed=config.seed,
            sample_index=sample_index,
        )

    # CLS-level concepts are fitted on a stratified sample of TRAIN samples under the
    # token caps (all of them unless a concept has more positives than cap_in or
    # negatives than cap_neg): their embeddings would otherwise grow with the run.
    cls_rows = sample_subset(train_labels, config.cap_in, config.cap_neg, config.seed)
    bs = config.batch_size
    n_chunks = stream_pass1(
        state, world, lens, train_texts, make_collector, cls_rows, layers, bs, config.progress
    )
    world.barrier()
    t_embed_train = time.perf_counter() - t0

    # Concepts, fitted on TRAIN only (rank 0), committed to fit/ and read by every rank.
    t0 = time.perf_counter()
    notes: list[str] = []
    n_sample_tokens: int | None = None
    if world.rank == 0:
        with world.solo():
            normalizer, sample, cls_emb = merge_pass1(state, n_chunks, make_collector, cls_rows)
            sample, notes = _spanless_fallback(sample, names)
            n_sample_tokens = int(sample.embeddings.shape[1])
            if not state.fit_done():
                banks, cls_banks = fit_banks(
                    config, sample, normalizer, cls_emb, train_labels[cls_rows], layers, names
                )
                save_fit(state, normalizer, banks, cls_banks)
            del sample, cls_emb  # fitted: the rest of the run reads the banks from fit/
    world.barrier()
    normalizer, banks, cls_banks = load_fit(state, config.concepts)
    t_concepts = time.perf_counter() - t0

    # Pass 2: CAL and TEST -> token scores and CLS-level scores of every bank.
    t0 = time.perf_counter()
    eval_rows = np.concatenate([idx["cal"], idx["test"]])
    eval_texts = RowsView(ds.texts, eval_rows)

    def make_sinks() -> dict[str, ProjectionSink]:
        return {
            kind: ProjectionSink(bank, normalizer=normalizer, cls_bank=cls_banks[kind])
            for kind, bank in banks.items()
        }

    def eval_masks(pos: list[int]) -> PackedMasks:
        return masks_of(eval_rows[pos])

    n_chunks = stream_pass2(
        state, world, lens, eval_texts, make_sinks, eval_masks, layers, bs, config.progress
    )
    world.barrier()
    if world.rank != 0:
        return None
    if n_sample_tokens is None:  # pragma: no cover -- rank 0 merged pass 1 above
        raise RuntimeError("run_rank: rank 0 has no token sample")
    n_cal = len(idx["cal"])
    bounds = {"cal": range(0, n_cal), "test": range(n_cal, len(eval_rows))}

    def make_summary(split: str, kind: str, first: TokenScores) -> SplitSummary:
        return SplitSummary(
            first.layers,
            first.concepts,
            len(names),
            len(bounds[split]),
            seed=config.seed,
            fixed_n=5.0 if split == "cal" else None,  # superact_fixed's N (fit_detectors)
            match_columns=bool(banks[kind].metadata.get("unsupervised", False)),
            with_cls=first.cls is not None,
            in_concept=split == "cal",
            metadata=first.metadata,
        )

    def labels_of(pos: Tensor) -> Tensor:
        return labels_all[eval_rows[pos.numpy()]]

    summaries = summarize_pass2(state, n_chunks, bounds, make_summary, labels_of)
    t_embed_eval = time.perf_counter() - t0

    # Token scores on demand only; CAL rows come first, so each split is a view.
    loaded: dict[str, TokenScores] = {}
    eval_masks_all: list[Tensor] = []  # the merged masks, once loaded

    def loader(split: str, kind: str) -> Callable[[], tuple[TokenScores, Tensor]]:
        def load() -> tuple[TokenScores, Tensor]:
            if not loaded:
                scores, masks = merge_pass2(state, list(banks), n_chunks, len(eval_rows))
                if masks is None:  # pragma: no cover -- stream_pass2 commits them
                    raise RuntimeError(f"{state.pass2}: the chunks hold no token masks")
                loaded.update(scores)
                eval_masks_all.append(masks)
            lo, hi = bounds[split].start, bounds[split].stop
            part = sample_range(loaded[kind], lo, hi)
            start = int(loaded[kind].offsets[lo])
            return part, eval_masks_all[0][start : start + part.n_tokens]

        return load

    per_split = {
        split: {
            kind: SplitScores(
                summaries[split][kind],
                labels_all[idx[split]],
                loader(split, kind),
                split_parts(state, n_chunks, bounds[split], kind, labels_of),
            )
            for kind in banks
        }
        for split in bounds
    }

    exp = Experiment(
        config=config,
        lens=lens,
        dataset=ds,
        layers=layers,
        normalizer=normalizer,
        banks=banks,
        cls_banks=cls_banks,
        cal=per_split["cal"],
        test=per_split["test"],
        prompt=prompt,
        notes=notes,
    )

    t0 = time.perf_counter()
    with world.solo():
        for kind in phases(config.concepts, "calibrating", config.progress):
            calibrate(exp, kind)
    t_calibrate = time.perf_counter() - t0

    timing = {
        "embed": t_embed_train + t_embed_eval,
        "concepts": t_concepts,
        "calibrate": t_calibrate,
    }
    if prompt is not None:
        # Independent of the concept type: asked once, reported under every type.
        t0 = time.perf_counter()
        exp.prompt_pred = prompt.predict([ds.texts[i] for i in idx["test"]])
        timing["prompt"] = time.perf_counter() - t0
    exp.timing = {**timing, "total": time.perf_counter() - t_start}
    with world.solo():
        exp.results = build_results(exp, n_train=len(idx["train"]), n_sample_tokens=n_sample_tokens)
    return exp


def calibrate(exp: Experiment, kind: str) -> None:
    """Fit every detector on CAL for one concept type (TEST is scored in results.py).

    Unsupervised banks (clusters) are matched to ground-truth concepts by CAL F1
    inside each detector (``match_columns``).
    """
    cal = exp.cal[kind]
    detectors = fit_detectors(
        cal.summary,
        cal.labels,
        None,
        methods=[m for m in exp.config.methods if m in METHODS],
        seed=exp.config.seed,
        match_columns=bool(exp.banks[kind].metadata.get("unsupervised", False)),
    )
    exp.detectors[kind] = dict(detectors)
