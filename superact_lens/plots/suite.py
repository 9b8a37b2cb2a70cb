"""Every SPEC §5 figure for one concept type in one call (for the CLI report)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxtyping import Bool
from torch import Tensor

from superact_lens.analysis import (
    activation_distributions,
    best_layer_histogram,
    best_n_histogram,
    f1_by_depth,
    f1_vs_n,
    separability,
    separability_summary,
    superactivator_positions,
    superactivator_ratio,
)
from superact_lens.detection import SuperActivatorDetector
from superact_lens.scores import TokenScores

from .figures import (
    plot_best_layer,
    plot_best_n,
    plot_distributions,
    plot_f1_by_depth,
    plot_f1_vs_n,
    plot_sa_positions,
    plot_sa_ratio_cdf,
    plot_separability,
)

__all__ = ["save_report_figures"]


def save_report_figures(
    out_dir: str | Path,
    detectors: Mapping[str, Any],
    scores: TokenScores,
    labels: Bool[Tensor, "n C"],
    token_masks: Bool[Tensor, "T C"],
    concept_names: Sequence[str] | None = None,
    prefix: str = "",
    distribution_concept: int | None = None,
) -> dict[str, Any]:
    """Compute the analyses on ``scores`` (e.g. test) and save their PNGs in
    ``out_dir`` as ``{prefix}{name}.png``.

    ``detectors`` maps method names to fitted detectors; the SuperActivator
    figures use ``detectors["superact"]`` (skipped if absent). Columns follow
    that detector's ``column_`` (so clusters / SAE units work too).
    Returns ``{"figures": {name: path}, "separability": {layer: {...}}}``.
    """
    out = Path(out_dir)
    names = list(concept_names) if concept_names is not None else None
    sa = detectors.get("superact")
    columns = sa.column_ if isinstance(sa, SuperActivatorDetector) else None
    figs: dict[str, Path] = {}

    def path(name: str) -> Path:
        figs[name] = out / f"{prefix}{name}.png"
        return figs[name]

    sep = separability(scores, labels, token_masks, columns=columns)
    plot_separability(sep, path("separability"))
    concept = distribution_concept
    if concept is None:  # the most frequent concept
        concept = int(sep["support"].argmax()) if len(sep["support"]) else 0
    dist = activation_distributions(scores, labels, token_masks, concept, columns=columns)
    title = f"{names[concept]}: D_in vs D_out" if names else ""
    plot_distributions(dist, path("distributions"), title=title)
    if isinstance(sa, SuperActivatorDetector):
        plot_f1_vs_n(f1_vs_n(sa, scores, labels), path("f1_vs_n"), names=names)
        plot_best_n(best_n_histogram(sa), path("best_n"))
        plot_best_layer(best_layer_histogram(sa), path("best_layer"))
        ratio = superactivator_ratio(sa, scores, labels, token_masks)
        plot_sa_ratio_cdf(ratio, path("sa_ratio_cdf"))
        plot_sa_positions(superactivator_positions(sa, scores, labels), path("sa_positions"))
    if detectors:
        depth = f1_by_depth(detectors, scores, labels)
        plot_f1_by_depth(depth, path("f1_by_depth"), names=names)
    return {"figures": figs, "separability": separability_summary(sep)}
