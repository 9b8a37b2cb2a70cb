"""The bad-input catalogue (issue 14, item 5): every case is a clear error or a documented warning.

A clear error is an :class:`~superact_lens.errors.InputError` (a ``ValueError``;
the theory package, which stands alone, raises ``ValueError``) whose message
names what was wrong and where: the argument, file or row. Every case also
checks that nothing is left behind: no ``--out`` folder a failed command
created, no half-written saved file, and no forward hook still attached to any
module of the model (counted on every module before and after).

Small things only: a random 2-block BERT with MiniLM's tokenizer, tiny dataset
folders in tmp, the theory module's scalar map.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

import theory
from superact_lens.cli import main
from superact_lens.concepts.bank import ConceptBank
from superact_lens.data import make_synthetic_dataset, read_dataset_folder, write_dataset_folder
from superact_lens.data.dataset import DatasetError
from superact_lens.detection import ConceptDetector
from superact_lens.errors import InputError, InputTypeError
from superact_lens.lens import ConceptLens
from superact_lens.sinks import NormStatsSink
from tests.detection.tiny_detector import build_detector, tiny_bert_folder

TEXTS = ["The cat ate an apple in the rain.", "Copper and iron in the old mine."]


# --- helpers ---------------------------------------------------------------------------


def _hook_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    return {
        name: (len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    }


@contextmanager
def no_hooks_left(model: nn.Module) -> Iterator[None]:
    """The body must raise; afterwards every module has the hooks it had before."""
    before = _hook_counts(model)
    yield
    assert _hook_counts(model) == before


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), hidden temporaries included."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line_error(capsys, argv: list[str]) -> str:
    """Run ``superact argv``; it must exit 2 with one ``superact: error:`` line; return it."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("superact: error:"), lines
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_folder):
    """(folder, lens, detector, saved detector folder) for a random 2-block BERT."""
    folder = tiny_bert_folder(tmp_path_factory.mktemp("tiny-bert"), minilm_folder)
    lens = ConceptLens(str(folder))
    det = build_detector(lens, str(folder))
    return folder, lens, det, det.save(tmp_path_factory.mktemp("det") / "linsep")


@pytest.fixture
def data(tmp_path) -> Path:
    """A small, valid dataset folder (synthetic: fruit, metal, weather)."""
    return write_dataset_folder(make_synthetic_dataset(n=30, seed=1), tmp_path / "data")


def _edit_row(data: Path, row: int, old: str, new: str) -> str:
    """Replace ``old`` by ``new`` in metadata.csv row ``row`` (1 = first after the header)."""
    meta = data / "metadata.csv"
    lines = meta.read_text().splitlines()
    assert old in lines[row], lines[row]
    lines[row] = lines[row].replace(old, new, 1)
    meta.write_text("\n".join(lines) + "\n")
    return lines[row].split(",")[0]


# --- the lens --------------------------------------------------------------------------


def test_lens_nan_in_weights_names_the_layer_and_parameter(tiny):
    folder = tiny[0]
    lens = ConceptLens(str(folder))  # its own copy: this test breaks the weights
    weight = lens.model.encoder.layer[1].attention.output.dense.weight
    with torch.no_grad():
        weight[0, 0] = float("nan")
    with no_hooks_left(lens.model), pytest.raises(InputError) as err:
        lens.stream(TEXTS, [NormStatsSink()], progress=False)
    message = str(err.value)
    assert "NaN" in message and "layer 2" in message
    assert "encoder.layer.1.attention.output.dense.weight" in message


def test_finite_check_screens_by_row_sums_and_confirms():
    """The cheap row-sum screen neither misses a non-finite content value nor raises on
    finite values whose sum overflows, and ignores padding."""
    from types import SimpleNamespace

    from superact_lens.lens import _check_finite

    content = torch.tensor([[True, True, False]])
    batch = SimpleNamespace(content_mask=content, sample_ids=torch.tensor([7]))
    model = torch.nn.Linear(2, 2)
    resid = torch.zeros(1, 3, 4)
    resid[0, 1] = torch.tensor([3e38, 3e38, -1.0, 1.0])  # finite; its sum overflows to inf
    resid[0, 2] = float("nan")  # padding
    _check_finite(model, 0, resid, batch)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = resid.clone()
        broken[0, 0, 3] = bad
        with pytest.raises(InputError, match=r"layer 0 residual has NaN or inf.*\[7\]"):
            _check_finite(model, 0, broken, batch)


def test_lens_unknown_layer_names_the_valid_range(tiny):
    _, lens, det, _ = tiny
    with no_hooks_left(lens.model), pytest.raises(InputError, match=r"unknown layer 99.*0\.\.2"):
        lens.scores(TEXTS, det.bank, det.normalizer, layers=[99], progress=False)


