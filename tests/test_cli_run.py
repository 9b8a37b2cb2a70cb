"""`superact run` end to end on the planted synthetic dataset (INTERFACES §2-3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from superact_lens.cli import main
from superact_lens.cli.run import parse_layers
from superact_lens.data import make_synthetic_dataset, write_dataset_folder

METHODS = {"superact", "superact_fixed", "cls", "mean", "last", "random", "max"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, minilm_folder):
    data = tmp_path_factory.mktemp("data")
    write_dataset_folder(make_synthetic_dataset(n=60, seed=1), data)
    out = tmp_path_factory.mktemp("out")
    code = main(
        [
            "run",
            "--model", str(minilm_folder),
            "--dataset", str(data),
            "--out", str(out),
            "--concepts", "linsep,mean",
            "--layers", "0,50,100",
            "--n-bootstrap", "200",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    return out


def test_results_json_has_the_contract_keys(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    assert set(res["n_samples"]) == {"train", "cal", "test"}
    assert res["layers"] == [0, 3, 6]
    assert set(res["results"]) == {"linsep", "mean"}
    for by_method in res["results"].values():
        assert set(by_method) == METHODS
        for method, entry in by_method.items():
            lo, hi = entry["ci95"]
            assert lo <= entry["weighted_f1"] <= hi
            for concept in ("fruit", "metal", "weather"):
                pc = entry["per_concept"][concept]
                assert {"f1", "precision", "recall", "layer", "sparsity", "threshold"} <= set(pc)
                assert pc["layer"] in res["layers"]
                if method.startswith("superact"):
                    assert pc["sparsity"] is not None
                else:
                    assert pc["sparsity"] is None
    for kind in ("linsep", "mean"):
        assert set(res["separability"][kind]) == {"0", "3", "6"}
        assert {"q95", "q99", "coverage99"} <= set(res["separability"][kind]["3"])
    assert {"embed", "concepts", "calibrate", "total"} <= set(res["timing_s"])


def test_planted_concepts_are_detected(run_dir):
    """Trigger words are single tokens that occur only in their spans: the
    SuperActivator detector must find them almost perfectly."""
    res = json.loads((run_dir / "results.json").read_text())
    assert res["results"]["linsep"]["superact"]["weighted_f1"] > 0.8


def test_report_and_figures_are_written(run_dir):
    report = (run_dir / "report.md").read_text()
    assert "| concept type | superact |" in report
    assert "Does the paper's claim hold" in report
    for name in ("linsep_separability.png", "mean_f1_by_depth.png", "linsep_distributions.png"):
        assert (run_dir / name).stat().st_size > 1000
        assert f"]({name})" in report


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concepts", "linsep,bogus"], "--concepts"),
        (["--layers", "0,abc"], "--layers"),
        (["--batch-size", "0"], "--batch-size"),
        (["--dataset", "/no/such/folder"], "/no/such/folder"),
        (["--device", "tpu9"], "--device"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, argv, message):
    base = {"--model": "minilm", "--dataset": "synthetic", "--out": str(tmp_path / "o")}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    args = ["run", "--quiet"] + [x for kv in base.items() for x in kv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("superact: error:") and message in err[0]


def test_malformed_folder_is_reported_on_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset_folder(make_synthetic_dataset(n=60, seed=1), data)
    (data / "paragraphs" / "00003.txt").unlink()
    meta = data / "metadata.csv"
    meta.write_text(meta.read_text().replace("00005.txt,train", "00005.txt,trian"))
    assert main(["run", "--dataset", str(data), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "00003.txt" in err[0] and "file not found" in err[0] and "'trian'" in err[0]


def test_parse_layers():
    assert parse_layers(None) is None
    assert parse_layers("all") is None
    assert parse_layers("0,25,100") == ["0%", "25%", "100%"]
    assert parse_layers("L3,50%") == [3, "50%"]


def test_cluster_concepts_are_matched_to_ground_truth(tmp_path, minilm_folder):
    """k-means columns are clusters; each ground-truth concept gets the best one on cal."""
    code = main(
        ["run", "--model", str(minilm_folder), "--dataset", "synthetic", "--out", str(tmp_path),
         "--concepts", "kmeans", "--n-clusters", "8", "--n-bootstrap", "50", "--no-figures",
         "--quiet"]
    )  # fmt: skip
    assert code == 0
    res = json.loads((tmp_path / "results.json").read_text())
    for method, entry in res["results"]["kmeans"].items():
        for pc in entry["per_concept"].values():
            assert pc["column_name"].startswith("cluster_"), method
            assert 0 <= int(pc["column_name"].split("_")[1]) < 8
    # its saved detector keeps the matched columns (issue 11)
    from superact_lens.detection import ConceptDetector

    det = ConceptDetector.load(tmp_path / "detectors" / "kmeans")
    assert det.detector.match_columns and det.bank.n_concepts == 8
    for c, name in enumerate(det.concepts):
        pc = res["results"]["kmeans"]["superact"]["per_concept"][name]
        assert det.bank.names[det.column_of(c)] == pc["column_name"]


def test_concept_without_spans_is_learned_from_sample_labels(tmp_path, minilm_folder):
    """A concept labelled present but never located must not stop the run."""
    import re

    data = tmp_path / "data"
    write_dataset_folder(make_synthetic_dataset(n=60, seed=1), data)
    for f in (data / "paragraphs").glob("*.txt"):
        f.write_text(re.sub(r"</?metal>", "", f.read_text()))
    out = tmp_path / "out"
    argv = ["run", "--model", str(minilm_folder), "--dataset", str(data), "--out", str(out),
            "--concepts", "linsep", "--n-bootstrap", "50", "--no-figures", "--quiet"]  # fmt: skip
    with pytest.warns(UserWarning, match="no in-concept cal tokens"):
        assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert any("'metal'" in note for note in res["notes"])
    assert res["results"]["linsep"]["superact"]["per_concept"]["metal"]["sparsity"] is None
    assert "no span in the train split" in (out / "report.md").read_text()


# --- the prompting baseline (issue 10, item 3) ---------------------------------------


def test_methods_default_leaves_prompt_off():
    from superact_lens.cli.run import _DEFAULT_METHODS, parse_methods
    from superact_lens.detection import METHODS as DETECTION_METHODS
    from superact_lens.pipeline import RunConfig

    assert _DEFAULT_METHODS == ",".join(DETECTION_METHODS)
    assert RunConfig().methods == DETECTION_METHODS
    assert parse_methods(_DEFAULT_METHODS, prompt=True) == (*DETECTION_METHODS, "prompt")
    # superact is always computed; order follows the canonical list.
    assert RunConfig(methods=parse_methods("prompt,mean")).methods == ("superact", "mean", "prompt")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "minilm", "--methods", "superact,prompt"],
         "--methods prompt: minilm is not a generative model"),
        (["--model", "minilm", "--prompt"], "--methods prompt: minilm is not a generative model"),
        (["--methods", "superact,bogus"], "--methods: unknown method(s) ['bogus']"),
    ],
)  # fmt: skip
def test_prompt_errors_are_one_line(tmp_path, capsys, argv, message):
    args = ["run", "--quiet", "--dataset", "synthetic", "--out", str(tmp_path / "o"), *argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("superact: error:") and message in err[0]


def test_prompt_method_on_a_small_decoder(tmp_path, capsys):
    """`--prompt` on a tiny random GPT-2 (LM head, no pad token): one `prompt` entry,
    the same under every concept type, equal to asking the model about the TEST split.
    Its progress bars name their phase."""
    from superact_lens.data import load_dataset
    from superact_lens.detection import PromptDetector, detection_metrics
    from tests.tiny_decoders import gpt2_style, save, tiny_gpt2

    model_dir = save(tmp_path / "gpt2", tiny_gpt2(), gpt2_style())
    data = tmp_path / "data"
    write_dataset_folder(make_synthetic_dataset(n=60, seed=1), data)
    out = tmp_path / "out"
    argv = ["run", "--model", str(model_dir), "--dataset", str(data), "--out", str(out),
            "--concepts", "linsep,mean", "--layers", "0,100", "--n-bootstrap", "50",
            "--no-figures", "--prompt"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    for phase in ("train pass", "fitting linsep", "fitting mean", "cal+test pass",
                  "calibrating linsep", "calibrating mean", "prompt baseline"):  # fmt: skip
        assert phase in err, phase
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["methods"][-1] == "prompt"
    assert "prompt" in res["timing_s"]
    entries = [res["results"][kind]["prompt"] for kind in ("linsep", "mean")]
    assert entries[0] == entries[1]
    for kind in ("linsep", "mean"):
        assert set(res["results"][kind]) == METHODS | {"prompt"}
    entry = entries[0]
    for name in ("fruit", "metal", "weather"):
        pc = entry["per_concept"][name]
        assert pc["layer"] is None and pc["sparsity"] is None and pc["threshold"] is None
        assert {"f1", "precision", "recall"} <= set(pc)
    lo, hi = entry["ci95"]
    assert lo <= entry["weighted_f1"] <= hi
    info = entry["prompt"]
    assert info["template"].startswith("{text}\n\nDoes the text above mention {concept}?")
    assert info["chat_template"] is False and info["n_prompts"] == res["n_samples"]["test"] * 3
    # Independently: ask the same model about the TEST split in dataset order.
    ds = load_dataset(str(data), seed=0)
    test = ds.split_indices("test")
    det = PromptDetector(str(model_dir), ds.concepts, progress=False)
    pred = det.predict([ds.texts[i] for i in test])
    expected = detection_metrics(pred, ds.labels[test].astype(bool))
    assert entry["weighted_f1"] == pytest.approx(expected["weighted_f1"])
    for c, name in enumerate(ds.concepts):
        assert entry["per_concept"][name]["f1"] == pytest.approx(float(expected["f1"][c]))
    report = (out / "report.md").read_text()
    assert "## Prompting baseline" in report and "| prompt |" in report
    assert "Does the text above mention {concept}? Answer Yes or No." in report


# --- detector folders (issue 11, item 1) ----------------------------------------------


def test_run_leaves_one_loadable_detector_per_concept_type(run_dir, minilm_folder):
    from superact_lens.detection import ConceptDetector, SuperActivatorDetector

    res = json.loads((run_dir / "results.json").read_text())
    assert sorted(p.name for p in (run_dir / "detectors").iterdir()) == ["linsep", "mean"]
    hidden = [p for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".superact"]
    assert not hidden, "temporary folder left"
    for kind in ("linsep", "mean"):
        det = ConceptDetector.load(run_dir / "detectors" / kind)
        assert det.concept_type == kind and det.bank.kind == kind
        assert isinstance(det.detector, SuperActivatorDetector)
        assert det.model.name == str(Path(minilm_folder).resolve())  # usable from any folder
        assert (det.model.n_layers, det.model.d_model) == (7, 384)
        assert det.provenance["command"].startswith("superact run --model ")
        assert det.provenance["dataset"] == str(Path(det.provenance["dataset"]).resolve())
        for c, name in enumerate(det.concepts):
            pc = res["results"][kind]["superact"]["per_concept"][name]
            assert (det.layer_of(c), det.threshold_of(c)) == (pc["layer"], pc["threshold"])


def test_detect_on_the_run_detector_reproduces_its_test_f1(run_dir, capsys):
    """The saved detector, applied by `superact detect` to the TEST split, gives the
    per-concept F1 the run reported (same model, bank, normaliser and thresholds)."""
    from superact_lens.data import load_dataset

    res = json.loads((run_dir / "results.json").read_text())
    folder = run_dir / "detectors" / "linsep"
    dataset = json.loads((folder / "detector.json").read_text())["provenance"]["dataset"]
    ds = load_dataset(dataset, seed=0)
    test = ds.split_indices("test")
    argv = ["detect", "--detector", str(folder), "--json", "--quiet", "--text"]
    assert main(argv + [ds.texts[i] for i in test]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == len(test)
    for c, name in enumerate(ds.concepts):
        pred = [name in r["present"] for r in records]
        truth = [bool(ds.labels[i, c]) for i in test]
        tp = sum(p and t for p, t in zip(pred, truth, strict=True))
        f1 = 2 * tp / max(sum(pred) + sum(truth), 1)
        assert f1 == pytest.approx(res["results"]["linsep"]["superact"]["per_concept"][name]["f1"])


def test_a_failed_detector_write_keeps_the_previous_set(tmp_path, monkeypatch, minilm_folder):
    """Detectors are written to a temporary folder and renamed: an error while writing
    the second concept type leaves the previous OUT/detectors as it was."""
    from types import SimpleNamespace

    from superact_lens.cli.run import write_detectors
    from superact_lens.detection import ConceptDetector
    from superact_lens.lens import ConceptLens
    from tests.detection.tiny_detector import build_detector, tiny_bert_folder

    folder = tiny_bert_folder(tmp_path / "tiny", minilm_folder)
    lens = ConceptLens(str(folder))
    det = build_detector(lens, str(folder))
    exp = SimpleNamespace(
        config=SimpleNamespace(
            concepts=("linsep", "mean"), dataset="synthetic", seed=0, model=str(folder)
        ),
        layers=[0, 1, 2],
        lens=lens,
        banks={"linsep": det.bank, "mean": det.bank},
        normalizer=det.normalizer,
        detectors={"linsep": {"superact": det.detector}, "mean": {"superact": det.detector}},
        dataset=SimpleNamespace(concepts=det.concepts),
    )
    out = tmp_path / "out"
    out.mkdir()
    write_detectors(exp, out, "first")  # type: ignore[arg-type]
    real_save = ConceptDetector.save

    def save(self, path):
        if self.concept_type == "mean":
            raise OSError("disk full")
        return real_save(self, path)

    monkeypatch.setattr(ConceptDetector, "save", save)
    exp.detectors["linsep"]["superact"] = build_detector(lens, str(folder), seed=1).detector
    with pytest.raises(OSError, match="disk full"):
        write_detectors(exp, out, "second")  # type: ignore[arg-type]
    assert sorted(p.name for p in out.iterdir()) == ["detectors"]
    for kind in ("linsep", "mean"):
        kept = ConceptDetector.load(out / "detectors" / kind)
        assert kept.provenance["command"] == "first"
        assert torch.equal(kept.detector.threshold_, det.detector.threshold_)
