"""Small synthetic TokenScores with labels and token masks for detection tests."""

from __future__ import annotations

import torch

from superact_lens.scores import TokenScores


def make_data(
    n: int = 30,
    n_layers: int = 3,
    n_concepts: int = 3,
    n_cols: int | None = None,
    max_len: int = 8,
    seed: int = 0,
    round_to: float | None = 0.5,
    with_cls: bool = True,
) -> tuple[TokenScores, torch.Tensor, torch.Tensor]:
    """Random scores (rounded so that ties occur), some empty samples, some
    positive samples without a span. Returns ``(scores, labels, token_masks)``."""
    g = torch.Generator().manual_seed(seed)
    n_cols = n_concepts if n_cols is None else n_cols
    lengths = torch.randint(0, max_len + 1, (n,), generator=g)
    lengths[0] = 0  # at least one empty sample
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = lengths.cumsum(0)
    t = int(offsets[-1])
    labels = torch.rand(n, n_concepts, generator=g) < 0.4
    labels[1] = True  # a positive sample ...
    tokens = torch.randn(n_layers, t, n_cols, generator=g)
    seg = torch.repeat_interleave(torch.arange(n), lengths)
    masks = (torch.rand(t, n_concepts, generator=g) < 0.5) & labels[seg]
    has_span = torch.rand(n, n_concepts, generator=g) < 0.8
    masks &= has_span[seg]  # ... some positives have no span ("location unknown")
    m = min(n_cols, n_concepts)
    tokens[:, :, :m] += 1.5 * masks[:, :m].float()  # signal in the matching columns
    if round_to:
        tokens = torch.round(tokens / round_to) * round_to
    cls = torch.randn(n_layers, n, n_cols, generator=g) if with_cls else None
    scores = TokenScores(
        layers=list(range(n_layers)),
        concepts=[f"col{k}" for k in range(n_cols)],
        tokens=tokens,
        offsets=offsets,
        cls=cls,
    )
    return scores, labels, masks
