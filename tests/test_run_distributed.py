"""Data-parallel ``superact run``: 2 gloo processes on CPU write the results.json of
one process (issue 14, item 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from superact_lens.cli import main
from superact_lens.data import make_synthetic_dataset, write_dataset_folder
from tests.detection.tiny_detector import tiny_bert_folder

ROOT = Path(__file__).parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_folder):
    """(tiny BERT folder, dataset folder, results.json of a 1-process run)."""
    model = tiny_bert_folder(tmp_path_factory.mktemp("tiny"), minilm_folder)
    data = write_dataset_folder(make_synthetic_dataset(n=60, seed=1), tmp_path_factory.mktemp("d"))
    out = tmp_path_factory.mktemp("one") / "out"
    assert main(argv(model, data, out)) == 0
    return model, data, results(out)


def argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", str(model), "--dataset", str(data), "--out", str(out),
            "--concepts", "mean", "--batch-size", "2", "--n-bootstrap", "20",
            "--no-figures", "--quiet", *extra]  # fmt: skip


def results(out: Path) -> dict:
    res = json.loads((out / "results.json").read_text())
    res.pop("timing_s")
    return res


def test_two_gloo_processes_equal_one(setup, tmp_path):
    model, data, one = setup
    out = tmp_path / "out"
    assert main(argv(model, data, out, "--nproc", "2")) == 0
    assert results(out) == one
    assert [p.name for p in (out / ".superact").iterdir()] == ["run.json"]


@pytest.mark.slow
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed")
def test_torchrun_launch_equals_one_process(setup, tmp_path):
    model, data, one = setup
    out = tmp_path / "out"
    cmd = [
        str(TORCHRUN),
        "--nproc-per-node",
        "2",
        "-m",
        "superact_lens.cli",
        *argv(model, data, out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    assert results(out) == one


@pytest.mark.slow
def test_a_run_of_two_processes_resumes_with_one(setup, tmp_path, monkeypatch):
    """Stopped in the 2-process run after its ranks committed some chunks; resumed
    by one process: the collectors of both attempts merge to the same results."""
    model, data, one = setup
    out = tmp_path / "out"
    monkeypatch.setenv("SUPERACT_FAIL_AFTER_CHUNKS", "2")
    with pytest.raises(Exception, match="SUPERACT_FAIL_AFTER_CHUNKS"):
        main(argv(model, data, out, "--nproc", "2"))
    monkeypatch.delenv("SUPERACT_FAIL_AFTER_CHUNKS")
    assert main(argv(model, data, out)) == 0
    assert results(out) == one
