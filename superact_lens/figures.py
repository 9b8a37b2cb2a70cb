"""The PNG figures of ``superact run`` (SPEC §5), drawn from an in-memory Experiment.

Per concept type: separability and coverage by depth, and F1 by depth for every
method. For the first concept type (the headline one, ``linsep`` by default):
in/out distributions of the best concept, F1 vs N, best-N and best-layer
histograms, the SuperActivator-ratio CDF, SuperActivator positions and a token
heat map of one positive test sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from superact_lens.analysis import (  # noqa: E402
    activation_distributions,
    best_layer_histogram,
    best_n_histogram,
    f1_by_depth,
    f1_vs_n,
    separability,
    superactivator_positions,
    superactivator_ratio,
)
from superact_lens.plots import (  # noqa: E402
    plot_best_layer,
    plot_best_n,
    plot_distributions,
    plot_f1_by_depth,
    plot_f1_vs_n,
    plot_sa_positions,
    plot_sa_ratio_cdf,
    plot_separability,
    token_heatmap_png,
)

if TYPE_CHECKING:
    from superact_lens.pipeline import Experiment

__all__ = ["save_figures", "depth_table"]


def depth_table(exp: Experiment, kind: str) -> dict:
    """F1 by depth of every method on TEST (the CLS baseline on its own scores)."""
    detectors = exp.detectors[kind]
    test = exp.test[kind]
    token_methods = {m: d for m, d in detectors.items() if m != "cls"}
    depth = f1_by_depth(token_methods, test.scores, test.labels)
    if "cls" in detectors:
        cls_depth = f1_by_depth({"cls": detectors["cls"]}, test.cls, test.labels)
        depth["methods"].append("cls")
        depth["per_concept"]["cls"] = cls_depth["per_concept"]["cls"]
        depth["weighted"]["cls"] = cls_depth["weighted"]["cls"]
        depth["matrix"] = [depth["weighted"][m] for m in depth["methods"]]
    return depth


def _heatmap(exp: Experiment, kind: str, path: Path) -> bool:
    """Token heat map of the positive test sample with the highest score for the
    concept SuperActivator detects best; SuperActivators outlined."""
    det = exp.detectors[kind]["superact"]
    test = exp.test[kind]
    f1 = [v["f1"] for v in exp.results["results"][kind]["superact"]["per_concept"].values()]
    c = max(range(len(f1)), key=lambda i: f1[i] or 0.0)
    positives = [int(i) for i in test.labels[:, c].nonzero().flatten()]
    if not positives:
        return False
    layer_pos = exp.layers.index(int(det.layer_[c]))  # type: ignore[attr-defined]
    column = int(det.column_[c])  # type: ignore[attr-defined]

    def peak(i: int) -> float:
        s = test.scores.sample(i)[layer_pos, :, column]
        return float(s.max()) if s.numel() else float("-inf")

    best = max(positives, key=peak)
    scores = test.scores.sample(best)[layer_pos, :, column]
    if scores.numel() == 0:
        return False
    ds = exp.dataset
    row = int(ds.split_indices("test")[best])
    lens_tokens = exp.tokens_of(row)
    start = int(test.scores.offsets[best])
    in_concept = test.masks[start : start + scores.numel(), c].tolist()
    name = ds.concepts[c]
    token_heatmap_png(
        lens_tokens,
        scores.tolist(),
        path,
        threshold=float(det.threshold_[c]),  # type: ignore[attr-defined]
        in_concept=in_concept,
        title=f"{kind} · {name} · layer {int(det.layer_[c])} · "  # type: ignore[attr-defined]
        f"N={float(det.n_[c]):g}% (outlined: SuperActivators, bold: in-concept span)",  # type: ignore[attr-defined]
    )
    return True


def save_figures(exp: Experiment, out: str | Path) -> list[str]:
    """Write the figures into ``out``; return their file names (relative to ``out``)."""
    out = Path(out)
    names: list[str] = []

    def keep(fig_name: str) -> None:
        names.append(fig_name)
        plt.close("all")

    for kind in exp.config.concepts:
        test = exp.test[kind]
        det = exp.detectors[kind]["superact"]
        columns = det.column_ if exp.banks[kind].metadata.get("unsupervised") else None  # type: ignore[attr-defined]
        sep = separability(test.scores, test.labels, test.masks, columns=columns)
        plot_separability(sep, out / f"separability_{kind}.png", title=f"{kind} concepts (test)")
        keep(f"separability_{kind}.png")
        plot_f1_by_depth(depth_table(exp, kind), out / f"f1_by_depth_{kind}.png")
        keep(f"f1_by_depth_{kind}.png")

    kind = exp.config.concepts[0]
    test, det = exp.test[kind], exp.detectors[kind]["superact"]
    names_c = list(exp.dataset.concepts)
    columns = det.column_ if exp.banks[kind].metadata.get("unsupervised") else None  # type: ignore[attr-defined]
    f1 = [v["f1"] or 0.0 for v in exp.results["results"][kind]["superact"]["per_concept"].values()]
    best_c = max(range(len(f1)), key=lambda i: f1[i])
    dist = activation_distributions(test.scores, test.labels, test.masks, best_c, columns=columns)
    plot_distributions(
        dist, out / "distributions.png", title=f"{kind} · {names_c[best_c]}: D_in vs D_out by layer"
    )
    keep("distributions.png")
    plot_f1_vs_n(f1_vs_n(det), out / "f1_vs_n.png", names=names_c)  # type: ignore[arg-type]
    keep("f1_vs_n.png")
    plot_best_n(best_n_histogram(det), out / "best_n.png")  # type: ignore[arg-type]
    keep("best_n.png")
    plot_best_layer(best_layer_histogram(det), out / "best_layer.png", title=f"Best layer ({kind})")
    keep("best_layer.png")
    plot_sa_ratio_cdf(
        superactivator_ratio(det, test.scores, test.labels, test.masks), out / "sa_ratio_cdf.png"
    )
    keep("sa_ratio_cdf.png")
    plot_sa_positions(
        superactivator_positions(det, test.scores, test.labels), out / "sa_positions.png"
    )
    keep("sa_positions.png")
    if _heatmap(exp, kind, out / "heatmap_example.png"):
        keep("heatmap_example.png")
    return names
