"""The dataset fingerprint a resumable run checks its --out against."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.runstate import dataset_fingerprint


def _whole_documents(ds) -> str:
    """The fingerprint as first defined: whole JSON documents hashed at once."""
    h = hashlib.sha256()
    h.update(json.dumps([list(ds.concepts), list(ds.texts)]).encode())
    h.update(np.ascontiguousarray(np.asarray(ds.labels, dtype=bool)).tobytes())
    h.update(json.dumps([[list(s) for s in spans] for spans in ds.spans]).encode())
    h.update(json.dumps([str(s) for s in ds.splits]).encode())
    return h.hexdigest()


@st.composite
def datasets(draw):
    n = draw(st.integers(0, 6))
    concepts = draw(st.lists(st.text(max_size=4), min_size=1, max_size=3))
    span = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, len(concepts) - 1))
    return SimpleNamespace(
        concepts=concepts,
        texts=draw(st.lists(st.text(max_size=12), min_size=n, max_size=n)),
        labels=np.array(
            draw(
                st.lists(
                    st.lists(st.booleans(), min_size=len(concepts), max_size=len(concepts)),
                    min_size=n,
                    max_size=n,
                )
            ),  # fmt: skip
            dtype=bool,
        ).reshape(n, len(concepts)),
        spans=draw(st.lists(st.lists(span, max_size=3), min_size=n, max_size=n)),
        splits=np.array(
            draw(st.lists(st.sampled_from(["train", "cal", "test"]), min_size=n, max_size=n)),
            dtype=str,
        ),  # fmt: skip
    )


@settings(max_examples=200, deadline=None)
@given(datasets())
def test_streamed_fingerprint_equals_the_whole_document_digest(ds):
    """Streaming sample by sample keeps the digest (run folders made before resume)."""
    assert dataset_fingerprint(ds) == _whole_documents(ds)


def test_fingerprint_sees_a_changed_span():
    ds = SimpleNamespace(concepts=["a"], texts=["xy"], labels=np.ones((1, 1), bool),
                         spans=[[(0, 1, 0)]], splits=np.array(["train"]))  # fmt: skip
    before = dataset_fingerprint(ds)
    ds.spans = [[(0, 2, 0)]]
    assert dataset_fingerprint(ds) != before


@settings(max_examples=30, deadline=None)
@given(datasets())
def test_fingerprint_with_the_spans_spooled_to_disk(ds):
    """Spans beyond the spool's size go to a temporary file: same digest."""
    from superact_lens import runstate

    old = runstate._SPOOL_BYTES
    runstate._SPOOL_BYTES = 1  # rolls over to disk at the first span
    try:
        assert dataset_fingerprint(ds) == _whole_documents(ds)
    finally:
        runstate._SPOOL_BYTES = old
