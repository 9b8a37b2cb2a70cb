"""Sinks on MiniLM: normalisation statistics, token collector, sample embeddings."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.lens import TokenBatch
from superact_lens.sinks import (
    MomentAccumulator,
    NormStatsSink,
    ProjectionSink,
    SampleEmbeddingSink,
    TokenCollector,
)
from tests.test_lens import TEXTS, reference_hidden, unit_bank

MORE = TEXTS + [
    "Stocks fell sharply on Monday as investors worried about inflation.",
    "The orchestra played Beethoven's ninth symphony.",
    "Rain is expected tomorrow in the north.",
    "She scored twice in the second half.",
]


@pytest.fixture(scope="module")
def hidden(minilm_lens, minilm_hf):
    batch = minilm_lens.tokenize(MORE)
    return batch, reference_hidden(minilm_hf, batch)


def test_norm_stats_match_full_pass(minilm_lens, hidden):
    batch, hs = hidden
    (sink,) = minilm_lens.stream(MORE, [NormStatsSink(min_scale=0.0)], batch_size=3, progress=False)
    norm = sink.result()
    for layer in range(7):
        x = hs[layer][batch.content_mask].double()
        torch.testing.assert_close(norm.mean[layer].double(), x.mean(0), atol=1e-5, rtol=0)
        std = x.std(0, unbiased=False).clamp_min(1e-12)
        torch.testing.assert_close(norm.scale[layer].double(), std, atol=1e-5, rtol=1e-4)


def test_norm_stats_two_halves_merge_exactly(minilm_lens):
    (whole,) = minilm_lens.stream(
        MORE, [NormStatsSink(layers=[0, 3])], batch_size=8, progress=False
    )
    (a,) = minilm_lens.stream(
        MORE[:5], [NormStatsSink(layers=[0, 3])], batch_size=8, progress=False
    )
    (b,) = minilm_lens.stream(
        MORE[5:], [NormStatsSink(layers=[0, 3])], batch_size=8, progress=False
    )
    merged = a.merge(b)
    assert merged.acc_.count == whole.acc_.count
    torch.testing.assert_close(merged.acc_.mean, whole.acc_.mean, atol=1e-6, rtol=0)
    torch.testing.assert_close(merged.acc_.m2, whole.acc_.m2, atol=1e-5, rtol=1e-6)
    assert merged.result().layers == [0, 3]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 1000))
def test_moment_merge_is_exact(n_a, n_b, seed):
    """Chan merge of two halves == one pass over the concatenation (float64)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_a + n_b, 3, generator=g, dtype=torch.float64) * 5 + 2

    def acc(rows):
        mean = rows.mean(0)
        return MomentAccumulator(len(rows), mean[None], ((rows - mean) ** 2).sum(0)[None])

    merged = acc(x[:n_a]).merge(acc(x[n_a:]))
    full = acc(x)
    torch.testing.assert_close(merged.mean, full.mean, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(merged.m2, full.m2, atol=1e-9, rtol=1e-12)


def _labels(minilm_lens, texts, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = [torch.rand(len(o), 3, generator=g) > 0.6 for o in minilm_lens.content_offsets(texts)]
    labels = torch.stack([m.any(0) for m in masks])
    labels[:, 2] = False  # concept 2: no sample positive
    masks = [m & labels[i] for i, m in enumerate(masks)]
    return masks, labels


def test_token_collector(minilm_lens, hidden):
    batch, hs = hidden
    masks, labels = _labels(minilm_lens, MORE)
    collector = TokenCollector(masks, labels, cap_in=4, cap_neg=6, seed=1)
    minilm_lens.stream(MORE, [collector], layers=[0, 5], batch_size=3, progress=False)
    sample = collector.result()
    n_concepts = 3
    uids = list(zip(sample.sample_ids.tolist(), range(len(sample.sample_ids)), strict=True))
    assert len(uids) <= n_concepts * (4 + 6)
    # every stored embedding is the residual of the token it claims to be
    positions = _content_positions(collector)
    for row, (s, p) in enumerate(positions):
        flat = int(batch.n_content[:s].sum()) + p
        for i, layer in enumerate([0, 5]):
            ref = hs[layer][batch.content_mask][flat]
            torch.testing.assert_close(sample.embeddings[i, row], ref, atol=1e-5, rtol=0)
        assert sample.token_concepts[row].tolist() == masks[s][p].tolist()
        assert sample.sample_labels[row].tolist() == labels[s].tolist()
    assert len(set(positions)) == len(positions)  # each token stored once
    # reservoirs are full where enough tokens exist
    n_in = torch.cat(masks).sum(0)
    for c in range(n_concepts):
        assert len(collector._in[c].uids) == min(4, int(n_in[c]))
    negatives = sum(int(n) for i, n in enumerate(batch.n_content) if not labels[i, 2])
    assert len(collector._neg[2].uids) == min(6, negatives)


def _content_positions(collector):
    uids = collector._store_uid[collector._store_uid >= 0].sort().values
    return [(u >> 20, u & ((1 << 20) - 1)) for u in uids.tolist()]


def test_token_collector_deterministic_and_order_free(minilm_lens):
    masks, labels = _labels(minilm_lens, MORE, seed=2)

    def run(batch_size, seed):
        collector = TokenCollector(masks, labels, cap_in=3, cap_neg=5, seed=seed)
        minilm_lens.stream(MORE, [collector], layers=[1], batch_size=batch_size, progress=False)
        return collector.result()

    a, b, c = run(8, 0), run(2, 0), run(8, 1)
    assert a.sample_ids.tolist() == b.sample_ids.tolist()
    torch.testing.assert_close(a.embeddings, b.embeddings, atol=1e-4, rtol=0)
    assert _pairs(a) != _pairs(c)


def _pairs(sample):
    return sorted(zip(sample.sample_ids.tolist(), sample.embeddings[0, :, 0].tolist(), strict=True))


def test_token_collector_errors(minilm_lens):
    masks, labels = _labels(minilm_lens, MORE)
    with pytest.raises(ValueError, match="token_masks: 7 masks for 8 rows"):
        TokenCollector(masks[:-1], labels)
    with pytest.raises(ValueError, match="cap_in"):
        TokenCollector(masks, labels, cap_in=0)
    bad = list(masks)
    bad[1] = torch.zeros(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"token_masks\[1\]: has 1 rows"):
        minilm_lens.stream(MORE, [TokenCollector(bad, labels)], progress=False)
    with pytest.raises(ValueError, match="token_masks: 8 masks but 2 texts"):
        minilm_lens.stream(MORE[:2], [TokenCollector(masks, labels)], progress=False)


def test_sample_embedding_sink(minilm_lens, hidden):
    batch, hs = hidden
    (sink,) = minilm_lens.stream(MORE, [SampleEmbeddingSink()], batch_size=3, progress=False)
    emb = sink.result()
    assert emb.shape == (7, len(MORE), 384)
    for layer in range(7):
        torch.testing.assert_close(emb[layer], hs[layer][:, 0], atol=1e-5, rtol=0)


def test_mean_pooled_sample_embedding():
    """Without [CLS], the sample embedding is the mean of content tokens (pads excluded)."""
    resid = torch.arange(2 * 4 * 2, dtype=torch.float32).view(2, 4, 2)
    content = torch.tensor([[False, True, True, False], [False, True, False, False]])
    batch = TokenBatch(
        input_ids=torch.zeros(2, 4, dtype=torch.long),
        attention_mask=torch.ones(2, 4, dtype=torch.long),
        content_mask=content,
        offsets=torch.zeros(2, 4, 2, dtype=torch.long),
        cls_index=torch.tensor([-1, -1]),
        sample_ids=torch.tensor([0, 1]),
        truncated=torch.zeros(2, dtype=torch.bool),
    )
    expected = torch.stack([resid[0, 1:3].mean(0), resid[1, 1]])
    torch.testing.assert_close(batch.sample_embedding(resid), expected)


def test_one_stream_many_sinks(minilm_lens):
    """The pipeline's pass 1: norm stats + collector + sample embeddings in ONE stream."""
    masks, labels = _labels(minilm_lens, MORE)
    sinks = [
        NormStatsSink(),
        TokenCollector(masks, labels, cap_in=2, cap_neg=3),
        SampleEmbeddingSink(),
    ]
    minilm_lens.stream(MORE, sinks, layers=["0%", "50%", "100%"], progress=False)
    norm, sample, emb = (s.result() for s in sinks)
    assert norm.layers == sample.layers == [0, 3, 6]
    assert emb.shape == (3, len(MORE), 384)
    scores = minilm_lens.scores(MORE, unit_bank(layers=[0, 3, 6]), normalizer=norm, progress=False)
    assert scores.tokens.shape[:2] == (3, int(sum(len(m) for m in masks)))
    with pytest.raises(ValueError, match="normalizer: has no statistics for layers \\[1\\]"):
        ProjectionSink(unit_bank(layers=[1]), normalizer=norm)
