"""The dataset folder format: loading, tag semantics, validation of malformed input."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.data import (
    DatasetError,
    load_dataset,
    make_synthetic_dataset,
    read_dataset_folder,
    stratified_split,
    write_dataset_folder,
)
from tests.data.helpers import good_rows, write_folder


def _problems(folder: Path, **kw) -> list[str]:
    with pytest.raises(DatasetError) as info:
        read_dataset_folder(folder, **kw)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def test_loads_texts_labels_spans_and_splits(good_folder: Path) -> None:
    ds = load_dataset(good_folder)
    assert ds.concepts == ["joy", "sad"]
    assert ds.texts[0] == "I saw a happy dog."
    assert ds.spans[0] == [(8, 13, 0)]
    assert ds.texts[0][8:13] == "happy"
    assert ds.labels.tolist() == [[1, 0], [0, 0], [0, 1], [1, 1], [0, 0], [1, 1]]
    assert ds.splits.tolist() == ["train", "train", "train", "cal", "test", "test"]
    assert ds.paths[2] == "p/2.txt"
    assert len(ds.subset("test")) == 2 and ds.split_indices("cal").tolist() == [3]


def test_concept_tag_names_ignore_case_and_separators(good_folder: Path) -> None:
    ds = load_dataset(good_folder)
    assert ds.spans[2] == [(3, 8, 1)]  # <Sad> matches column "sad"
    assert ds.spans[5] == [(2, 8, 0), (13, 19, 1)]


def test_generic_tag_marks_every_positive_concept(good_folder: Path) -> None:
    ds = load_dataset(good_folder)
    text = ds.texts[3]
    assert text == "So glad and so blue! Then we left."
    assert ds.spans[3] == [(0, 20, 0), (0, 20, 1)]


def test_dotted_and_spaced_concept_names(tmp_path: Path) -> None:
    texts = {
        "a.txt": "The <noun.animal>dog</noun.animal> <Verb-Motion>ran</Verb-Motion>.",
        "b.txt": "A <NOUN.ANIMAL>cat</NOUN.ANIMAL> <verb motion>ran</verb motion>.",
    }
    rows = [
        {"text_path": "a.txt", "split": "train", "noun.animal": 1, "verb_motion": 1},
        {"text_path": "b.txt", "split": "cal", "noun.animal": 1, "verb_motion": 1},
    ]
    ds = read_dataset_folder(write_folder(tmp_path / "d", rows, texts))
    assert ds.concepts == ["noun.animal", "verb_motion"]
    assert [ds.texts[0][s:e] for s, e, _ in ds.spans[0]] == ["dog", "ran"]
    assert ds.spans[1] == [(2, 5, 0), (6, 9, 1)]


def test_positive_row_without_span_is_kept(good_folder: Path) -> None:
    (good_folder / "p/0.txt").write_text("A happy dog, no tags.", encoding="utf-8")
    ds = load_dataset(good_folder)
    assert ds.labels[0, 0] and ds.spans[0] == []


def test_nested_tags_and_whitespace_trimmed(tmp_path: Path) -> None:
    texts = {
        "a.txt": "<joy> very <sad>odd</sad> day </joy>!",
        "b.txt": "x <joy>y</joy> <sad>z</sad>",
    }
    rows = [
        {"text_path": "a.txt", "split": "train", "joy": 1, "sad": 1},
        {"text_path": "b.txt", "split": "cal", "joy": 1, "sad": 1},
    ]
    ds = read_dataset_folder(write_folder(tmp_path / "d", rows, texts))
    text = ds.texts[0]
    assert text == " very odd day !"
    assert [(text[s:e], c) for s, e, c in ds.spans[0]] == [("very odd day", 0), ("odd", 1)]


def test_synthetic_roundtrip_through_folder(tmp_path: Path) -> None:
    ds = make_synthetic_dataset(n=30, seed=3)
    back = load_dataset(write_dataset_folder(ds, tmp_path / "syn"))
    assert back.texts == ds.texts
    assert back.spans == ds.spans
    np.testing.assert_array_equal(back.labels, ds.labels)
    np.testing.assert_array_equal(back.splits, ds.splits)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_reads_archives(good_folder: Path, tmp_path: Path, kind: str) -> None:
    archive = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for p in good_folder.rglob("*"):
                zf.write(p, f"good/{p.relative_to(good_folder)}")
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(good_folder, arcname="good")
    ds, ref = load_dataset(archive), load_dataset(good_folder)
    assert ds.texts == ref.texts and ds.spans == ref.spans


# ---------------------------------------------------------------- malformed input


def test_every_problem_is_reported_with_row_and_file(tmp_path: Path) -> None:
    rows, texts = good_rows()
    rows[1]["text_path"] = "p/missing.txt"
    rows[2]["split"] = "validation"
    texts["p/4.txt"] = "An <joy>unclosed tag."
    texts["p/5.txt"] = "A <joy>cross <sad>ing</joy> tags</sad>."
    problems = _problems(write_folder(tmp_path / "bad", rows, texts))
    assert any("row 2 (file p/missing.txt): file not found" in p for p in problems)
    assert any("row 3 (file p/2.txt): unknown split 'validation'" in p for p in problems)
    assert any("row 5 (file p/4.txt): unbalanced tag: <joy>" in p for p in problems)
    assert any("row 6 (file p/5.txt): crossing tags" in p for p in problems)
    assert "concept 'sad': no positive sample in train" in problems  # its only row has a bad split
    assert len(problems) == 5


def test_error_message_lists_problems(tmp_path: Path) -> None:
    rows, texts = good_rows()
    rows[0]["text_path"] = "nope.txt"
    with pytest.raises(DatasetError, match=r"metadata.csv row 1 \(file nope.txt\): file not found"):
        load_dataset(write_folder(tmp_path / "bad", rows, texts))


def test_missing_text_path_column(tmp_path: Path) -> None:
    rows, texts = good_rows()
    for r in rows:
        r["path"] = r.pop("text_path")
    assert _problems(write_folder(tmp_path / "bad", rows, texts)) == [
        "metadata.csv: missing column 'text_path'"
    ]


def test_missing_concept_column(good_folder: Path) -> None:
    problems = _problems(good_folder, concepts=["joy", "anger"])
    assert problems == ["metadata.csv: missing column 'anger'"]


def test_missing_metadata_and_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert _problems(tmp_path / "empty") == ["missing metadata.csv"]
    with pytest.raises(ValueError, match="neither a folder nor a shipped dataset"):
        load_dataset(tmp_path / "does-not-exist")


def test_unreadable_file_and_empty_text(tmp_path: Path) -> None:
    rows, texts = good_rows()
    texts["p/1.txt"] = b"\xff\xfe not utf-8 \xc3"
    texts["p/4.txt"] = "  <joy> </joy> \n"
    rows[4]["joy"] = 1
    problems = _problems(write_folder(tmp_path / "bad", rows, texts))
    assert any(p.startswith("metadata.csv row 2 (file p/1.txt): unreadable file") for p in problems)
    assert "metadata.csv row 5 (file p/4.txt): empty text" in problems


def test_unbalanced_closing_tag_and_bad_label(tmp_path: Path) -> None:
    rows, texts = good_rows()
    texts["p/1.txt"] = "Stray </sad> closing tag."
    rows[4]["joy"] = "maybe"
    problems = _problems(write_folder(tmp_path / "bad", rows, texts))
    assert (
        "metadata.csv row 2 (file p/1.txt): unbalanced tag: </sad> without a matching <sad>"
        in problems
    )
    assert (
        "metadata.csv row 5 (file p/4.txt): column 'joy': expected 0 or 1, got 'maybe'" in problems
    )


def test_concept_tag_on_negative_row(tmp_path: Path) -> None:
    rows, texts = good_rows()
    texts["p/1.txt"] = "A <sad>gloomy</sad> text."
    problems = _problems(write_folder(tmp_path / "bad", rows, texts))
    assert problems == [
        "metadata.csv row 2 (file p/1.txt): span tagged <sad> but column 'sad' is 0"
    ]


@pytest.mark.parametrize("split", ["train", "cal"])
def test_concept_without_positive_in_train_or_cal(tmp_path: Path, split: str) -> None:
    rows, texts = good_rows()
    for r, name in zip(rows, sorted(texts), strict=True):
        if r["split"] == split and r["sad"]:
            r["sad"] = 0
            texts[name] = texts[name].replace("<sad>", "").replace("</sad>", "")
            texts[name] = texts[name].replace("<Sad>", "").replace("</Sad>", "")
    assert _problems(write_folder(tmp_path / "bad", rows, texts)) == [
        f"concept 'sad': no positive sample in {split}"
    ]


def test_generic_tag_on_row_without_concept_is_a_warning(good_folder: Path) -> None:
    (good_folder / "p/1.txt").write_text("A <EMOTION>neutral</EMOTION> text.", encoding="utf-8")
    ds = load_dataset(good_folder)
    assert ds.spans[1] == []
    assert any("row 2" in w and "<EMOTION>" in w for w in ds.meta["warnings"])


# ---------------------------------------------------------------- splits


def test_missing_split_column_gives_deterministic_stratified_split(tmp_path: Path) -> None:
    ds = make_synthetic_dataset(n=60, seed=1)
    folder = write_dataset_folder(ds, tmp_path / "syn")
    lines = (folder / "metadata.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines]
    (folder / "metadata.csv").write_text(
        "\n".join(",".join(r[:1] + r[2:]) for r in rows) + "\n", encoding="utf-8"
    )
    a, b, c = (
        load_dataset(folder, seed=0),
        load_dataset(folder, seed=0),
        load_dataset(folder, seed=5),
    )
    np.testing.assert_array_equal(a.splits, b.splits)
    assert (a.splits != c.splits).any()
    for split in ("train", "cal", "test"):
        assert a.labels[a.splits == split].any(0).all()
    assert a.meta["split_source"] == "seed 0"


def test_stratified_split_fractions() -> None:
    labels = np.zeros((100, 2), dtype=bool)
    labels[:20, 0] = True
    labels[20:30, 1] = True
    splits = stratified_split(labels, seed=0)
    assert (splits == "train").sum() == 60
    assert [int((splits[:20] == s).sum()) for s in ("train", "cal", "test")] == [12, 4, 4]


def test_unknown_name_lists_shipped_datasets() -> None:
    with pytest.raises(ValueError, match="shipped: .*synthetic"):
        load_dataset("no-such-dataset")


def test_explicit_concepts_and_ignored_columns(good_folder: Path) -> None:
    meta = good_folder / "metadata.csv"
    lines = meta.read_text().splitlines()
    lines = [lines[0] + ",augmented,source"] + [f"{line},1,web" for line in lines[1:]]
    meta.write_text("\n".join(lines) + "\n")
    assert load_dataset(good_folder).concepts == ["joy", "sad", "augmented"]
    ds = load_dataset(good_folder, concepts=["joy", "sad"])
    assert ds.concepts == ["joy", "sad"] and ds.meta["ignored_columns"] == ["augmented", "source"]


def test_byte_order_mark_is_not_text(good_folder: Path) -> None:
    (good_folder / "p/1.txt").write_bytes("\ufeffPlain text.".encode())
    assert load_dataset(good_folder).texts[1] == "Plain text."


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab./\\", max_size=12))
def test_posix_key_equals_pure_posix_path(rel):
    """The duplicate-path key is ``str(PurePosixPath(...))``, built without pathlib
    (which interns every part of 10^5 file names for the life of the process)."""
    from pathlib import PurePosixPath

    from superact_lens.data.folder import posix_key

    assert posix_key(rel) == str(PurePosixPath(rel.replace("\\", "/")))


@settings(max_examples=200, deadline=None)
@given(
    rels=st.lists(
        st.sampled_from(["a.txt", "./a.txt", "b.txt", "x/b.txt", "x//b.txt", "c"]), max_size=12
    ),  # fmt: skip
    buckets=st.integers(1, 3),
    empty=st.sets(st.integers(0, 11)),
)
def test_repeated_rows_equal_a_dict_of_keys_whatever_the_hash_collisions(rels, buckets, empty):
    """``_repeated_rows`` compares keys only where hashes collide; with hashes squeezed
    into 1-3 buckets (most distinct keys collide) it still equals the first-row dict."""
    from array import array

    from superact_lens.data.folder import _repeated_rows, posix_key

    paths = ["" if i in empty else rel for i, rel in enumerate(rels)]
    hashes = array("q", [(hash(posix_key(p)) % buckets + 1) if p else 0 for p in paths])
    first: dict[str, int] = {}
    want = []
    for r, p in enumerate(paths):
        if p:
            key = posix_key(p)
            if key in first:
                want.append((r, first[key]))
            first.setdefault(key, r)
    assert _repeated_rows(paths, hashes) == want
