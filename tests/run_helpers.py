"""What the ``superact run`` tests of resuming and of several processes share: a tiny
model and dataset, the command line they run, and results.json without its timings."""

from __future__ import annotations

import json
from pathlib import Path

from superact_lens.data import make_synthetic_dataset, write_dataset_folder
from tests.detection.tiny_detector import tiny_bert_folder


def tiny_text_inputs(tmp_path_factory, minilm_folder) -> tuple[Path, Path]:
    """(tiny random BERT folder, 60-sample synthetic dataset folder)."""
    model = tiny_bert_folder(tmp_path_factory.mktemp("tiny"), minilm_folder)
    data = write_dataset_folder(make_synthetic_dataset(n=60, seed=1), tmp_path_factory.mktemp("d"))
    return model, data


def argv(model: Path | str, data: Path, out: Path, *extra: str) -> list[str]:
    """A small ``superact run`` (batches of 2: several chunks on 60 samples)."""
    return ["run", "--model", str(model), "--dataset", str(data), "--out", str(out),
            "--concepts", "mean", "--batch-size", "2", "--n-bootstrap", "20",
            "--no-figures", "--quiet", *extra]  # fmt: skip


def results(out: Path) -> dict:
    """OUT/results.json without ``timing_s`` (the one part that differs between runs)."""
    res = json.loads((out / "results.json").read_text())
    res.pop("timing_s")
    return res


def committed_chunks(out: Path) -> int:
    """Chunks of both passes committed under OUT/.superact."""
    state = out / ".superact"
    return sum(len(list((state / p).glob("chunk-*.json"))) for p in ("pass1", "pass2"))
