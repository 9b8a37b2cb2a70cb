"""The localisation benchmark (paper §4.2, Table 2) over a dataset's test split.

For every concept, the positive test samples that contain at least one
SuperActivator of it are explained with every method and both targets; each
attribution map is scored against the sample's in-concept token mask (AUROC,
best F1) and by its insertion and deletion curves. Means over samples come
with percentile bootstrap intervals.

Faithfulness areas are reported raw (``insertion``, ``deletion``: areas under
``f``) and normalised (``insertion_norm``, ``deletion_norm``: both curves of a
sample min-max rescaled to ``[0, 1]`` over the range they span together). The
local target is built from the text itself, so its raw ``f`` is larger
everywhere; the normalised areas compare the two targets on one scale. (A
rescaling by ``f(text) - f(baseline)`` alone was tried first: that gap is
near 0 on many texts, and the ratios exploded.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool
from torch import Tensor
from tqdm import tqdm

from superact_lens.errors import InputError

from .api import Localizer
from .forward import unit_labels
from .methods import METHODS
from .metrics import (
    auroc,
    best_f1,
    bootstrap_mean,
    curve_area,
    curve_masks,
    insertion_deletion,
)
from .targets import TARGETS

__all__ = [
    "METRICS",
    "LocalizationCase",
    "evaluate_cases",
    "local_minus_global",
    "select_cases",
    "summarize",
]

METRICS = ("auroc", "f1", "insertion", "deletion", "insertion_norm", "deletion_norm")


@dataclass
class LocalizationCase:
    """One (text, concept) pair to explain, with its ground-truth token mask."""

    row: int
    concept: int
    text: str
    mask: Bool[Tensor, " n_content"]
    records: list[dict[str, Any]] = field(default_factory=list)
    maps: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    superactivators: list[bool] = field(default_factory=list)


def select_cases(
    lens: Any,
    detector: Any,
    texts: Sequence[str],
    labels: Any,
    masks: Mapping[int, Tensor] | Sequence[Tensor],
    rows: Sequence[int],
    max_per_concept: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> list[LocalizationCase]:
    """Positive samples among ``rows`` with at least one SuperActivator, per concept.

    Args:
        texts, labels, masks: the whole dataset's texts, ``[n, C]`` labels and
            per-sample ``[n_content, C]`` token masks (a list, or a dict holding ``rows``).
        rows: the rows to consider (e.g. the test split).
        max_per_concept: keep at most this many per concept (a seeded random choice).
    """
    rows = [int(r) for r in rows]
    if not rows:
        raise InputError("rows: no samples to localise")
    labels = torch.as_tensor(np.asarray(labels, dtype=bool))
    if progress:
        print("localize: scoring the test split for SuperActivators", file=sys.stderr)
    scores = lens.scores(
        [texts[r] for r in rows],
        detector.bank,
        detector.normalizer,
        layers=detector.layers,
        progress=progress,
    )
    rng = np.random.default_rng(seed)
    cases: list[LocalizationCase] = []
    for c in range(len(detector.concepts)):
        li = scores.layers.index(detector.layer_of(c))
        above = scores.tokens[li, :, detector.column_of(c)] > detector.threshold_of(c)
        found = []
        for i, r in enumerate(rows):
            start, end = int(scores.offsets[i]), int(scores.offsets[i + 1])
            if bool(labels[r, c]) and bool(above[start:end].any()):
                found.append(r)
        if max_per_concept is not None and len(found) > max_per_concept:
            found = sorted(rng.choice(found, size=max_per_concept, replace=False).tolist())
        cases += [LocalizationCase(r, c, texts[r], masks[r][:, c].clone()) for r in found]
    return cases


def _faithfulness(curves: dict[str, Any]) -> dict[str, float]:
    """Areas of both curves min-max rescaled to ``[0, 1]`` over the range they span."""
    ins = np.asarray(curves["insertion_curve"], dtype=float)
    dele = np.asarray(curves["deletion_curve"], dtype=float)
    low = min(ins.min(), dele.min())
    span = max(ins.max(), dele.max()) - low
    if span < 1e-9:  # f does not move: the areas say nothing
        return {"insertion_norm": float("nan"), "deletion_norm": float("nan")}
    fractions = curves["fractions"]
    return {
        "insertion_norm": curve_area(torch.as_tensor((ins - low) / span), fractions),
        "deletion_norm": curve_area(torch.as_tensor((dele - low) / span), fractions),
    }


def evaluate_cases(
    localizer: Localizer,
    cases: list[LocalizationCase],
    methods: Sequence[str] = METHODS,
    targets: Sequence[str] = TARGETS,
    keep_maps: int = 0,
    n_points: int | None = 11,
    progress: bool = True,
) -> list[LocalizationCase]:
    """Explain every case with every method and target; fill ``case.records``.

    ``keep_maps``: keep the attribution maps (and tokens) of the first so many
    cases, for heat maps. ``n_points``: points per insertion/deletion curve
    (None: after every token).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"--methods: unknown method(s) {unknown}; choose from {METHODS}")
    bar = tqdm(
        total=len(cases) * len(targets) * len(methods),
        desc="localize: attributions",
        disable=not progress,
        file=sys.stderr,
        unit="map",
    )
    try:
        for k, case in enumerate(cases):
            problem, sa = localizer.problem(case.text, case.concept)
            if len(case.mask) != problem.n_tokens:
                raise RuntimeError(f"row {case.row}: token mask and tokenisation disagree")
            if k < keep_maps:
                case.tokens = unit_labels(localizer.lens, problem.batch)
                case.superactivators = sa.tolist()
            # every map first (the second target reuses the first's masked forwards),
            # then every curve mask in full batches, then the scores
            maps: dict[tuple[str, str], Tensor] = {}
            target_of: dict[str, Tensor] = {}
            for target in targets:
                chosen = localizer.set_target(problem, case.concept, target, sa).target
                if chosen is None:  # pragma: no cover -- set_target always sets one
                    raise RuntimeError(f"localize: no {target} target was set")
                target_of[target] = chosen
                for method in methods:
                    maps[target, method] = localizer.attribute(problem, method)
                    bar.update(1)
            problem.prefetch(torch.cat([curve_masks(m, n_points)[1] for m in maps.values()]))
            for (target, method), attr in maps.items():
                problem.target = target_of[target]
                curves = insertion_deletion(problem, attr, n_points)
                case.records.append(
                    {
                        "target": target,
                        "method": method,
                        "auroc": auroc(attr, case.mask),
                        "f1": best_f1(attr, case.mask),
                        "insertion": curves["insertion"],
                        "deletion": curves["deletion"],
                        **_faithfulness(curves),
                    }
                )
                if k < keep_maps:
                    case.maps.setdefault(target, {})[method] = attr.tolist()
    finally:
        bar.close()
    return cases


