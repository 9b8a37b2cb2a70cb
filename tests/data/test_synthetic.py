"""The planted synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest

from superact_lens.data import make_synthetic_dataset
from superact_lens.data.synthetic import DEFAULT_TRIGGERS, FILLER_WORDS


def test_deterministic_and_seed_dependent() -> None:
    a, b, c = (
        make_synthetic_dataset(seed=0),
        make_synthetic_dataset(seed=0),
        make_synthetic_dataset(seed=1),
    )
    assert a.texts == b.texts and a.spans == b.spans
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.texts != c.texts


def test_spans_are_exactly_the_trigger_words() -> None:
    ds = make_synthetic_dataset(n=40, seed=4)
    triggers = {w for ws in DEFAULT_TRIGGERS.values() for w in ws}
    for i, text in enumerate(ds.texts):
        words = [w.strip(".").lower() for w in text.split()]
        tagged = [text[s:e] for s, e, _ in ds.spans[i]]
        assert sorted(tagged) == sorted(w for w in words if w in triggers)
        for s, e, c in ds.spans[i]:
            assert text[s:e] in DEFAULT_TRIGGERS[ds.concepts[c]]
        labelled = set(np.flatnonzero(ds.labels[i]))
        assert {c for _, _, c in ds.spans[i]} == labelled


def test_every_split_has_positives_and_negatives() -> None:
    ds = make_synthetic_dataset(n=24, seed=0)
    for split in ("train", "cal", "test"):
        sub = ds.subset(split)
        assert (sub.labels.sum(0) >= 2).all() and (~sub.labels).any(0).all()


def test_custom_triggers_and_validation() -> None:
    ds = make_synthetic_dataset(n=12, triggers={"x": ["zebra"]}, seed=0)
    assert ds.concepts == ["x"] and all(
        ds.texts[i][s:e] == "zebra" for i, sp in enumerate(ds.spans) for s, e, _ in sp
    )
    with pytest.raises(ValueError, match="also filler"):
        make_synthetic_dataset(triggers={"x": [FILLER_WORDS[0]]})
    with pytest.raises(ValueError, match="at least 6"):
        make_synthetic_dataset(n=3)
