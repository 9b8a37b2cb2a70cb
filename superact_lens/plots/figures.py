"""Figures of the analyses (SPEC §5). Each ``plot_*`` takes the dict returned by
the matching :mod:`superact_lens.analysis` function, draws a matplotlib
:class:`~matplotlib.figure.Figure`, saves it as PNG when ``path`` is given,
and returns it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from superact_lens.analysis.superactivators import ecdf

from ._common import finish, new_figure

__all__ = [
    "plot_separability",
    "plot_distributions",
    "plot_f1_vs_n",
    "plot_best_n",
    "plot_best_layer",
    "plot_sa_ratio_cdf",
    "plot_sa_positions",
    "plot_f1_by_depth",
]

PathLike = str | Path | None


def plot_separability(sep: dict[str, Any], path: PathLike = None, title: str = "") -> Figure:
    """Left: % of D_in above the q95/q99 of D_out by layer; right: coverage
    (positive samples with >= 1 token above it). Means over concepts."""
    fig, ax = new_figure(10, 3.8, ncols=2)
    layers = sep["layers"]
    for key, style in (("95", "--"), ("99", "-")):
        if f"q{key}" in sep:
            ax[0, 0].plot(
                layers,
                100 * np.nanmean(sep[f"q{key}"], axis=1),
                style,
                marker="o",
                label=f"> q{key} of D_out",
            )
        if f"coverage{key}" in sep:
            ax[0, 1].plot(
                layers,
                100 * np.nanmean(sep[f"coverage{key}"], axis=1),
                style,
                marker="o",
                label=f"any token > q{key}",
            )
        if f"coverage_in{key}" in sep:
            ax[0, 1].plot(
                layers,
                100 * np.nanmean(sep[f"coverage_in{key}"], axis=1),
                style,
                marker="x",
                alpha=0.6,
                label=f"in-span token > q{key}",
            )
    ax[0, 0].set(xlabel="layer", ylabel="% of in-concept tokens", title="Separability")
    ax[0, 1].set(xlabel="layer", ylabel="% of positive samples", title="Coverage")
    for a in ax[0]:
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


def plot_distributions(
    dist: dict[str, Any], path: PathLike = None, title: str = "", max_panels: int = 8
) -> Figure:
    """D_in vs D_out densities, one panel per layer (q99 of D_out dashed)."""
    layers = dist["layers"]
    idx = np.unique(np.linspace(0, len(layers) - 1, min(len(layers), max_panels)).astype(int))
    fig, ax = new_figure(2.6 * len(idx), 2.8, ncols=len(idx))
    for p, i in enumerate(idx):
        a = ax[0, p]
        edges = dist["edges"][i]
        centers = (edges[:-1] + edges[1:]) / 2
        a.fill_between(centers, dist["out_density"][i], step="mid", alpha=0.5, label="D_out")
        a.fill_between(centers, dist["in_density"][i], step="mid", alpha=0.5, label="D_in")
        if np.isfinite(dist["out_q99"][i]):
            a.axvline(dist["out_q99"][i], color="k", ls="--", lw=0.8)
        a.set_yscale("symlog", linthresh=1e-2)
        a.set_ylim(bottom=0)
        a.set_title(f"layer {layers[i]}", fontsize=9)
        a.set_xlabel("score", fontsize=8)
    ax[0, 0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


def plot_f1_vs_n(
    sweep: dict[str, Any],
    path: PathLike = None,
    names: Sequence[str] | None = None,
    title: str = "F1 vs sparsity N",
) -> Figure:
    """Per-concept F1 against N (thin lines) and the weighted mean (thick)."""
    fig, ax = new_figure(6, 4)
    a = ax[0, 0]
    n_grid = sweep["n_grid"]
    for c, row in enumerate(sweep["f1"]):
        label = names[c] if names is not None and len(names) <= 12 else None
        a.plot(n_grid, row, alpha=0.35, lw=1, label=label)
    a.plot(n_grid, sweep["weighted"], color="k", lw=2.5, marker="o", label="weighted mean")
    a.set(xlabel="N (% of in-concept cal activations above tau)", ylabel="F1", title=title)
    a.set_xscale("log")
    a.set_xticks(n_grid, [f"{n:g}" for n in n_grid], fontsize=7)
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    return finish(fig, path)


def plot_best_n(hist: dict[str, Any], path: PathLike = None) -> Figure:
    """Histogram of the chosen N (left) and best N per layer (right, heat map)."""
    fig, ax = new_figure(10, 3.8, ncols=2)
    labels = [f"{n:g}" for n in hist["n_grid"]]
    ax[0, 0].bar(labels, hist["overall"])
    ax[0, 0].set(xlabel="best N (%)", ylabel="# concepts", title="Best N (chosen layer)")
    im = ax[0, 1].imshow(hist["per_layer"], aspect="auto", cmap="viridis", origin="lower")
    ax[0, 1].set_xticks(range(len(labels)), labels, fontsize=7)
    ax[0, 1].set_yticks(range(len(hist["layers"])), [str(x) for x in hist["layers"]])
    ax[0, 1].set(xlabel="best N (%)", ylabel="layer", title="# concepts with best N, per layer")
    fig.colorbar(im, ax=ax[0, 1])
    return finish(fig, path)


def plot_best_layer(hist: dict[str, Any], path: PathLike = None, title: str = "") -> Figure:
    """Bar chart of how many concepts chose each layer."""
    fig, ax = new_figure(5, 3.5)
    ax[0, 0].bar([str(x) for x in hist["layers"]], hist["counts"])
    ax[0, 0].set(xlabel="layer", ylabel="# concepts", title=title or "Best layer")
    return finish(fig, path)


def plot_sa_ratio_cdf(ratio: dict[str, Any], path: PathLike = None) -> Figure:
    """CDF of #SuperActivators / #in-concept tokens per positive sample."""
    fig, ax = new_figure(5, 3.8)
    x, y = ecdf(ratio["all"])
    ax[0, 0].step(x, y, where="post")
    ax[0, 0].set(
        xlabel="#SA tokens / #in-concept tokens",
        ylabel="fraction of samples",
        title="SuperActivator ratio (CDF)",
    )
    ax[0, 0].grid(alpha=0.3)
    return finish(fig, path)


