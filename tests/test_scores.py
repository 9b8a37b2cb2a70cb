"""TokenScores: the container of streamed scores."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from superact_lens.scores import TokenScores, segment_positions


def _scores(lengths=(3, 0, 2, 4), n_layers=2, n_concepts=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths), 0)
    n_tok = int(offsets[-1])
    return TokenScores(
        layers=list(range(n_layers)),
        concepts=[f"c{i}" for i in range(n_concepts)],
        tokens=torch.randn(n_layers, n_tok, n_concepts, generator=g),
        offsets=offsets,
        cls=torch.randn(n_layers, len(lengths), n_concepts, generator=g),
    )


@pytest.mark.parametrize("index", [[2, 0], [1], [3, 1, 0, 2], []])
def test_select_samples_matches_per_sample_slices(index):
    s = _scores()
    sub = s.select_samples(torch.tensor(index, dtype=torch.long))
    assert sub.n_samples == len(index)
    for new, old in enumerate(index):
        assert torch.equal(sub.sample(new), s.sample(old))
        assert torch.equal(sub.cls[:, new], s.cls[:, old])


def test_select_samples_by_mask_and_concepts():
    s = _scores()
    mask = torch.tensor([True, False, False, True])
    sub = s.select_samples(mask).select_concepts([2, 0])
    assert sub.concepts == ["c2", "c0"]
    assert torch.equal(sub.sample(1), s.sample(3)[:, :, [2, 0]])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("layers", [0], "layers"),
        ("concepts", ["a"], "concept columns"),
        ("offsets", torch.tensor([0, 3]), "offsets"),
        ("cls", torch.zeros(2, 1, 3), "cls"),
    ],
)
def test_inconsistent_shapes_are_rejected(field, value, message):
    s = _scores()
    kwargs = dict(
        layers=s.layers, concepts=s.concepts, tokens=s.tokens, offsets=s.offsets, cls=s.cls
    )
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        TokenScores(**kwargs)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 6)), max_size=8))
def test_segment_positions_equals_a_plain_loop(segments):
    starts = torch.tensor([a for a, _ in segments], dtype=torch.long)
    lengths = torch.tensor([n for _, n in segments], dtype=torch.long)
    expected = [a + j for a, n in segments for j in range(n)]
    assert segment_positions(starts, lengths).tolist() == expected
