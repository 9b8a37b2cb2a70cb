"""Images end to end (issue 13): ``superact run`` on an image folder writes the results.json
contract, the report and patch overlays; ``superact detect`` takes image paths; bad image
input is one error naming the file. A 48-image CLEVR set at 32 px and a random 2-block ViT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from superact_lens.cli import main
from superact_lens.detection.artefact import ConceptDetector
from superact_lens.lens import ConceptLens
from superact_lens.vision.detect import detect_images
from superact_lens.vision.masks import load_image_run_data, patch_token_masks

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_out(scenes, vision_folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img-run-out") / "out"
    argv = ["run", "--model", vision_folders["vit"], "--dataset", str(scenes), "--out", str(out)]
    argv += ["--concepts", "linsep,kmeans", "--n-clusters", "4", "--n-bootstrap", "20", "--quiet"]
    assert main(argv) == 0
    return out


def test_run_writes_the_results_contract_report_and_overlays(run_out: Path, scenes: Path):
    res = json.loads((run_out / "results.json").read_text())
    assert {
        "model",
        "dataset",
        "n_samples",
        "layers",
        "results",
        "separability",
        "timing_s",
    } <= set(res)
    ds = load_image_run_data(scenes)
    assert res["n_samples"] == {s: len(ds.split_indices(s)) for s in ("train", "cal", "test")}
    assert res["layers"] == [0, 1, 2] and res["concepts"] == ds.concepts
    for kind in ("linsep", "kmeans"):
        methods = res["results"][kind]
        assert {"superact", "superact_fixed", "cls", "mean", "last", "random", "max"} <= set(
            methods
        )
        for entry in methods.values():
            assert 0.0 <= entry["weighted_f1"] <= 1.0 and len(entry["ci95"]) == 2
            assert set(entry["per_concept"]) == set(ds.concepts)
        per = methods["superact"]["per_concept"]["red"]
        assert {"f1", "precision", "recall", "layer", "sparsity", "threshold"} <= set(per)
        assert set(res["separability"][kind]) == {"0", "1", "2"}
    assert "superact" in (run_out / "report.md").read_text()
    overlay = run_out / "linsep_heatmap_example.png"
    assert overlay.read_bytes()[:8] == PNG
    assert "linsep_heatmap_example.png" in (run_out / "report.md").read_text()
    index = json.loads((run_out / "detectors" / "linsep" / "detector.json").read_text())
    assert index["provenance"]["letterbox"] is True


def test_patch_masks_follow_the_lens_content_patches(tmp_path: Path, vision_folders):
    """Law: mask rows are the dataset's patch masks read at the lens's content patches
    (V2's recipe ``pm[:, rc[:, 0], rc[:, 1]].T``), letterboxed wide and tall images too."""
    folder = tmp_path / "odd"
    (folder / "images").mkdir(parents=True)
    rows = ["image_path,split,dot"]
    rng = np.random.default_rng(0)
    sizes = [(40, 24), (24, 40), (32, 32), (50, 20)] * 2
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            folder / "images" / f"{i}.png"
        )
        mask = np.zeros((h, w), np.uint8)
        mask[: h // 2, : w // 3] = 255
        (folder / "masks" / str(i)).mkdir(parents=True)
        Image.fromarray(mask).save(folder / "masks" / str(i) / "dot.png")
        rows.append(f"images/{i}.png,{('train', 'cal', 'test', 'train')[i % 4]},1")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    ds = load_image_run_data(folder)
    lens = ConceptLens(vision_folders["vit"], letterbox=True)
    enc = lens.image_encoder
    masks = patch_token_masks(ds, enc)
    for i, rc in enumerate(lens.content_patches(ds.texts)):
        pm, _ = ds.images.patch_masks(i, enc.image_size, enc.patch_size, fit=enc.fit)
        expected = torch.from_numpy(pm[:, rc[:, 0].numpy(), rc[:, 1].numpy()].T)
        assert torch.equal(masks[i], expected)
    assert masks[0].shape[0] < 16 and masks[0].any()  # a wide image loses its padding rows


def test_detect_on_image_paths_equals_predict(run_out: Path, scenes: Path, vision_folders):
    det = ConceptDetector.load(run_out / "detectors" / "linsep")
    lens = ConceptLens(vision_folders["vit"], letterbox=True)
    det.check_model(lens)
    paths = load_image_run_data(scenes).texts[:5]
    records = detect_images(det, lens, paths, top_k=3, patch_scores=True)
    assert [r["image"] for r in records] == paths and [r["index"] for r in records] == [*range(5)]
    scores = lens.scores(paths, det.bank, det.normalizer, layers=det.layers, progress=False)
    predicted = det.detector.predict(scores)
    for rec, row in zip(records, predicted, strict=True):
        assert set(rec["present"]) == {det.concepts[c] for c in row.nonzero().flatten().tolist()}
        assert rec["grid"] == [4, 4] and len(rec["patches"]) == 16
        for entry in rec["concepts"].values():
            assert len(entry["patch_scores"]) == 16
            for sa in entry["superactivators"]:
                assert sa["patch"] == rec["patches"][sa["position"]]
                assert sa["score"] > entry["threshold"]


def test_detect_cli_takes_images_from_args_and_file(run_out, scenes, tmp_path, capsys):
    paths = load_image_run_data(scenes).texts[:3]
    detector = str(run_out / "detectors" / "linsep")
    page = tmp_path / "page.html"
    argv = ["detect", "--detector", detector, "--quiet", "--json", "--image", *paths]
    assert main([*argv, "--html", str(page)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in lines] == paths and all("present" in r for r in lines)
    assert all("patch_scores" not in e for r in lines for e in r["concepts"].values())
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3 * 6 and "<script" not in html
    listing = tmp_path / "images.txt"
    listing.write_text("\n".join(paths) + "\n\n")
    assert main(["detect", "--detector", detector, "--quiet", "--file", str(listing)]) == 0
    out = capsys.readouterr().out
    assert out.count("present:") == 3 and paths[2] in out


def test_detect_cli_json_keeps_non_ascii_paths_and_html_max_caps_the_page(
    run_out, scenes, tmp_path, capsys
):
    """As for text: JSON lines are UTF-8 (ensure_ascii=False), so a path prints as given;
    --html-max keeps the first images on the page and says how many were left off."""
    first = scenes / load_image_run_data(scenes).texts[0]
    odd = tmp_path / "scène-ü.png"
    odd.write_bytes(first.read_bytes())
    page = tmp_path / "page.html"
    argv = ["detect", "--detector", str(run_out / "detectors" / "linsep"), "--quiet", "--json"]
    argv += ["--image", str(odd), str(first), "--html", str(page), "--html-max", "1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "scène-ü.png" in out
    assert [json.loads(x)["image"] for x in out.splitlines()] == [str(odd), str(first)]
    assert "--html page shows the first 1 of 2 images (--html-max)" in err
    assert page.read_text().count("data:image/png;base64,") == 1 * 6


def test_detect_cli_bad_image_input_names_the_file(run_out, tmp_path, capsys):
    detector = str(run_out / "detectors" / "linsep")
    fake = tmp_path / "not-an-image.png"
    fake.write_text("hello")
    base = ["detect", "--detector", detector, "--quiet", "--json"]
    assert main([*base, "--image", str(fake)]) == 2
    assert "not-an-image.png" in capsys.readouterr().err
    assert main([*base, "--image", str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main([*base, "--text", "a red cube"]) == 2
    assert "takes images" in capsys.readouterr().err


def test_run_refuses_prompt_and_bad_image_folders(scenes, vision_folders, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--model", vision_folders["vit"], "--dataset", str(scenes), "--out", str(out)]
    assert main([*argv, "--prompt", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--prompt" in err and "image" in err and not out.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.csv").write_text((scenes / "metadata.csv").read_text())
    (broken / "images").mkdir()
    first = (scenes / "metadata.csv").read_text().splitlines()[1].split(",")[0]
    (broken / first).write_text("not a png")
    argv[4] = str(broken)
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert first in err and not out.exists()
