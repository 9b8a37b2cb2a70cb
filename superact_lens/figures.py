"""Figures placeholder: filled in once plots land."""

from __future__ import annotations


def save_figures(exp, out) -> list[str]:
    return []
