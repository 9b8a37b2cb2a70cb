"""Dataset statistics: split sizes, positives per concept, in-concept tokens, lengths."""

from __future__ import annotations

import numpy as np

from superact_lens.data.dataset import SPLITS, TextDataset
from superact_lens.data.masks import content_offsets, token_masks

__all__ = ["dataset_stats", "format_stats"]


def dataset_stats(ds: TextDataset, tokenizer=None, max_length: int | None = None) -> dict:
    """Counts that tell whether a dataset can support detection and localisation.

    Returns a JSON-serialisable dict with ``n_samples`` per split, per concept
    ``positives`` per split, ``spans``, ``positives_without_span`` and, given a
    fast tokenizer, ``in_concept_tokens`` (content tokens in a span of the
    concept) and token lengths.
    """
    per_concept = {}
    for c, name in enumerate(ds.concepts):
        pos = {s: int(ds.labels[ds.splits == s, c].sum()) for s in SPLITS}
        pos["total"] = int(ds.labels[:, c].sum())
        has_span = np.array([any(k == c for _, _, k in sp) for sp in ds.spans], dtype=bool)
        per_concept[name] = {
            "positives": pos,
            "rate": round(float(ds.labels[:, c].mean()), 4) if len(ds) else 0.0,
            "spans": int(sum(k == c for sp in ds.spans for _, _, k in sp)),
            "positives_without_span": int((ds.labels[:, c] & ~has_span).sum()),
        }
    chars = np.array([len(t) for t in ds.texts])
    out = {
        "name": ds.name,
        "n_samples": {**{s: int((ds.splits == s).sum()) for s in SPLITS}, "total": len(ds)},
        "n_concepts": ds.n_concepts,
        "concepts_per_sample": round(float(ds.labels.sum(1).mean()), 3) if len(ds) else 0.0,
        "negative_for_all": int((~ds.labels.any(1)).sum()),
        "mean_chars": round(float(chars.mean()), 1) if len(ds) else 0.0,
        "concepts": per_concept,
    }
    if tokenizer is not None:
        offsets = content_offsets(tokenizer, ds.texts, max_length=max_length)
        lengths = np.array([len(o) for o in offsets])
        masks = token_masks(ds, offsets)
        in_tok = (
            np.stack([m.sum(0).numpy() for m in masks]).sum(0) if masks else np.zeros(ds.n_concepts)
        )
        for c, name in enumerate(ds.concepts):
            per_concept[name]["in_concept_tokens"] = int(in_tok[c])
        out["tokenizer"] = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        out["mean_tokens"] = round(float(lengths.mean()), 1) if len(ds) else 0.0
        out["max_tokens"] = int(lengths.max()) if len(ds) else 0
    return out


def format_stats(stats: dict) -> str:
    """A plain-text table of :func:`dataset_stats` output."""
    n = stats["n_samples"]
    lines = [
        f"dataset: {stats['name']}",
        "samples: " + ", ".join(f"{s} {n[s]}" for s in (*SPLITS, "total")),
        f"mean length: {stats['mean_chars']} chars"
        + (
            f", {stats['mean_tokens']} tokens (max {stats['max_tokens']})"
            if "mean_tokens" in stats
            else ""
        ),
        f"concepts per sample: {stats['concepts_per_sample']}; "
        f"samples with no concept: {stats['negative_for_all']}",
        "",
    ]
    has_tok = "mean_tokens" in stats
    width = max([len("concept")] + [len(c) for c in stats["concepts"]])
    head = f"{'concept':<{width}}  " + " ".join(
        f"{h:>6}" for h in ("train", "cal", "test", "total", "rate", "spans")
    )
    head += f" {'no-span':>7}" + (f" {'in-tok':>7}" if has_tok else "")
    lines += [head, "-" * len(head)]
    for name, st in stats["concepts"].items():
        p = st["positives"]
        row = f"{name:<{width}}  {p['train']:>6} {p['cal']:>6} {p['test']:>6} {p['total']:>6}"
        row += f" {st['rate']:>6.3f} {st['spans']:>6} {st['positives_without_span']:>7}"
        if has_tok:
            row += f" {st['in_concept_tokens']:>7}"
        lines.append(row)
    return "\n".join(lines)
