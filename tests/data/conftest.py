"""Fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.helpers import good_rows, write_folder


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    rows, texts = good_rows()
    return write_folder(tmp_path / "good", rows, texts)
