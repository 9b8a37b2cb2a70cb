"""Turn an :class:`~superact_lens.pipeline.Experiment` into ``results.json`` (INTERFACES §3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from superact_lens.analysis import separability_chunks, separability_summary
from superact_lens.detection import detection_report, prompt_report

if TYPE_CHECKING:
    from superact_lens.pipeline import Experiment

__all__ = ["build_results", "method_result", "prompt_result", "separability_result"]


def method_result(exp: Experiment, kind: str, method: str) -> dict:
    """weighted F1 with its bootstrap CI and the per-concept figures of one method on TEST."""
    test = exp.test[kind]
    return detection_report(
        exp.detectors[kind][method],
        test.summary,
        test.labels,
        list(exp.dataset.concepts),
        n_resamples=exp.config.n_bootstrap,
        seed=exp.config.seed,
    )


def prompt_result(exp: Experiment) -> dict:
    """The ``prompt`` entry on TEST: the same metric functions as every method, null
    layer / sparsity / threshold, plus ``prompt``: the exact template and diagnostics.

    The question does not depend on the concept type, so one entry serves all types.
    """
    if exp.prompt is None or exp.prompt_pred is None:
        raise RuntimeError("prompt_result: the prompting baseline was not run")
    first = exp.config.concepts[0]
    return prompt_report(
        exp.prompt,
        exp.prompt_pred,
        exp.test[first].labels,
        list(exp.dataset.concepts),
        n_resamples=exp.config.n_bootstrap,
        seed=exp.config.seed,
    )


def separability_result(exp: Experiment, kind: str) -> dict:
    """Per layer, concept-averaged separability (q95, q99) and coverage on TEST,
    read chunk by chunk from the run's committed scores (exact, flat memory).

    For unsupervised banks each concept is measured on the column the
    SuperActivator detector matched to it on CAL.
    """
    test = exp.test[kind]
    det = exp.detectors[kind]["superact"]
    columns = det.column_ if exp.banks[kind].metadata.get("unsupervised") else None  # type: ignore[attr-defined]
    sep = separability_chunks(test.parts, qs=(0.95, 0.99), columns=columns)
    return separability_summary(sep)


def build_results(exp: Experiment, *, n_train: int, n_sample_tokens: int) -> dict:
    """The results.json dictionary (INTERFACES §3 keys plus a few extras);
    ``n_sample_tokens``: tokens in the concepts' training sample."""
    ds = exp.dataset
    scored = [m for m in exp.config.methods if m != "prompt"]
    results = {
        kind: {method: method_result(exp, kind, method) for method in scored}
        for kind in exp.config.concepts
    }
    if "prompt" in exp.config.methods:
        entry = prompt_result(exp)
        for kind in exp.config.concepts:
            results[kind]["prompt"] = entry
    return {
        "model": exp.config.model,
        "dataset": exp.config.dataset,
        "n_samples": {
            "train": n_train,
            "cal": int(exp.cal[exp.config.concepts[0]].labels.shape[0]),
            "test": int(exp.test[exp.config.concepts[0]].labels.shape[0]),
        },
        "layers": list(exp.layers),
        "concepts": list(ds.concepts),
        "results": results,
        "separability": {kind: separability_result(exp, kind) for kind in exp.config.concepts},
        "notes": list(exp.notes),
        "timing_s": {k: round(v, 3) for k, v in exp.timing.items()},
        "config": {
            "seed": exp.config.seed,
            "batch_size": exp.config.batch_size,
            "device": exp.config.device,
            "n_bootstrap": exp.config.n_bootstrap,
            "methods": list(exp.config.methods),
            "token_sample": n_sample_tokens,
        },
    }
