"""Matplotlib figures (PNG) of the analyses, token heat maps (HTML / PNG) and the
self-contained `superact detect --html` page."""

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
from .heatmap import token_heatmap_html, token_heatmap_png
from .suite import save_report_figures
from .token_page import detect_page_html, detect_page_iframe, write_detect_page

__all__ = [
    "plot_best_layer",
    "plot_best_n",
    "plot_distributions",
    "plot_f1_by_depth",
    "plot_f1_vs_n",
    "plot_sa_positions",
    "plot_sa_ratio_cdf",
    "plot_separability",
    "save_report_figures",
    "token_heatmap_html",
    "token_heatmap_png",
    "detect_page_html",
    "detect_page_iframe",
    "write_detect_page",
]