@pytest.mark.parametrize(
    ("texts", "where"),
    [
        pytest.param(["fine", 3], r"texts\[1\]: expected str, got int", id="an-int-among-strings"),
        pytest.param(["fine", None], r"texts\[1\]: expected str, got NoneType", id="a-none"),
        pytest.param(None, r"texts: expected a list of strings, got NoneType", id="texts-none"),
        pytest.param("one text", r"texts: .*got one str", id="a-bare-str"),
        pytest.param([b"bytes"], r"texts\[0\]: expected str, got bytes", id="bytes"),
    ],
)
def test_lens_texts_that_are_not_strings(tiny, texts, where):
    _, lens, det, _ = tiny
    with no_hooks_left(lens.model), pytest.raises(InputTypeError, match=where):
        lens.scores(texts, det.bank, det.normalizer, progress=False)


def test_lens_a_sink_failing_mid_forward_leaves_no_hooks(tiny):
    _, lens, _, _ = tiny

    class Broken(NormStatsSink):
        def on_layer(self, layer, resid, batch):
            if layer == 1:
                raise InputError("sink: broken on purpose at layer 1")
            super().on_layer(layer, resid, batch)

    with no_hooks_left(lens.model), pytest.raises(InputError, match="broken on purpose"):
        lens.stream(TEXTS, [Broken()], progress=False)


def test_lens_bank_of_another_width_names_both_widths(tiny):
    _, lens, _, _ = tiny
    bank = ConceptBank([0, 1, 2], ["a"], torch.randn(3, 1, lens.d_model + 5))
    with no_hooks_left(lens.model), pytest.raises(InputError, match=r"37.*32|32.*37"):
        lens.scores(TEXTS, bank, progress=False)


# --- dataset folders -------------------------------------------------------------------


def test_dataset_bad_label_value_names_row_file_and_column(data):
    path = _edit_row(data, 4, "train,1", "train,maybe")
    with pytest.raises(DatasetError) as err:
        read_dataset_folder(data)
    assert f"metadata.csv row 4 (file {path})" in str(err.value)
    assert "column 'fruit': expected 0 or 1, got 'maybe'" in str(err.value)


def test_dataset_unknown_split_names_the_row(data):
    _edit_row(data, 2, ",train,", ",trian,")
    with pytest.raises(DatasetError, match=r"row 2 .*unknown split 'trian'"):
        read_dataset_folder(data)


def test_dataset_unclosed_tag_names_row_file_and_tag(data):
    text = data / "paragraphs" / "00000.txt"
    text.write_text(text.read_text().replace("</weather>", ""))
    with pytest.raises(DatasetError) as err:
        read_dataset_folder(data)
    assert "metadata.csv row 1 (file paragraphs/00000.txt)" in str(err.value)
    assert "<weather> is never closed" in str(err.value)


def test_dataset_duplicate_text_path_names_both_rows(data):
    _edit_row(data, 2, "paragraphs/00001.txt", "paragraphs/00000.txt")
    with pytest.raises(DatasetError) as err:
        read_dataset_folder(data)
    message = str(err.value)
    assert "metadata.csv row 2 (file paragraphs/00000.txt)" in message
    assert "also listed in row 1" in message


def test_dataset_no_positive_in_a_split_names_concept_and_split(data):
    meta = data / "metadata.csv"
    rows = [line.split(",") for line in meta.read_text().splitlines()]
    col = rows[0].index("metal")
    for row in rows[1:]:
        if row[1] == "cal":
            row[col] = "0"
            f = data / row[0]
            f.write_text(re.sub(r"</?metal>", "", f.read_text()))
    meta.write_text("\n".join(",".join(r) for r in rows) + "\n")
    with pytest.raises(DatasetError, match="concept 'metal': no positive sample in cal"):
        read_dataset_folder(data)


def test_dataset_labels_without_spans_are_allowed_and_warned_about_in_a_run(
    tmp_path, data, tiny, caplog
):
    """INTERFACES §1: a positive row with no span is "present, location unknown". A
    concept never located in train is learned from sample labels: a logged warning
    and a note in results.json (documented in pipeline._spanless_fallback)."""
    for f in (data / "paragraphs").glob("*.txt"):
        f.write_text(re.sub(r"</?metal>", "", f.read_text()))
    ds = read_dataset_folder(data)  # allowed: no error
    assert ds.labels[:, ds.concepts.index("metal")].any()
    out = tmp_path / "out"
    argv = ["run", "--model", str(tiny[0]), "--dataset", str(data), "--out", str(out),
            "--concepts", "mean", "--methods", "superact", "--n-bootstrap", "10",
            "--no-figures", "--quiet"]  # fmt: skip
    with pytest.warns(UserWarning, match="no in-concept cal tokens"):
        assert main(argv) == 0
    assert any("'metal' has no span in the train split" in r.message for r in caplog.records)
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert any("'metal'" in note for note in notes)


