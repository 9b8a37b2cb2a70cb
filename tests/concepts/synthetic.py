"""Synthetic token samples with planted concept directions (shared by the concept tests)."""

from __future__ import annotations

import torch

from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample


def planted_sample(
    n_samples: int = 120,
    tokens_per_sample: int = 10,
    n_concepts: int = 3,
    d: int = 32,
    layers: tuple[int, ...] = (0, 2),
    strength: float = 3.0,
    noise: float = 1.0,
    span: int = 3,
    seed: int = 0,
) -> tuple[TokenSample, torch.Tensor, Normalizer]:
    """Tokens ~ N(offset, noise^2 I); in-concept tokens get ``+strength * u_c``.

    Each sample is positive for each concept with probability 1/3; a positive
    sample carries the concept on ``span`` consecutive tokens. Layer ``l`` adds a
    layer-specific offset and scale, so a Normalizer is meaningful.
    Returns the sample, the planted unit directions ``[concepts, d]`` and a Normalizer
    fitted on the sample itself.
    """
    g = torch.Generator().manual_seed(seed)
    dirs = torch.linalg.qr(torch.randn(d, n_concepts, generator=g))[0].T.contiguous()
    labels = torch.rand(n_samples, n_concepts, generator=g) < 1 / 3
    n = n_samples * tokens_per_sample
    sample_ids = torch.arange(n_samples).repeat_interleave(tokens_per_sample)
    token_concepts = torch.zeros(n, n_concepts, dtype=torch.bool)
    for s in range(n_samples):
        for c in torch.nonzero(labels[s]).flatten().tolist():
            start = int(torch.randint(0, tokens_per_sample - span + 1, (1,), generator=g))
            token_concepts[
                s * tokens_per_sample + start : s * tokens_per_sample + start + span, c
            ] = True
    base = noise * torch.randn(n, d, generator=g)
    signal = token_concepts.float() @ (strength * dirs)
    embs = []
    for i, _ in enumerate(layers):
        offset = 5.0 * torch.randn(d, generator=g)
        scale = 1.0 + i
        embs.append((base + signal) * scale + offset)
    embeddings = torch.stack(embs)
    sample = TokenSample(
        layers=list(layers),
        embeddings=embeddings,
        token_concepts=token_concepts,
        sample_labels=labels[sample_ids],
        sample_ids=sample_ids,
    )
    normalizer = Normalizer(
        layers=list(layers), mean=embeddings.mean(1), scale=embeddings.std(1).clamp_min(1e-6)
    )
    return sample, dirs, normalizer


def split_samples(sample: TokenSample, frac: float = 0.5) -> tuple[TokenSample, TokenSample]:
    """Split a TokenSample by sample id: the first ``frac`` of samples, then the rest."""
    cut = int(frac * (int(sample.sample_ids.max()) + 1))
    parts = []
    for keep in (sample.sample_ids < cut, sample.sample_ids >= cut):
        parts.append(
            TokenSample(
                layers=list(sample.layers),
                embeddings=sample.embeddings[:, keep],
                token_concepts=sample.token_concepts[keep],
                sample_labels=sample.sample_labels[keep],
                sample_ids=sample.sample_ids[keep],
            )
        )
    return parts[0], parts[1]


def token_auc_f1(sample: TokenSample, bank, normalizer) -> tuple[float, float]:
    """Mean over concepts and layers of held-out AUC and best-threshold-free F1 (threshold 0).

    Evaluated on positives (in-concept tokens) vs negatives (tokens of negative samples).
    """
    from sklearn.metrics import f1_score, roc_auc_score

    aucs, f1s = [], []
    for i, layer in enumerate(sample.layers):
        s = bank.score(sample.embeddings[i], layer, normalizer)
        for c in range(sample.n_concepts):
            pos = sample.token_concepts[:, c]
            neg = ~sample.sample_labels[:, c]
            keep = pos | neg
            y = pos[keep].numpy()
            sc = s[keep, c].numpy()
            aucs.append(roc_auc_score(y, sc))
            f1s.append(f1_score(y, sc > 0))
    return sum(aucs) / len(aucs), sum(f1s) / len(f1s)
