"""ProjectionSink without a model: sample scores for models without [CLS], sample order."""

from __future__ import annotations

import pytest
import torch

from superact_lens.lens import TokenBatch
from superact_lens.normalization import Normalizer
from superact_lens.sinks import ProjectionSink
from tests.test_lens import unit_bank


def fake_batch(content, cls_index, sample_ids):
    b, p = content.shape
    return TokenBatch(
        input_ids=torch.zeros(b, p, dtype=torch.long),
        attention_mask=torch.ones(b, p, dtype=torch.long),
        content_mask=content,
        offsets=torch.zeros(b, p, 2, dtype=torch.long),
        cls_index=torch.tensor(cls_index),
        sample_ids=torch.tensor(sample_ids),
        truncated=torch.zeros(b, dtype=torch.bool),
    )


@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize("has_cls", [False, True])
@pytest.mark.parametrize("separate_cls_bank", [False, True])
def test_sample_scores(cosine, has_cls, separate_cls_bank):
    g = torch.Generator().manual_seed(0)
    d, layers = 6, [1, 2]
    bank = unit_bank(n_concepts=3, layers=layers, d_model=d, cosine=cosine)
    cls_bank = (
        unit_bank(n_concepts=3, layers=layers, d_model=d, seed=5) if separate_cls_bank else None
    )
    norm = Normalizer(
        layers=layers, mean=torch.randn(2, d, generator=g), scale=torch.rand(2, d) + 0.5
    )
    content = torch.tensor([[False, True, True, False], [False, True, True, True]])
    cls_index = [0, 0] if has_cls else [-1, -1]
    batches = [  # two batches, delivered out of sample order
        (fake_batch(content, cls_index, [2, 0]), torch.randn(2, 4, d, generator=g)),
        (fake_batch(content[:1], cls_index[:1], [1]), torch.randn(1, 4, d, generator=g)),
    ]
    sink = ProjectionSink(bank, normalizer=norm, cls_bank=cls_bank)
    sink.begin(3, layers, d)
    for batch, resid in batches:
        sink.begin_batch(batch)
        for layer in layers:
            sink.on_layer(layer, resid * layer, batch)
        sink.end_batch(batch)
    scores = sink.result()
    assert scores.lengths.tolist() == [3, 2, 2]
    by_id = {int(i): (b, r, k) for b, r in batches for k, i in enumerate(b.sample_ids)}
    for sample in range(3):
        batch, resid, k = by_id[sample]
        for row, layer in enumerate(layers):
            z = resid[k] * layer
            tokens = bank.score(z[batch.content_mask[k]], layer, norm)
            torch.testing.assert_close(scores.sample(sample)[row], tokens, atol=1e-5, rtol=0)
            emb = z[0] if has_cls else z[batch.content_mask[k]].mean(0)
            ref = (cls_bank or bank).score(emb, layer, norm)
            torch.testing.assert_close(scores.cls[row, sample], ref, atol=1e-5, rtol=0)
