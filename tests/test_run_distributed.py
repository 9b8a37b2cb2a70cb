"""Data-parallel ``superact run``: 2 gloo processes on CPU write the results.json of
one process (issue 14, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from superact_lens.cli import main
from tests.run_helpers import argv, results, tiny_text_inputs

ROOT = Path(__file__).parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_folder):
    """(tiny BERT folder, dataset folder, results.json of a 1-process run)."""
    model, data = tiny_text_inputs(tmp_path_factory, minilm_folder)
    out = tmp_path_factory.mktemp("one") / "out"
    assert main(argv(model, data, out)) == 0
    return model, data, results(out)


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