# --- concept banks and saved detectors -------------------------------------------------


@pytest.fixture
def bank_dir(tmp_path) -> Path:
    ConceptBank([0, 2], ["a", "b"], torch.randn(2, 2, 8)).save(tmp_path / "bank")
    return tmp_path / "bank"


@pytest.mark.parametrize("name", ["bank.safetensors", "bank.json"])
def test_bank_truncated_file_is_named(bank_dir, name):
    file = bank_dir / name
    raw = file.read_bytes()
    file.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=re.escape(str(file))):
        ConceptBank.load(bank_dir)


def test_bank_wrong_format_version_is_named(bank_dir):
    file = bank_dir / "bank.json"
    config = json.loads(file.read_text())
    file.write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(InputError, match=r"bank\.json.*format_version 99"):
        ConceptBank.load(bank_dir)


def test_bank_failed_save_leaves_no_half_written_folder(tmp_path, bank_dir):
    bad = ConceptBank([0], ["a"], torch.randn(1, 1, 8), metadata={"fitted_on": object()})
    with pytest.raises(InputTypeError, match="metadata"):
        bad.save(tmp_path / "new")
    assert not (tmp_path / "new").exists() or _tree(tmp_path / "new") == {}
    before = _tree(bank_dir)
    with pytest.raises(InputTypeError, match="metadata"):
        bad.save(bank_dir)  # over an existing bank: the old one stays whole
    assert _tree(bank_dir) == before
    ConceptBank.load(bank_dir)


def _copy_detector(src: Path, dest: Path) -> Path:
    for rel, raw in _tree(src).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(raw)
    return dest


def test_detector_truncated_file_is_named(tmp_path, tiny):
    path = _copy_detector(tiny[3], tmp_path / "det")
    file = path / "normalizer.safetensors"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(InputError, match=re.escape(str(file)) + ".*truncated"):
        ConceptDetector.load(path)


def test_detector_wrong_format_version_is_named(tmp_path, tiny):
    path = _copy_detector(tiny[3], tmp_path / "det")
    index = json.loads((path / "detector.json").read_text())
    (path / "detector.json").write_text(json.dumps({**index, "format_version": 7}))
    with pytest.raises(InputError, match=r"detector\.json: unknown format_version 7"):
        ConceptDetector.load(path)


def test_detector_on_a_model_of_another_width_is_refused(tmp_path, tiny, minilm_folder):
    folder = tiny_bert_folder(tmp_path / "wide", minilm_folder, width=48)
    other = ConceptLens(str(folder))
    with no_hooks_left(other.model), pytest.raises(InputError, match=r"width d_model 48 != 32"):
        ConceptDetector.load(tiny[3], lens=other)


def test_detector_failed_save_keeps_the_previous_one(tmp_path, tiny):
    _, _, det, saved = tiny
    path = _copy_detector(saved, tmp_path / "det")
    before = _tree(tmp_path)
    det.provenance["not json"] = object()
    try:
        with pytest.raises(TypeError):
            det.save(path)
    finally:
        del det.provenance["not json"]
    assert _tree(tmp_path) == before  # no temporary folder either
    ConceptDetector.load(path)


# --- the command line ------------------------------------------------------------------


def _run_argv(model: str, data: Path, out: Path) -> list[str]:
    return ["run", "--model", model, "--dataset", str(data), "--out", str(out),
            "--concepts", "mean", "--n-bootstrap", "10", "--no-figures", "--quiet"]  # fmt: skip


