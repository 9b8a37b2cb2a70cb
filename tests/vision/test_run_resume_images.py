"""Resuming ``superact run`` on an image folder (issues 13 and 14): stopped after k
committed chunks and started again with the same command, it writes the results.json
of an uninterrupted run. A 48-image CLEVR set at 32 px and a random 2-block ViT."""

from __future__ import annotations

import pytest

from superact_lens.cli import main
from superact_lens.runstate import FAIL_ENV
from tests.run_helpers import argv, committed_chunks, results


@pytest.fixture(scope="module")
def whole(scenes, vision_folders, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("resume-img-whole") / "out"
    assert main(argv(vision_folders["vit"], scenes, out)) == 0
    return results(out)


@pytest.mark.parametrize("k", [1, 3])
def test_an_image_run_stopped_after_k_chunks_resumes_to_the_same_results(
    scenes, vision_folders, whole, tmp_path, monkeypatch, k
):
    """Batches of 2 cut the 24 train and 24 cal+test images into 2 + 2 chunks: k=1 stops
    inside the train pass, k=3 inside the cal+test pass (after the fit was committed)."""
    out = tmp_path / "out"
    model = vision_folders["vit"]
    monkeypatch.setenv(FAIL_ENV, str(k))
    with pytest.raises(RuntimeError, match=FAIL_ENV):
        main(argv(model, scenes, out))
    assert not (out / "results.json").exists()
    assert committed_chunks(out) == k
    monkeypatch.delenv(FAIL_ENV)
    assert main(argv(model, scenes, out)) == 0
    assert results(out) == whole
    assert [p.name for p in (out / ".superact").iterdir()] == ["run.json"]
