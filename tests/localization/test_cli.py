"""`superact localize` end to end on a tiny random BERT and the synthetic dataset."""

from __future__ import annotations

import json
import re

import pytest

from superact_lens.cli import main
from superact_lens.data import make_synthetic_dataset, write_dataset_folder
from tests.adapters.helpers import save_tiny_bert


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, bert_tokenizer):
    root = tmp_path_factory.mktemp("loc_cli")
    save_tiny_bert(root / "model", bert_tokenizer, n_ctx=128, dropout=0.0)
    write_dataset_folder(make_synthetic_dataset(n=60, seed=1), root / "data")
    return root


def test_localize_writes_the_table_and_heatmaps(tiny_setup, capsys):
    out = tiny_setup / "out"
    argv = ["localize", "--model", str(tiny_setup / "model"), "--dataset", str(tiny_setup / "data")]
    argv += ["--out", str(out), "--methods", "direct,occlusion,rise", "--max-samples", "2"]
    argv += ["--n-samples", "8", "--n-bootstrap", "50", "--heatmaps", "1", "--quiet"]
    assert main(argv) == 0
    results = json.loads((out / "localize.json").read_text())
    assert results["setup"]["n_cases"] == len(results["cases"]) > 0
    assert set(results["summary"]) == {"direct", "occlusion", "rise"}
    for per_target in results["summary"].values():
        assert set(per_target) == {"global", "local"}
        assert {"auroc", "f1", "insertion", "deletion"} <= set(per_target["local"])
    report = (out / "localize.md").read_text()
    assert "| Occlusion |" in report and "SuperActivator" in report
    assert "--n-samples 8" in report  # the command names the budgets it changed
    assert (out / "detector" / "detector.json").is_file()  # the calibrated detector, for reuse
    pngs = list(out.glob("localize_row*.png"))
    assert len(pngs) == 1 and pngs[0].name in report
    # the same maps on the detect page: one text per drawn case, a selector entry per map
    assert "(localize.html)" in report
    page = (out / "localize.html").read_text()
    data = json.loads(re.search(r'id="superact-data">(.*?)</script>', page, re.S).group(1))
    (text,) = data["texts"]
    maps = text["scores"]
    assert list(maps)[:2] == ["ground truth", "SuperActivators"]
    assert {"Occlusion (global)", "Occlusion (SuperActivator)", "RISE (SuperActivator)"} <= set(
        maps
    )
    k = sum(v > 0.5 for v in maps["ground truth"]["token_scores"])
    assert k > 0 and all(len(m["token_scores"]) == len(text["tokens"]) for m in maps.values())
    for label, m in maps.items():  # outlined (> threshold): the map's top-k tokens
        above = sum(float(v) > float(m["threshold"]) for v in m["token_scores"])
        assert above == k or label == "SuperActivators", (label, above, k)


def test_localize_draws_as_many_heatmaps_as_asked(tiny_setup):
    out = tiny_setup / "out-many"
    argv = ["localize", "--model", str(tiny_setup / "model"), "--dataset", str(tiny_setup / "data")]
    argv += ["--out", str(out), "--methods", "direct", "--max-samples", "4"]
    argv += ["--n-bootstrap", "20", "--heatmaps", "6", "--quiet"]
    assert main(argv) == 0
    n_cases = len(json.loads((out / "localize.json").read_text())["cases"])
    assert n_cases > 4  # more than save_heatmaps' default limit, or this proves nothing
    assert len(list(out.glob("localize_row*.png"))) == min(6, n_cases)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "gradcam"], "--methods: unknown method"),
        (["--concepts", "linsep,mean"], "--concepts: expected one concept type"),
        (["--max-samples", "0"], "--max-samples"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, capsys, extra, message):
    argv = ["localize", "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_bad_model_leaves_no_out_folder(tmp_path, capsys):
    out = tmp_path / "new" / "out"
    argv = ["localize", "--model", str(tmp_path / "no-such-model"), "--out", str(out)]
    assert main(argv) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_localize_reuses_a_saved_detector(tmp_path, minilm_folder, monkeypatch):
    import superact_lens.pipeline
    from superact_lens.lens import ConceptLens
    from tests.detection.tiny_detector import build_detector, tiny_bert_folder

    model = str(tiny_bert_folder(tmp_path / "model", minilm_folder))
    build_detector(ConceptLens(model), model).save(tmp_path / "det")
    write_dataset_folder(make_synthetic_dataset(n=60, seed=1), tmp_path / "data")
    out = tmp_path / "out"
    argv = ["localize", "--model", model, "--dataset", str(tmp_path / "data"), "--out", str(out)]
    argv += ["--detector", str(tmp_path / "det"), "--methods", "direct", "--heatmaps", "0"]
    argv += ["--n-bootstrap", "20", "--quiet"]

    def no_calibration(config):
        raise AssertionError("--detector must not calibrate")

    monkeypatch.setattr(superact_lens.pipeline, "run_experiment", no_calibration)
    assert main(argv) == 0
    results = json.loads((out / "localize.json").read_text())
    assert results["setup"]["n_cases"] > 0
    # a detector of another concept type is refused, naming both
    argv_mean = [*argv[:-1], "--concepts", "mean", "--quiet"]
    assert main(argv_mean) == 2
