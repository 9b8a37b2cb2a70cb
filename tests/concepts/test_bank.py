"""ConceptBank persistence: ``save`` then ``load`` gives back the same bank, bias included."""

from __future__ import annotations

import tempfile
from dataclasses import fields

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.concepts import ConceptBank

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def banks(draw) -> ConceptBank:
    n_layers = draw(st.integers(1, 3))
    n_concepts = draw(st.integers(1, 4))
    d_model = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    vectors = torch.randn(n_layers, n_concepts, d_model, generator=g).to(dtype)
    bias = None
    if draw(st.booleans()):
        bias = (10 * torch.randn(n_layers, n_concepts, generator=g)).to(dtype)
    return ConceptBank(
        layers=draw(
            st.lists(st.integers(0, 64), min_size=n_layers, max_size=n_layers, unique=True)
        ),
        names=draw(
            st.lists(st.text(min_size=1, max_size=10), min_size=n_concepts, max_size=n_concepts)
        ),
        vectors=vectors,
        bias=bias,
        cosine=draw(st.booleans()),
        kind=draw(st.sampled_from(["custom", "mean", "linsep", "kmeans+linsep"])),
        level=draw(st.sampled_from(["token", "cls"])),
        metadata=draw(st.dictionaries(st.text(max_size=6), _JSON, max_size=3)),
    )


def assert_same_bank(a: ConceptBank, b: ConceptBank) -> None:
    """Every field equal; tensors bit for bit, in the same dtype."""
    for f in fields(ConceptBank):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype, f.name
            assert torch.equal(x, y), f.name
        else:
            assert x == y, f.name


@settings(max_examples=25, deadline=None)
@given(bank=banks())
def test_save_load_round_trip(bank):
    with tempfile.TemporaryDirectory() as folder:
        bank.save(folder)
        loaded = ConceptBank.load(folder)
    assert_same_bank(loaded, bank)
    resid = torch.randn(5, bank.d_model).to(bank.vectors.dtype)
    for layer in bank.layers:
        torch.testing.assert_close(loaded.score(resid, layer), bank.score(resid, layer))


def test_bias_round_trip_changes_scores(tmp_path):
    """SAE banks carry the encoder bias (concepts/sae.py): a nonzero bias must come back."""
    bank = ConceptBank(
        layers=[2],
        names=["a", "b"],
        vectors=torch.eye(2)[None],
        bias=torch.tensor([[1.5, -0.25]]),
    )
    bank.save(tmp_path)
    loaded = ConceptBank.load(tmp_path)
    assert torch.equal(loaded.bias, torch.tensor([[1.5, -0.25]]))
    assert torch.equal(loaded.score(torch.zeros(1, 2), 2), torch.tensor([[1.5, -0.25]]))