def test_cli_missing_model_folder_leaves_no_out(capsys, tmp_path, data):
    out = tmp_path / "out"
    line = _one_line_error(capsys, _run_argv(str(tmp_path / "no-model"), data, out))
    assert "model: no such model folder" in line and str(tmp_path / "no-model") in line
    assert not out.exists()


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"HF_HUB_OFFLINE": "1"}, id="HF_HUB_OFFLINE"),
        pytest.param({"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}, id="no-network"),
    ],
)
def test_cli_hub_id_not_cached_without_network_fails_fast(capsys, monkeypatch, tmp_path, data, env):
    """Was ~45 s of retries before the error; the bound is for correctness, not speed."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    out = tmp_path / "out"
    start = time.perf_counter()
    line = _one_line_error(capsys, _run_argv("some-org/not-a-cached-model", data, out))
    assert time.perf_counter() - start < 10.0
    assert "'some-org/not-a-cached-model' is not in the local Hugging Face cache" in line
    assert "no network" in line and "local model folder" in line
    assert not out.exists()


def test_cli_out_under_a_file_is_refused_before_loading(capsys, tmp_path, data):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    line = _one_line_error(capsys, _run_argv("no-such-model-is-loaded", data, blocker / "out"))
    assert f"--out {blocker / 'out'}: cannot create the folder" in line
    assert blocker.read_text() == "keep me"


def test_cli_out_that_is_a_file_is_left_unchanged(capsys, tmp_path, data):
    target = tmp_path / "results"
    target.write_text("not a folder")
    line = _one_line_error(capsys, _run_argv("no-such-model-is-loaded", data, target))
    assert f"--out {target} exists and is not a folder" in line
    assert target.read_text() == "not a folder"


def test_cli_concept_without_positives_names_it_and_leaves_out_unchanged(
    capsys, tmp_path, data, tiny
):
    meta = data / "metadata.csv"
    rows = [line.split(",") for line in meta.read_text().splitlines()]
    col = rows[0].index("fruit")
    for row in rows[1:]:
        row[col] = "0"
        f = data / row[0]
        f.write_text(re.sub(r"</?fruit>", "", f.read_text()))
    meta.write_text("\n".join(",".join(r) for r in rows) + "\n")
    fresh = tmp_path / "fresh"
    line = _one_line_error(capsys, _run_argv(str(tiny[0]), data, fresh))
    assert "concept 'fruit': no positive sample in train" in line
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    _one_line_error(capsys, _run_argv(str(tiny[0]), data, kept))
    assert _tree(kept) == {"notes.txt": b"mine"}


def test_cli_dataset_file_edited_during_a_run_names_it_and_leaves_no_out(
    capsys, monkeypatch, tmp_path, data, tiny
):
    """``superact run`` leaves the texts in their files (data.on_disk) and reads them
    back per chunk: a file edited after the check is refused by name when read back."""
    from superact_lens import pipeline

    edited = data / "paragraphs" / "00000.txt"
    stream_pass1 = pipeline.stream_pass1

    def edit_then_stream(state, world, lens, train_texts, *args, **kwargs):
        edited.write_text(edited.read_text() + " Edited.")
        train_texts._texts.reader.row.cache_clear()  # 30 samples: all in the read cache
        return stream_pass1(state, world, lens, train_texts, *args, **kwargs)

    monkeypatch.setattr(pipeline, "stream_pass1", edit_then_stream)
    out = tmp_path / "out"
    line = _one_line_error(capsys, _run_argv(str(tiny[0]), data, out))
    assert "row 1 (file paragraphs/00000.txt): changed since the dataset was read" in line
    assert not out.exists()


# --- the theory module -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda: theory.simulate(torch.tensor([1.0, math.nan]), 2, beta=1.0, kappa=1.0),
            r"a0: expected finite",
            id="simulate-nan-activation",
        ),
        pytest.param(
            lambda: theory.simulate(torch.tensor([1.0, 0.5]), 2, beta=1.0, kappa=math.inf),
            r"kappa: expected finite values, got inf",
            id="simulate-infinite-kappa",
        ),
        pytest.param(
            lambda: theory.simulate(torch.tensor([1.0, 0.5]), 2, beta=math.nan, kappa=1.0),
            r"beta: expected finite values, got nan",
            id="simulate-nan-beta",
        ),
        pytest.param(
            lambda: theory.simulate(torch.empty(0), 2, beta=1.0, kappa=1.0),
            r"a0: .*at least one token, got shape \(0,\)",
            id="simulate-empty-sequence",
        ),
        pytest.param(
            lambda: theory.Config(torch.tensor([[1.0, math.nan]]), 1.0, 1.0),
            r"a: expected finite",
            id="config-nan-activation",
        ),
        pytest.param(
            lambda: theory.Config(torch.ones(2, 3), 1.0, math.inf),
            r"kappa: expected finite",
            id="config-infinite-kappa",
        ),
        pytest.param(
            lambda: theory.g(math.inf, torch.tensor([1.0, 0.5, 0.0])),
            r"s: expected finite",
            id="g-infinite-argument",
        ),
        pytest.param(
            lambda: theory.g(1.0, torch.empty(0)),
            r"a: .*at least one token, got shape \(0,\)",
            id="g-empty-sequence",
        ),
        pytest.param(
            lambda: theory.mean_variance(
                torch.tensor([1.0, 0.5, 0.0]), torch.tensor(0.0), torch.tensor(1.0), math.inf
            ),
            r"kappa: expected finite",
            id="mean-variance-infinite-kappa",
        ),
        pytest.param(
            lambda: theory.off_pole_bound(torch.tensor([1.0, math.nan]), 1.0),
            r"a: expected finite",
            id="off-pole-bound-nan",
        ),
    ],
)
def test_theory_bad_numbers(call, match):
    with pytest.raises(ValueError, match=match):
        call()
