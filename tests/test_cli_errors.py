"""Exit status of the ``superact`` command, run as a real process.

Bad input (an ``InputError``) is one line on stderr and status 2; bad arguments
get argparse's usage and status 2; a bug anywhere else keeps its traceback and
exits 1; Ctrl-C exits 130. Internal errors are injected by replacing
``pipeline.run_rank`` (what ``superact run`` calls) before ``main`` runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

_LAUNCH = """
import sys
import superact_lens.pipeline as pipeline
from superact_lens.cli import main

{patch}
sys.exit(main(sys.argv[1:]))
"""


def _superact(argv: list[str], patch: str = "", **popen) -> subprocess.Popen:
    code = _LAUNCH.format(patch=textwrap.dedent(patch))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def _run(argv: list[str], patch: str = "") -> tuple[int, str]:
    proc = _superact(argv, patch)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _run_args(tmp_path, **flags: str) -> list[str]:
    base = {"--dataset": "synthetic", "--out": str(tmp_path / "out"), **flags}
    return ["run", "--quiet", *[x for kv in base.items() for x in kv]]


def test_bad_input_is_one_line_and_status_2(tmp_path):
    code, err = _run(_run_args(tmp_path, **{"--dataset": str(tmp_path / "missing")}))
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("superact: error:"), err
    assert str(tmp_path / "missing") in lines[0]


def test_bad_arguments_get_argparse_usage_and_status_2():
    code, err = _run(["run", "--batch-size", "many"])
    assert code == 2
    assert err.startswith("usage: ") and "invalid int value: 'many'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("error", ["TypeError", "ValueError", "OSError"])
def test_internal_error_keeps_its_traceback_and_status_1(tmp_path, error):
    """A ValueError from our own code (not an InputError) is a bug, not the user's fault."""
    patch = f"""
    def run_rank(config, state, world, dataset=None):
        raise {error}("injected internal failure")
    pipeline.run_rank = run_rank
    """
    code, err = _run(_run_args(tmp_path), patch)
    assert code == 1, err
    assert "Traceback (most recent call last)" in err
    assert f"{error}: injected internal failure" in err
    assert "superact: error:" not in err


def test_ctrl_c_exits_130(tmp_path):
    """A real SIGINT while the run is under way."""
    patch = """
    import time
    def run_rank(config, state, world, dataset=None):
        print("running", flush=True)
        time.sleep(60)
    pipeline.run_rank = run_rank
    """
    # A child inherits an ignored SIGINT (some library in the test session may ignore it
    # in the pytest process, and Python then keeps it ignored): start it as a shell would.
    proc = _superact(
        _run_args(tmp_path),
        patch,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "superact: interrupted"
    assert "Traceback" not in err


def test_the_cli_caps_malloc_arenas_unless_the_environment_says(monkeypatch):
    """``main`` calls mallopt(M_ARENA_MAX, 2) and passes it on to child processes;
    a MALLOC_ARENA_MAX the user set is left alone."""
    import platform

    import superact_lens.cli as cli

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(cli.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    cli._limit_malloc_arenas()
    assert calls == [(-8, 2)] and os.environ["MALLOC_ARENA_MAX"] == "2"
    calls.clear()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    cli._limit_malloc_arenas()
    assert calls == [] and os.environ["MALLOC_ARENA_MAX"] == "4"
