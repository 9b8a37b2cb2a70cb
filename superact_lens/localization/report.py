"""``localize.md`` (the paper's Table 2 layout) and heat maps of a few samples.

Table: one row per method; for each target (global concept vector,
SuperActivator local target) the mean AUROC, best F1, insertion and deletion
areas with 95% bootstrap intervals. A second table gives the normalised
faithfulness areas, a third the paired local - global differences and whether
the paper's finding (local beats global) holds for each metric.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from superact_lens.plots.token_page import write_detect_page

from .evaluate import LocalizationCase
from .methods import METHOD_LABELS

__all__ = ["heatmap_records", "render_markdown", "save_heatmap_page", "save_heatmaps"]

_TARGET_LABELS = {"global": "global", "local": "SuperActivator"}
_BETTER_HIGH = {"auroc": True, "f1": True, "insertion": True, "deletion": False}


def _cell(stat: dict[str, Any]) -> str:
    if not stat or not np.isfinite(stat.get("mean", float("nan"))):
        return "n/a"
    return f"{stat['mean']:.3f} [{stat['lo']:.3f}, {stat['hi']:.3f}]"


def _table(summary: dict, metrics: tuple[str, ...], names: dict[str, str]) -> list[str]:
    targets = [t for t in ("global", "local") if any(t in v for v in summary.values())]
    head = ["Method"] + [f"{names[m]} ({_TARGET_LABELS[t]})" for t in targets for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, per_target in summary.items():
        cells = [_cell(per_target.get(t, {}).get(m, {})) for t in targets for m in metrics]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return lines


def _verdict(stat: dict[str, Any], metric: str) -> str:
    if not stat or not np.isfinite(stat.get("mean", float("nan"))):
        return "n/a"
    high = _BETTER_HIGH[metric.removesuffix("_norm")]
    lo, hi = (stat["lo"], stat["hi"]) if high else (-stat["hi"], -stat["lo"])
    if lo > 0:
        return "yes"
    if hi < 0:
        return "no (global better)"
    return "tie"


def render_markdown(
    results: dict[str, Any], figures: list[str], command: str = "", page: str | None = None
) -> str:
    """The report: setup, the three tables, the heat maps."""
    summary, paired, setup = results["summary"], results["local_minus_global"], results["setup"]
    unit = setup.get("unit", "token")
    lines = ["# Localisation: global concept vector vs SuperActivator local target", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"Model `{setup['model']}`, dataset `{setup['dataset']}`, concept type "
        f"`{setup['concept_type']}`; {setup['n_cases']} (sample, concept) pairs: positive test "
        f"samples with at least one SuperActivator (at most {setup['max_samples']} per concept). "
        f"Objective `f(x; target) = mean_t cos(z_hat_t(x), target)` at each concept's detector "
        f"layer; baseline: {setup['baseline']}. Means with 95% bootstrap intervals "
        f"({setup['n_bootstrap']} resamples). Time: {setup['seconds']:.0f} s.",
        "",
        "## Accuracy and faithfulness (raw areas under f)",
        "",
        f"AUROC and F1 against the in-concept {unit} mask: higher is better. Insertion: "
        "higher is better; deletion: lower is better.",
        "",
    ]
    names = {"auroc": "AUROC", "f1": "F1", "insertion": "Ins.", "deletion": "Del."}
    lines += _table(summary, ("auroc", "f1", "insertion", "deletion"), names)
    lines += [
        "",
        "## Normalised faithfulness",
        "",
        "Each sample's two curves min-max rescaled to [0, 1] over the range they span "
        "together (the local target is built from the input itself, so its raw f is "
        "larger everywhere; this puts both targets on one scale).",
        "",
    ]
    names_n = {"insertion_norm": "Ins. (norm)", "deletion_norm": "Del. (norm)"}
    lines += _table(summary, ("insertion_norm", "deletion_norm"), names_n)
    metrics = ("auroc", "f1", "insertion_norm", "deletion_norm")
    lines += [
        "",
        "## Does the local target beat the global one? (paired, same samples)",
        "",
        "Mean local - global difference [95% CI]; *yes* when the interval lies on the "
        "better side of 0, *tie* when it contains 0.",
        "",
        "| Method | " + " | ".join(metrics) + " |",
        "|" + "---|" * (len(metrics) + 1),
    ]
    for method, per_metric in paired.items():
        cells = [f"{_cell(per_metric[m])}: {_verdict(per_metric[m], m)}" for m in metrics]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    if results.get("by_concept"):
        lines += _by_concept(results["by_concept"], unit)
    if figures:
        lines += ["", "## Heat maps", ""]
        if page:
            lines += [
                f"The same maps, token by token, with each score on hover: [{Path(page).name}]"
                f"({Path(page).name}) (pick a map in its selector; outlined: the top-k "
                "tokens, k = the number of in-concept tokens).",
                "",
            ]
        lines += [f"![{Path(f).stem}]({Path(f).name})" for f in figures]
    return "\n".join(lines) + "\n"


def _by_concept(per: dict[str, Any], unit: str) -> list[str]:
    """Concept by concept: where the SuperActivators are, and local - global per method."""
    units = "patches" if unit == "patch" else f"{unit}s"
    lines = [
        "",
        "## By concept",
        "",
        f"SuperActivator {units} per sample (the local target is their mean) and the share "
        f"of them on the concept; then the paired local - global difference per method "
        "(mean; *yes* / *no* when the 95% interval excludes 0, the local / global target "
        "better).",
        "",
        f"| Concept | layer | pairs | SuperActivators | on concept | in-concept {units} |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in per.items():
        lines.append(
            f"| {name} | {entry['layer']} | {entry['n_cases']} | {entry['superactivators']:.1f} "
            f"| {entry['superactivators_on_concept']:.0%} | {entry['in_concept_units']:.1f} |"
        )
    methods = list(dict.fromkeys(m for e in per.values() for m in e["local_minus_global"]))
    for metric in ("auroc", "deletion_norm"):
        lines += [
            "",
            f"local - global, {metric}:",
            "",
            "| Concept | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
            "|" + "---|" * (len(methods) + 1),
        ]
        for name, entry in per.items():
            cells = []
            for m in methods:
                stat = entry["local_minus_global"].get(m, {}).get(metric, {})
                verdict = _verdict(stat, metric)
                mark = {"yes": " yes", "no (global better)": " no"}.get(verdict, "")
                mean = stat.get("mean", float("nan")) if stat else float("nan")
                cells.append("n/a" if not np.isfinite(mean) else f"{mean:+.3f}{mark}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _scaled(values: list[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    peak = np.abs(arr).max() if arr.size else 0.0
    return arr / peak if peak > 0 else arr


def save_heatmaps(
    cases: list[LocalizationCase], concepts: list[str], out: Path, limit: int = 4
) -> list[str]:
    """One PNG per case with kept maps: ground truth, then each method's global and
    local maps (each row scaled by its largest absolute value). Returns the paths."""
    paths = []
    for case in [c for c in cases if c.maps][:limit]:
        rows = [("ground truth", case.mask.float().numpy())]
        rows += [("SuperActivators", np.asarray(case.superactivators, dtype=float))]
        methods = list(dict.fromkeys(m for per in case.maps.values() for m in per))
        for method in methods:
            for target in ("global", "local"):
                if method in case.maps.get(target, {}):
                    label = f"{METHOD_LABELS.get(method, method)} ({_TARGET_LABELS[target]})"
                    rows.append((label, _scaled(case.maps[target][method])))
        grid = np.stack([r[1] for r in rows])
        width = max(6.0, 0.45 * len(case.tokens) + 3)
        fig = Figure(figsize=(width, 0.32 * len(rows) + 1.4), layout="constrained")
        ax = fig.subplots()
        ax.imshow(grid, cmap=colormaps["coolwarm"], vmin=-1, vmax=1, aspect="auto")
        ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=7)
        ax.set_xticks(range(len(case.tokens)), case.tokens, rotation=60, ha="right", fontsize=7)
        for y in range(2, len(rows), 2):
            ax.axhline(y - 0.5, color="white", lw=1.5)
        ax.set_title(f"row {case.row}: {concepts[case.concept]}", fontsize=9)
        name = f"localize_row{case.row}_{concepts[case.concept]}".replace("/", "_")
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110, format="png")
        paths.append(str(path))
    return paths


def heatmap_records(cases: list[LocalizationCase], concepts: list[str]) -> list[dict]:
    """The kept maps as records of the ``superact detect`` page, one per case.

    Each map is a "concept" of the page's selector: the ground truth, the
    SuperActivators, then every method's global and local map (each scaled by its
    largest absolute value). A map's threshold is its k-th largest value, k = the
    number of in-concept tokens, so the page outlines the tokens a top-k reading of
    the map would pick (0.5 for the two 0/1 rows).
    """
    records = []
    for case in [c for c in cases if c.maps]:
        truth = case.mask.float().numpy()
        k = max(1, int(truth.sum()))
        rows = {"ground truth": (truth, 0.5)}
        rows["SuperActivators"] = (np.asarray(case.superactivators, dtype=float), 0.5)
        for target in ("global", "local"):
            for method, values in case.maps.get(target, {}).items():
                scaled = _scaled(values)
                tau = float(np.sort(scaled)[::-1][min(k, len(scaled)) - 1]) if len(scaled) else 0.0
                label = f"{METHOD_LABELS.get(method, method)} ({_TARGET_LABELS[target]})"
                rows[label] = (scaled, np.nextafter(tau, -np.inf))  # top-k score > tau
        records.append(
            {
                "index": case.row,
                "text": f"row {case.row}: {concepts[case.concept]}",
                "tokens": list(case.tokens),
                "present": [concepts[case.concept]],
                "concepts": {
                    label: {
                        "token_scores": [float(v) for v in values],
                        "threshold": float(tau),
                        "score": float(values.max()) if len(values) else None,
                        "present": bool(len(values) and values.max() > tau),
                    }
                    for label, (values, tau) in rows.items()
                },
            }
        )
    return records


def save_heatmap_page(cases: list[LocalizationCase], concepts: list[str], path: Path) -> Path:
    """``localize.html``: :func:`heatmap_records` on the detect page (offline, one file)."""
    return write_detect_page(heatmap_records(cases, concepts), path, title="superact localize")