def summarize(
    cases: list[LocalizationCase], n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary[method][target][metric] = {mean, lo, hi, n}`` over the cases."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    records = [r for case in cases for r in case.records]
    for method in dict.fromkeys(r["method"] for r in records):
        out[method] = {}
        for target in dict.fromkeys(r["target"] for r in records):
            chosen = [r for r in records if r["method"] == method and r["target"] == target]
            out[method][target] = {
                metric: bootstrap_mean([r[metric] for r in chosen], n_bootstrap, seed)
                for metric in METRICS
            }
    return out


def local_minus_global(
    cases: list[LocalizationCase], n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired ``local - global`` difference per method and metric, over the same cases.

    ``out[method][metric] = {mean, lo, hi, n}``; the paper's claim for a metric holds
    here when the interval is above 0 (below 0 for the deletion areas).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    methods = dict.fromkeys(r["method"] for case in cases for r in case.records)
    for method in methods:
        out[method] = {}
        for metric in METRICS:
            diffs = []
            for case in cases:
                by_target = {r["target"]: r[metric] for r in case.records if r["method"] == method}
                if "local" in by_target and "global" in by_target:
                    diffs.append(by_target["local"] - by_target["global"])
            out[method][metric] = bootstrap_mean(diffs, n_bootstrap, seed)
    return out
