"""Turn an :class:`~superact_lens.pipeline.Experiment` into ``results.json`` (INTERFACES §3)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from superact_lens.analysis import separability
from superact_lens.detection import bootstrap_weighted_f1, detection_metrics

if TYPE_CHECKING:
    from superact_lens.pipeline import Experiment
    from superact_lens.sinks.token_sample import TokenSample

__all__ = ["build_results", "SUPERACT_METHODS"]

SUPERACT_METHODS = ("superact", "superact_fixed")


def _num(x: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf/missing)."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _param(det: object, name: str, c: int) -> Any:
    values = getattr(det, name, None)
    if values is None:
        return None
    value = values[c]
    return value.item() if hasattr(value, "item") else value


def method_result(exp: Experiment, kind: str, method: str) -> dict:
    """weighted F1 with its bootstrap CI and the per-concept figures of one method."""
    test = exp.test[kind]
    pred = exp.predictions[kind][method]
    det = exp.detectors[kind][method]
    metrics = detection_metrics(pred, test.labels)
    lo, hi = bootstrap_weighted_f1(
        pred, test.labels, n_resamples=exp.config.n_bootstrap, seed=exp.config.seed
    )
    per_concept = {}
    for c, name in enumerate(exp.dataset.concepts):
        m = metrics["per_concept"][c]
        n_value = _param(det, "n_", c) if method in SUPERACT_METHODS else None
        column = _param(det, "column_", c)
        entry = {
            "f1": _num(m["f1"]),
            "precision": _num(m["precision"]),
            "recall": _num(m["recall"]),
            "support": int(m["support"]),
            "layer": _param(det, "layer_", c),
            "sparsity": _num(n_value),
            "threshold": _num(_param(det, "threshold_", c)),
            "cal_f1": _num(_param(det, "cal_f1_", c)),
        }
        if column is not None and exp.banks[kind].metadata.get("unsupervised"):
            bank = exp.cls_banks[kind] if method == "cls" else exp.banks[kind]
            entry["matched_column"] = bank.names[int(column)]
        per_concept[name] = entry
    return {
        "weighted_f1": _num(metrics["weighted_f1"]),
        "ci95": [_num(lo), _num(hi)],
        "per_concept": per_concept,
    }


def separability_result(exp: Experiment, kind: str) -> dict:
    """Per layer, concept-averaged separability (q95, q99) and coverage on TEST.

    For unsupervised banks each concept is measured on the column the
    SuperActivator detector matched to it on CAL.
    """
    test = exp.test[kind]
    scores = test.scores
    det = exp.detectors[kind]["superact"]
    if exp.banks[kind].metadata.get("unsupervised"):
        columns = [int(c) for c in det.column_]  # type: ignore[attr-defined]
        scores = scores.select_concepts(columns, names=list(exp.dataset.concepts))
    sep = separability(scores, test.labels, test.masks, qs=(0.95, 0.99))
    out: dict[str, dict[str, float | None]] = {}
    for i, layer in enumerate(scores.layers):
        out[str(layer)] = {
            "q95": _num(torch.nanmean(sep["q95"][i]).item()),
            "q99": _num(torch.nanmean(sep["q99"][i]).item()),
            "coverage99": _num(torch.nanmean(sep["coverage99"][i]).item()),
        }
    return out


def build_results(exp: Experiment, *, n_train: int, token_sample: TokenSample) -> dict:
    """The results.json dictionary (INTERFACES §3 keys plus a few extras)."""
    ds = exp.dataset
    from superact_lens.pipeline import METHODS

    results = {
        kind: {method: method_result(exp, kind, method) for method in METHODS}
        for kind in exp.config.concepts
    }
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
        "timing_s": {k: round(v, 3) for k, v in exp.timing.items()},
        "config": {
            "seed": exp.config.seed,
            "batch_size": exp.config.batch_size,
            "device": exp.config.device,
            "n_bootstrap": exp.config.n_bootstrap,
            "token_sample": int(token_sample.embeddings.shape[1]),
        },
    }
