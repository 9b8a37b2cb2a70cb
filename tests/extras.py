"""Skip marks for tests that need a packaged model's extra (gemma, mpnet)."""

from __future__ import annotations

import pytest

from superact_lens.adapters import zoo


def needs_extra(name: str) -> pytest.MarkDecorator:
    """``skipif`` the packaged model ``name`` lacks its extra, naming the pip command."""
    model = zoo.packaged_model(name)
    if model is None:
        raise ValueError(f"{name!r} is not a packaged model")
    return pytest.mark.skipif(
        bool(model.missing_modules()),
        reason=f"{name} needs the extra: pip install 'superact_lens[{model.extra}]'",
    )
