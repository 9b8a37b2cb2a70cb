"""Figure creation and saving without pyplot (no global state, no GUI backend)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def new_figure(width: float = 6.0, height: float = 4.0, ncols: int = 1, nrows: int = 1):
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def finish(fig: Figure, path: str | Path | None, dpi: int = 120) -> Figure:
    """Save ``fig`` as PNG when ``path`` is given (parents created); return it."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig
