"""Resumable ``superact run``: a run stopped after k chunks and started again with the
same command writes the results.json of an uninterrupted run (issue 14, item 3)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from superact_lens.cli import main
from superact_lens.runstate import FAIL_ENV, chunk_plan
from tests.run_helpers import argv, committed_chunks, results, tiny_text_inputs


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_folder):
    """(tiny BERT folder, dataset folder, results.json of an uninterrupted run, its --out)."""
    model, data = tiny_text_inputs(tmp_path_factory, minilm_folder)
    out = tmp_path_factory.mktemp("whole") / "out"
    assert main(argv(model, data, out)) == 0
    return model, data, results(out), out


def test_the_plan_cuts_the_streams_batches_into_chunks():
    texts = ["a" * n for n in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3)]
    chunks = chunk_plan(texts, batch_size=2, chunk_batches=2)
    order = sorted(range(10), key=lambda i: -len(texts[i]))  # what ConceptLens.stream does
    assert [i for c in chunks for i in c] == order
    assert [len(c) for c in chunks] == [4, 4, 2]


@pytest.mark.parametrize("k", [1, 4])
def test_a_run_stopped_after_k_chunks_resumes_to_the_same_results(setup, tmp_path, monkeypatch, k):
    """5 chunks here: 3 of the train pass, 2 of cal+test; k=1 stops inside the train
    pass, k=4 inside pass 2 (after the fit was committed)."""
    model, data, whole, _ = setup
    out = tmp_path / "out"
    monkeypatch.setenv(FAIL_ENV, str(k))
    with pytest.raises(RuntimeError, match=FAIL_ENV):
        main(argv(model, data, out))
    assert not (out / "results.json").exists()
    state = out / ".superact"
    assert committed_chunks(out) == k
    (state / "pass2" / "chunk-00009.safetensors.tmp").write_bytes(b"half a file")
    monkeypatch.delenv(FAIL_ENV)
    assert main(argv(model, data, out)) == 0
    assert results(out) == whole
    assert [p.name for p in state.iterdir()] == ["run.json"]  # the chunks are removed


def test_the_same_command_again_rewrites_and_a_different_one_is_refused(setup, tmp_path, capsys):
    model, data, whole, done = setup
    out = tmp_path / "out"
    shutil.copytree(done, out)
    (out / "results.json").unlink()
    assert main(argv(model, data, out)) == 0  # the finished run kept only run.json
    assert results(out) == whole
    code = main([*argv(model, data, out), "--seed", "1"])
    assert code != 0
    err = capsys.readouterr().err
    assert "different command" in err and "seed" in err and "--overwrite" in err
    assert main([*argv(model, data, out), "--seed", "1", "--overwrite"]) == 0
    run = json.loads((out / ".superact" / "run.json").read_text())
    assert run["config"]["seed"] == 1


def test_a_non_empty_out_without_a_run_is_refused(setup, tmp_path, capsys):
    model, data, _, _ = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(argv(model, data, out)) != 0
    assert "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / ".superact").exists()


@pytest.mark.slow
def test_sigkill_at_a_random_point_twice_then_resume(setup, tmp_path):
    """A real kill: the process gets SIGKILL at a random moment, twice; the third
    start finishes, and its results equal the uninterrupted run's."""
    model, data, whole, _ = setup
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "superact_lens.cli", *argv(model, data, out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    rng = random.Random(14)
    killed = 0
    for _ in range(2):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        while proc.poll() is None and not (out / ".superact" / "run.json").exists():
            time.sleep(0.1)  # the model loads, then the run claims --out
        time.sleep(rng.uniform(0.5, 6.0))
        killed += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed >= 1, "every process finished before its kill: nothing was tested"
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    assert results(out) == whole
