"""``report.md``: the run's tables in the layout of the paper's Table 1, for a person."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["render_report", "claim_check", "BASELINES"]

BASELINES = ("cls", "mean", "last", "random")
# The paper's claim, as the project checks it: SuperActivator beats every
# aggregation baseline by at least WIN and is no worse than max-token by more than TIE.
WIN, TIE = 0.03, 0.02


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _with_ci(entry: dict) -> str:
    lo, hi = entry["ci95"]
    return f"{_f(entry['weighted_f1'])} [{_f(lo, 2)}, {_f(hi, 2)}]"


def claim_check(kind_results: dict) -> dict:
    """How SuperActivator compares with the baselines for one concept type."""
    sa = kind_results["superact"]["weighted_f1"] or 0.0
    base = {m: kind_results[m]["weighted_f1"] or 0.0 for m in BASELINES if m in kind_results}
    best_base = max(base, key=lambda m: base[m])
    margin = sa - base[best_base]
    vs_max = sa - (kind_results["max"]["weighted_f1"] or 0.0)
    return {
        "best_baseline": best_base,
        "margin_vs_best_baseline": margin,
        "margin_vs_max": vs_max,
        "beats_baselines": margin >= WIN,
        "close_to_max": vs_max >= -TIE,
    }


def _summary_table(results: dict, methods: Sequence[str]) -> list[str]:
    lines = [
        "| concept type | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for kind, by_method in results.items():
        cells = []
        best = max(by_method[m]["weighted_f1"] or 0.0 for m in methods)
        for m in methods:
            cell = _with_ci(by_method[m])
            if (by_method[m]["weighted_f1"] or 0.0) == best:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def _claim_lines(results: dict) -> list[str]:
    lines = []
    for kind, by_method in results.items():
        if "max" not in by_method or not any(m in by_method for m in BASELINES):
            lines.append(
                f"- **{kind}**: not checked (needs max and an aggregation baseline "
                f"among the methods: {', '.join(BASELINES)})."
            )
            continue
        check = claim_check(by_method)
        verdict_a = "holds" if check["beats_baselines"] else "DOES NOT HOLD"
        verdict_b = "holds" if check["close_to_max"] else "DOES NOT HOLD"
        lines.append(
            f"- **{kind}**: superact − best aggregation baseline ({check['best_baseline']}) = "
            f"{check['margin_vs_best_baseline']:+.3f} (claim: ≥ +{WIN}: {verdict_a}); "
            f"superact − max = {check['margin_vs_max']:+.3f} (claim: ≥ −{TIE}: {verdict_b})."
        )
    return lines


def _concept_table(kind: str, by_method: dict, methods: Sequence[str]) -> list[str]:
    sa = by_method["superact"]["per_concept"]
    lines = [
        f"### {kind} concepts: test F1 per concept",
        "",
        "| concept | support | superact layer | superact N% | " + " | ".join(methods) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(methods),
    ]
    for name, entry in sa.items():
        cells = [_f(by_method[m]["per_concept"][name]["f1"]) for m in methods]
        n_pct = entry["sparsity"]
        layer = entry["layer"]
        matched = entry.get("column_name")
        label = f"{name} (→ {matched})" if matched and matched != name else name
        lines.append(
            f"| {label} | {entry['support']} | {layer if layer is not None else 'n/a'} | "
            f"{_f(n_pct, 0) if n_pct is not None else 'n/a'} | " + " | ".join(cells) + " |"
        )
    return lines


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _prompt_lines(results: dict) -> list[str]:
    """What the prompting baseline asked and how well the model followed it."""
    entry = next((by["prompt"] for by in results.values() if "prompt" in by), None)
    if entry is None:
        return []
    info = entry.get("prompt", {})
    chat = "yes" if info.get("chat_template") else "no (plain prompt)"
    rate = info.get("prompts_per_s")
    lines = [
        "## Prompting baseline",
        "",
        "The model is asked about every test sample and concept; the answer is greedy "
        "decoding's first token restricted to the Yes / No tokens (no calibration, no "
        "threshold, no layer). It does not depend on the concept type: the same figures "
        f"appear under every type above. Chat template: {chat}. The prompt, with `{{text}}` "
        "and `{concept}` filled in per sample and concept:",
        "",
        "```text",
        info.get("template", ""),
        "```",
        "",
        f"- weighted F1 {_with_ci(entry)}; answered Yes to {_share(info.get('yes_rate'))} "
        f"of {info.get('n_prompts', 'n/a')} prompts",
        "- the unrestricted greedy token was neither Yes nor No on "
        f"{_share(info.get('neither_rate'))} of the prompts",
        f"- {_f(rate, 1)} prompts per second",
    ]
    if info.get("n_truncated"):
        lines.append(f"- {info['n_truncated']} texts were cut to fit the model context")
    return [*lines, ""]


def _separability_table(separability: dict) -> list[str]:
    kinds = list(separability)
    layers = list(next(iter(separability.values())).keys()) if kinds else []
    header = "| layer | " + " | ".join(f"{k} q99 / cov99" for k in kinds) + " |"
    lines = [header, "|---:|" + "---|" * len(kinds)]
    for layer in layers:
        cells = []
        for k in kinds:
            row = separability[k][layer]
            cells.append(f"{_f(row['q99'])} / {_f(row['coverage99'])}")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return lines


def render_report(results: dict, figures: Sequence[str] = (), command: str | None = None) -> str:
    """Markdown for ``report.md`` from a results.json dictionary."""
    methods = list(next(iter(results["results"].values())).keys())
    n = results["n_samples"]
    out = [
        "# SuperActivator concept detection",
        "",
        f"- model: `{results['model']}`; dataset: `{results['dataset']}` "
        f"({n['train']} train / {n['cal']} cal / {n['test']} test samples, "
        f"{len(results.get('concepts', []))} concepts)",
        f"- layers (residual index, 0 = embeddings): {results['layers']}",
    ]
    if command:
        out.append(f"- command: `{command}`")
    out += [f"- **note**: {note}" for note in results.get("notes", [])]
    out += [
        "",
        "## Frequency-weighted F1 on test (95% bootstrap CI)",
        "",
        "Layer and N (SuperActivator) or layer and threshold (baselines) are chosen per concept "
        "on the calibration split; the test split is used only here.",
        "",
        *_summary_table(results["results"], methods),
        "",
        "## Does the paper's claim hold on this dataset?",
        "",
        *_claim_lines(results["results"]),
        "",
        "## Per concept",
        "",
    ]
    for kind, by_method in results["results"].items():
        out += [*_concept_table(kind, by_method, methods), ""]
    out += _prompt_lines(results["results"])
    out += [
        "## Separability by depth (test)",
        "",
        "Fraction of in-concept token scores above the 99th percentile of out-of-concept scores "
        "(tokens of samples without the concept), and the fraction of positive samples with at "
        "least one such token; averaged over concepts.",
        "",
        *_separability_table(results["separability"]),
        "",
    ]
    if figures:
        out += ["## Figures", ""]
        out += [f"![{name}]({name})" for name in figures]
        out.append("")
    timing = results.get("timing_s", {})
    if timing:
        out += [
            "## Timing (seconds)",
            "",
            ", ".join(f"{k}: {v:.1f}" for k, v in timing.items()),
            "",
        ]
    return "\n".join(out)
