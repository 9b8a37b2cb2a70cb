"""Texts and spans left in the dataset folder (``texts_on_disk``), read back when asked."""

from __future__ import annotations

import functools
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.data import DatasetError, load_dataset, make_synthetic_dataset
from superact_lens.data import write_dataset_folder as write_ds
from superact_lens.data.on_disk import FolderSpans, FolderTexts
from superact_lens.data.packed import PackedStrings
from tests.data.helpers import good_rows, write_folder


def _both(folder: Path):
    return load_dataset(folder), load_dataset(folder, texts_on_disk=True)


def test_on_disk_dataset_reads_like_the_packed_one(tmp_path: Path) -> None:
    rows, files = good_rows()
    packed, on_disk = _both(write_folder(tmp_path / "d", rows, files))
    assert isinstance(on_disk.texts, FolderTexts) and isinstance(on_disk.spans, FolderSpans)
    assert list(on_disk.texts) == list(packed.texts)
    assert list(on_disk.spans) == list(packed.spans)
    assert on_disk.texts[-1] == packed.texts[-1] and on_disk.texts[1:4] == packed.texts[1:4]
    assert on_disk.meta == packed.meta and (on_disk.labels == packed.labels).all()
    with pytest.raises(IndexError, match="out of range"):
        on_disk.texts[len(rows)]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), picks=st.lists(st.integers(0, 59), max_size=25))
def test_select_and_subset_stay_on_disk_and_equal_packed(tmp_path_factory, seed, picks) -> None:
    """``select`` in any order (repeats included) and ``subset`` give the packed
    dataset's items, and still read from the folder."""
    folder = write_ds(make_synthetic_dataset(n=60, seed=seed), tmp_path_factory.mktemp("d"))
    packed, on_disk = _both(folder)
    sel_p, sel_d = packed.select(picks), on_disk.select(picks)
    assert isinstance(sel_d.texts, FolderTexts)
    assert list(sel_d.texts) == list(sel_p.texts) and list(sel_d.spans) == list(sel_p.spans)
    for split in ("train", "cal", "test"):
        sub_p, sub_d = packed.subset(split), on_disk.subset(split)
        assert list(sub_d.texts) == list(sub_p.texts) and list(sub_d.spans) == list(sub_p.spans)


def test_an_on_disk_dataset_pickles(tmp_path: Path) -> None:
    """A copy in another process reads the same folder, with the same digests."""
    rows, files = good_rows()
    folder = write_folder(tmp_path / "d", rows, files)
    ds = load_dataset(folder, texts_on_disk=True).subset("test")
    copy = pickle.loads(pickle.dumps(ds))
    assert isinstance(copy.texts, FolderTexts)
    assert list(copy.texts) == list(ds.texts) and list(copy.spans) == list(ds.spans)
    (folder / "p/5.txt").write_text("A happy day.", encoding="utf-8")
    with pytest.raises(DatasetError, match="changed since"):
        pickle.loads(pickle.dumps(ds)).texts[1]


def test_a_file_changed_after_the_read_is_refused(tmp_path: Path) -> None:
    rows, files = good_rows()
    folder = write_folder(tmp_path / "d", rows, files)
    ds = load_dataset(folder, texts_on_disk=True)
    (folder / "p/2.txt").write_text("We <sad>laughed</sad> all night.", encoding="utf-8")
    assert ds.texts[1] == "Plain text about nothing."  # other files still read
    with pytest.raises(DatasetError, match=r"row 3 \(file p/2.txt\): changed since"):
        ds.texts[2]
    (folder / "p/4.txt").unlink()
    with pytest.raises(DatasetError, match=r"row 5 \(file p/4.txt\): unreadable since"):
        ds.spans[4]


def test_a_row_is_read_once_for_its_text_and_spans(tmp_path: Path, monkeypatch) -> None:
    """The token masks ask for a chunk's texts and spans, then the forward pass for
    its texts again: the reader's cache parses each file once."""
    from superact_lens.data import source

    rows, files = good_rows()
    reads: list[str] = []
    original = source.Source.read_bytes

    def counting(self, rel):
        reads.append(rel)
        return original(self, rel)

    monkeypatch.setattr(source.Source, "read_bytes", counting)
    ds = load_dataset(write_folder(tmp_path / "d", rows, files), texts_on_disk=True)
    assert reads == ["metadata.csv", *(r["text_path"] for r in rows)]  # the check
    reads.clear()
    for _ in range(2):
        _ = [ds.texts[i] for i in range(3)] + [ds.spans[i] for i in range(3)]
    assert reads == ["p/0.txt", "p/1.txt", "p/2.txt"]


def test_an_archive_is_held_in_memory(tmp_path: Path) -> None:
    rows, files = good_rows()
    folder = write_folder(tmp_path / "d", rows, files)
    archive = tmp_path / "d.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="d")
    ds = load_dataset(archive, texts_on_disk=True)
    assert isinstance(ds.texts, PackedStrings)
    assert list(ds.texts) == list(load_dataset(folder).texts)


def test_run_chunks_are_planned_from_the_known_lengths(tmp_path: Path, monkeypatch) -> None:
    """chunk_plan orders by the lengths recorded at the check, without reading a file,
    and gives the plan of the texts in memory."""
    from superact_lens.run_prepare import RowsView
    from superact_lens.runstate import chunk_plan

    folder = write_ds(make_synthetic_dataset(n=300, seed=3), tmp_path / "d")
    packed, on_disk = _both(folder)
    monkeypatch.setattr(on_disk.texts.reader, "row", None)  # any read would raise
    for split in ("train", "cal", "test"):
        rows = np.asarray(packed.split_indices(split))
        assert chunk_plan(RowsView(on_disk.texts, rows), 8, 2) == chunk_plan(
            [packed.texts[int(i)] for i in rows], 8, 2
        )


def test_fingerprint_reads_each_file_once_and_equals_packed(tmp_path: Path, monkeypatch) -> None:
    """The run's dataset hash is the same whether the texts are held or left on disk,
    and it reads each file once (texts and spans in one pass)."""
    from superact_lens.runstate import dataset_fingerprint

    folder = write_ds(make_synthetic_dataset(n=40, seed=1), tmp_path / "d")
    packed, on_disk = _both(folder)
    reader = on_disk.texts.reader
    monkeypatch.setattr(reader, "row", functools.lru_cache(maxsize=2)(reader._row))
    reads: list[str] = []
    read_bytes = reader._read_bytes

    def counting(rel: str) -> bytes:
        reads.append(rel)
        return read_bytes(rel)

    monkeypatch.setattr(reader, "_read_bytes", counting)
    assert dataset_fingerprint(on_disk) == dataset_fingerprint(packed)
    assert sorted(reads) == sorted(packed.paths)
    reads.clear()
    _ = list(on_disk.texts) + list(on_disk.spans)  # the cache is too small for two passes
    assert len(reads) == 2 * len(packed)