def plot_sa_positions(pos: dict[str, Any], path: PathLike = None, bins: int = 30) -> Figure:
    """Histograms of absolute and relative SuperActivator positions."""
    fig, ax = new_figure(10, 3.5, ncols=2)
    ax[0, 0].hist(pos["absolute"], bins=bins)
    ax[0, 0].set(xlabel="token index", ylabel="# SuperActivators", title="Absolute position")
    ax[0, 1].hist(pos["relative"], bins=bins, range=(0, 1))
    ax[0, 1].set(xlabel="index / (length - 1)", title="Relative position")
    return finish(fig, path)


def plot_f1_by_depth(
    depth: dict[str, Any], path: PathLike = None, names: Sequence[str] | None = None
) -> Figure:
    """Heat maps: weighted F1 per method x layer (first panel), then one
    concepts x layers panel per method."""
    methods = depth["methods"]
    layers = [str(x) for x in depth["layers"]]
    fig, ax = new_figure(
        3.2 * (len(methods) + 1), 0.6 + 0.25 * max(len(methods), 8), ncols=len(methods) + 1
    )
    mats = [depth["matrix"]] + [depth["per_concept"][m] for m in methods]
    titles = ["weighted F1"] + list(methods)
    for p, (mat, t) in enumerate(zip(mats, titles, strict=True)):
        a = ax[0, p]
        im = a.imshow(mat, aspect="auto", vmin=0, vmax=1, cmap="magma", origin="upper")
        a.set_xticks(range(len(layers)), layers, fontsize=7)
        a.set_title(t, fontsize=9)
        a.set_xlabel("layer", fontsize=8)
        if p == 0:
            a.set_yticks(range(len(methods)), methods, fontsize=7)
        elif names is not None and len(names) <= 40:
            a.set_yticks(range(len(names)), names, fontsize=6)
        else:
            a.set_yticks([])
    fig.colorbar(im, ax=ax[0, -1])
    return finish(fig, path)
