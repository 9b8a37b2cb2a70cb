"""`superact localize` on an image folder (issues 12 and 13): a tiny random ViT and a
48-scene CLEVR set at 32 px; patch-grid heat maps; a saved detector gives the same
numbers; a folder without concept masks is refused, leaving no --out behind."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from superact_lens.cli import main
from superact_lens.data import generate_clevr
from tests.vision.conftest import _build

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def image_setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("loc_images")
    model, processor = _build("vit")
    model.save_pretrained(root / "vit")
    processor.save_pretrained(root / "vit")
    generate_clevr(root / "clevr", n=48, seed=0, size=32)
    return root


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    argv = ["localize", "--model", str(root / "vit"), "--dataset", str(root / "clevr")]
    argv += ["--out", str(out), "--methods", "direct,ig,occlusion", "--max-samples", "1"]
    return [*argv, "--n-steps", "4", "--n-bootstrap", "20", "--quiet", *extra]


def test_localize_on_image_patches(image_setup: Path):
    from superact_lens.vision.masks import load_image_run_data

    out = image_setup / "out"
    assert main(_argv(image_setup, out, "--heatmaps", "1")) == 0
    results = json.loads((out / "localize.json").read_text())
    setup = results["setup"]
    assert setup["unit"] == "patch" and "mean-colour patch" in setup["baseline"]
    assert setup["n_cases"] == len(results["cases"]) > 0
    assert set(results["summary"]) == {"direct", "ig", "occlusion"}
    ds = load_image_run_data(image_setup / "clevr")
    test_rows = set(ds.split_indices("test").tolist())
    for case in results["cases"]:  # positive test images that locate their concept
        c = ds.concepts.index(case["concept"])
        assert case["row"] in test_rows and ds.images.has_mask(case["row"], c)
        assert len(case["records"]) == 3 * 2
        for record in case["records"]:
            assert math.isnan(record["auroc"]) or 0.0 <= record["auroc"] <= 1.0
    report = (out / "localize.md").read_text()
    assert "in-concept patch mask" in report and "| Occlusion |" in report
    (png,) = out.glob("localize_row*.png")
    assert png.read_bytes()[:8] == PNG and png.name in report
    assert not (out / "localize.html").exists()  # the token page does not draw patches
    per = results["by_concept"]
    assert sum(e["n_cases"] for e in per.values()) == setup["n_cases"]
    for name, entry in per.items():  # a pair needs a SuperActivator: at least one per image
        assert entry["superactivators"] >= 1 and 0 <= entry["superactivators_on_concept"] <= 1
        assert set(entry["local_minus_global"]) == {"direct", "ig", "occlusion"}
        assert f"| {name} | {entry['layer']} |" in report

    # the saved detector reproduces the run without calibrating
    again = image_setup / "again"
    argv = _argv(image_setup, again, "--heatmaps", "0", "--detector", str(out / "detector"))
    assert main(argv) == 0
    second = json.loads((again / "localize.json").read_text())
    assert second["summary"] == results["summary"]


def test_an_image_folder_without_masks_is_refused(image_setup: Path, tmp_path: Path, capsys):
    data = tmp_path / "clevr"
    shutil.copytree(image_setup / "clevr", data)
    shutil.rmtree(data / "masks")
    out = tmp_path / "new" / "out"
    argv = _argv(image_setup, out)
    argv[argv.index("--dataset") + 1] = str(data)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no positive test image has a concept mask" in err and str(data) in err
    assert not (tmp_path / "new").exists()


def test_cases_are_interleaved_by_concept_for_the_heat_maps():
    import torch

    from superact_lens.localization.evaluate import LocalizationCase
    from superact_lens.localization.vision import interleave_concepts

    cases = [LocalizationCase(r, c, "", torch.zeros(1, dtype=torch.bool)) for r, c in
             [(1, 0), (2, 0), (3, 0), (4, 2), (5, 5), (6, 5)]]  # fmt: skip
    order = [(case.row, case.concept) for case in interleave_concepts(cases)]
    assert order == [(1, 0), (4, 2), (5, 5), (2, 0), (6, 5), (3, 0)]
