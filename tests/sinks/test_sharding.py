"""Sinks over shards (random split points, shard order and batch sizes) merge into
the one-pass result. A fake stream feeds them residuals that depend only on
(sample, position, layer), as a model's would."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.lens import TokenBatch
from superact_lens.run_masks import PackedMasks, SomeRows
from superact_lens.sinks import NormStatsSink, TokenCollector
from superact_lens.stats import load_state, save_state
from tests.stats.shards import batches, merge_all, shard_plans

N, LAYERS, D, C = 24, [0, 2], 3, 3


def _data(seed: int):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 7, (N,), generator=g)
    resid = torch.randn(N, 8, len(LAYERS), D, generator=g) * 3 + 1
    labels = torch.rand(N, C, generator=g) < 0.4
    masks = [(torch.rand(int(n), C, generator=g) < 0.5) & labels[i] for i, n in enumerate(lengths)]
    return lengths, resid, labels, masks


def _stream(sinks, texts, lengths, resid, batch_size):
    """Stream global samples ``texts`` (the i-th streamed text is ``texts[i]``)."""
    for sink in sinks:
        sink.begin(len(texts), LAYERS, D)
    for local in batches(list(range(len(texts))), batch_size):
        g = [texts[i] for i in local]
        n = lengths[g]
        pos = int(n.max()) + 1 if len(g) else 1
        content = torch.arange(pos)[None] - 1 < n[:, None]
        content[:, 0] = False  # position 0 plays [CLS]
        batch = TokenBatch(
            input_ids=torch.zeros(len(g), pos, dtype=torch.long),
            attention_mask=torch.ones(len(g), pos, dtype=torch.long),
            content_mask=content,
            offsets=torch.zeros(len(g), pos, 2, dtype=torch.long),
            cls_index=torch.zeros(len(g), dtype=torch.long),
            sample_ids=torch.tensor(local),
            truncated=torch.zeros(len(g), dtype=torch.bool),
        )
        for sink in sinks:
            sink.begin_batch(batch)
        for r, layer in enumerate(LAYERS):
            x = torch.full((len(g), pos, D), 99.0)  # specials and pads: never content
            for i, s in enumerate(g):
                x[i, 1 : 1 + int(n[i])] = resid[s, : int(n[i]), r]
            for sink in sinks:
                sink.on_layer(layer, x, batch)
        for sink in sinks:
            sink.end_batch(batch)
    return sinks


def _collector(labels, masks, index=None):
    return TokenCollector(masks, labels, cap_in=4, cap_neg=7, seed=5, sample_index=index)


def _own_masks(masks, ids):
    """Only the masks of samples ``ids`` (any other raises), as a run's chunk holds them."""
    return SomeRows(PackedMasks.from_list([masks[i] for i in ids], C), ids, len(masks))


@settings(max_examples=20, deadline=None)
@given(shard_plans(N), st.integers(0, 3), st.integers(1, 8), st.booleans())
def test_token_collector_shards_merge_to_the_one_pass_sample(plan, seed, one_pass_batch, own):
    """``own``: each shard's collector holds only its samples' masks (SomeRows)."""
    lengths, resid, labels, masks = _data(seed)
    (whole,) = _stream([_collector(labels, masks)], list(range(N)), lengths, resid, one_pass_batch)
    parts = []
    for ids, size in zip(*plan, strict=True):
        shard_masks = _own_masks(masks, ids) if own else masks
        parts.append(_stream([_collector(labels, shard_masks, ids)], ids, lengths, resid, size)[0])
    merged = merge_all(parts)
    a, b = whole.result(), merged.result()
    assert torch.equal(a.sample_ids, b.sample_ids)
    assert torch.equal(a.embeddings, b.embeddings)
    assert torch.equal(a.token_concepts, b.token_concepts)
    assert torch.equal(a.sample_labels, b.sample_labels)
    sa, sb = whole.state_dict(), merged.state_dict()
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        assert torch.equal(v, sb[k]) if isinstance(v, torch.Tensor) else v == sb[k], k


def test_token_collector_state_round_trip_and_overlap(tmp_path):
    lengths, resid, labels, masks = _data(1)
    first, second = list(range(0, 10)), list(range(10, N))
    (a,) = _stream([_collector(labels, masks, first)], first, lengths, resid, 3)
    (b,) = _stream([_collector(labels, masks, second)], second, lengths, resid, 4)
    save_state(tmp_path / "shard", {"collector": a.state_dict()})
    back = _collector(labels, masks).load_state_dict(load_state(tmp_path / "shard")["collector"])
    for k, v in a.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]) if isinstance(v, torch.Tensor) else True
    assert torch.equal(back.merge(b).result().embeddings, a.merge(b).result().embeddings)
    stale = dict(a.state_dict())
    del stale["concepts"]  # as an earlier version wrote it
    with pytest.raises(ValueError, match="no 'concepts'.*--overwrite"):
        _collector(labels, masks).load_state_dict(stale)
    (again,) = _stream([_collector(labels, masks, [3])], [3], lengths, resid, 1)
    with pytest.raises(ValueError, match="sample 3 was streamed by both"):
        back.merge(again)
    with pytest.raises(ValueError, match="sample_index: a sample appears twice"):
        _collector(labels, masks, [1, 1])
    with pytest.raises(ValueError, match="sample_index: 2 entries but 3 texts"):
        _stream([_collector(labels, masks, [0, 1])], [0, 1, 2], lengths, resid, 2)


@settings(max_examples=20, deadline=None)
@given(shard_plans(N), st.integers(0, 3))
def test_norm_stats_shards_merge_to_the_one_pass_moments(plan, seed):
    """Count exact; mean and M2 equal up to float64 rounding; the float32
    Normalizer within one ulp."""
    lengths, resid, _, _ = _data(seed)
    (whole,) = _stream([NormStatsSink()], list(range(N)), lengths, resid, 5)
    parts = [
        _stream([NormStatsSink()], ids, lengths, resid, size)[0]
        for ids, size in zip(*plan, strict=True)
    ]
    merged = merge_all(parts)
    assert merged.acc_.count == whole.acc_.count == int(lengths.sum())
    torch.testing.assert_close(merged.acc_.mean, whole.acc_.mean, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(merged.acc_.m2, whole.acc_.m2, rtol=1e-13, atol=1e-12)
    a, b = merged.result(), whole.result()
    torch.testing.assert_close(a.mean, b.mean, rtol=1.2e-7, atol=1e-12)
    torch.testing.assert_close(a.scale, b.scale, rtol=1.2e-7, atol=1e-12)


def test_norm_stats_state_round_trip(tmp_path):
    lengths, resid, _, _ = _data(0)
    (sink,) = _stream([NormStatsSink(min_scale=0.01)], list(range(N)), lengths, resid, 4)
    save_state(tmp_path / "n", {"norm": sink.state_dict()})
    back = NormStatsSink.from_state(load_state(tmp_path / "n")["norm"])
    assert back.acc_.count == sink.acc_.count
    assert torch.equal(back.acc_.mean, sink.acc_.mean) and torch.equal(back.acc_.m2, sink.acc_.m2)
    assert torch.equal(back.result().scale, sink.result().scale)
    assert back.min_scale == 0.01 and back.result().layers == LAYERS
