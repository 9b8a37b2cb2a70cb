"""dataset_stats / format_stats."""

from __future__ import annotations

from pathlib import Path

from superact_lens.data import dataset_stats, format_stats, load_dataset


def test_counts_per_split_and_concept(good_folder: Path) -> None:
    (good_folder / "p/0.txt").write_text("A happy dog, untagged.", encoding="utf-8")
    stats = dataset_stats(load_dataset(good_folder))
    assert stats["n_samples"] == {"train": 3, "cal": 1, "test": 2, "total": 6}
    joy = stats["concepts"]["joy"]
    assert joy["positives"] == {"train": 1, "cal": 1, "test": 1, "total": 3}
    assert joy["spans"] == 2 and joy["positives_without_span"] == 1
    assert stats["negative_for_all"] == 2 and "in_concept_tokens" not in joy
    table = format_stats(stats)
    assert "samples: train 3, cal 1, test 2, total 6" in table
    assert table.splitlines()[-2].split()[:5] == ["joy", "1", "1", "1", "3"]
