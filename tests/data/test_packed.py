"""Packed texts and spans read exactly like the lists they replace."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.data import PackedSpans, PackedStrings, read_dataset_folder
from superact_lens.data.folder import write_dataset_folder
from superact_lens.data.synthetic import make_synthetic_dataset
from superact_lens.errors import InputTypeError

spans_st = st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 50)))


def _check_like(packed, items: list) -> None:
    assert len(packed) == len(items)
    assert list(packed) == items
    assert packed == items and items == packed
    assert packed[:] == items and packed[1:-1:2] == items[1:-1:2]
    for i in range(-len(items), len(items)):
        assert packed[i] == items[i]
    for bad in (len(items), -len(items) - 1):
        with pytest.raises(IndexError):
            packed[bad]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text()), st.data())
def test_packed_strings_read_like_the_list(texts, data):
    packed = PackedStrings(texts)
    _check_like(packed, texts)
    rows = data.draw(st.lists(st.integers(0, max(len(texts) - 1, 0)))) if texts else []
    assert packed.take(rows) == [texts[i] for i in rows]
    packed.append("tail é")
    assert packed[-1] == "tail é" and len(packed) == len(texts) + 1
    assert packed != [*texts, "other"]


@settings(max_examples=80, deadline=None)
@given(st.lists(spans_st), st.data())
def test_packed_spans_read_like_the_list(spans, data):
    packed = PackedSpans(spans)
    _check_like(packed, spans)
    rows = data.draw(st.lists(st.integers(0, max(len(spans) - 1, 0)))) if spans else []
    assert packed.take(rows) == [spans[i] for i in rows]


def test_bad_items_are_refused_and_leave_no_partial_sample():
    texts = PackedStrings(["a"])
    with pytest.raises(InputTypeError, match="expected str"):
        texts.append(3)  # type: ignore[arg-type]
    spans = PackedSpans([[(0, 1, 0)]])
    with pytest.raises(InputTypeError, match="start, end, concept"):
        spans.append([(0, 1, 0), (2, 3)])  # type: ignore[list-item]
    assert spans == [[(0, 1, 0)]] and texts == ["a"]


def test_a_folder_reads_into_packed_sequences_that_subset_keeps(tmp_path):
    ds = make_synthetic_dataset(n=40, seed=3)
    back = read_dataset_folder(write_dataset_folder(ds, tmp_path / "d"))
    assert isinstance(back.texts, PackedStrings) and isinstance(back.spans, PackedSpans)
    assert back.texts == ds.texts and back.spans == ds.spans
    test = back.subset("test")
    assert isinstance(test.texts, PackedStrings)
    rows = back.split_indices("test")
    assert test.texts == [ds.texts[i] for i in rows] and test.spans == [ds.spans[i] for i in rows]
