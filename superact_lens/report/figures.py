"""The PNG figures of ``superact run`` (SPEC §5), drawn from an in-memory Experiment.

Per concept type (file names prefixed with the type): separability and coverage
by depth, in/out distributions, F1 vs N, best-N and best-layer histograms, the
SuperActivator-ratio CDF, SuperActivator positions and F1 by depth of every
method, all on TEST. Plus a token heat map of one positive test sample for the
first (headline) concept type; for an image dataset, patch-grid overlays over
the images instead (:mod:`.image_figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from superact_lens.plots import save_report_figures, token_heatmap_png  # noqa: E402

if TYPE_CHECKING:
    from superact_lens.pipeline import Experiment

__all__ = ["save_figures"]


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
    for kind in exp.config.concepts:
        test = exp.test[kind]
        saved = save_report_figures(
            out,
            exp.detectors[kind],
            test.scores,
            test.labels,
            test.masks,
            list(exp.dataset.concepts),
            prefix=f"{kind}_",
        )
        names += [path.name for path in saved["figures"].values()]
        plt.close("all")
    kind = exp.config.concepts[0]
    if getattr(exp.dataset, "is_image", False):  # patch overlays over the images instead
        from superact_lens.report.image_figures import save_image_heatmaps

        drawn = save_image_heatmaps(exp, kind, out / f"{kind}_heatmap_example.png")
    else:
        drawn = _heatmap(exp, kind, out / f"{kind}_heatmap_example.png")
    if drawn:
        names.append(f"{kind}_heatmap_example.png")
        plt.close("all")
    return names
