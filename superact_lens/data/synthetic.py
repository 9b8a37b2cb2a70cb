"""A tiny deterministic dataset with planted concepts, for tests.

Every concept has a few *trigger words* that occur only inside that concept's
spans; filler sentences are built from a neutral vocabulary that shares no
word with any trigger list. All words are single WordPiece tokens of the BERT
uncased vocabulary, so a test can plant a direction on the trigger tokens'
embeddings and assert exactly which tokens score highest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from superact_lens.data.dataset import SPLITS, TextDataset
from superact_lens.errors import InputError

__all__ = ["DEFAULT_TRIGGERS", "FILLER_WORDS", "make_synthetic_dataset"]

DEFAULT_TRIGGERS: dict[str, tuple[str, ...]] = {
    "fruit": ("apple", "banana", "cherry"),
    "metal": ("iron", "copper", "silver"),
    "weather": ("rain", "snow", "wind"),
}
FILLER_WORDS: tuple[str, ...] = (
    "the", "a", "man", "woman", "house", "road", "table", "door", "city", "book",
    "walked", "opened", "saw", "found", "near", "over", "under", "with", "quiet", "old",
    "new", "small", "large", "morning", "evening", "friend", "letter", "window", "garden",
    "river",
)  # fmt: skip


def _sentence(rng: np.random.Generator, n_words: int) -> str:
    words = rng.choice(FILLER_WORDS, size=n_words).tolist()
    return " ".join(words)


def make_synthetic_dataset(
    n: int = 48,
    triggers: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    p_positive: float = 0.3,
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
    sentences: tuple[int, int] = (2, 4),
) -> TextDataset:
    """Build ``n`` short paragraphs; concept ``c`` is planted as one tagged trigger word.

    Args:
        n: number of samples (at least 2 per split per concept are guaranteed
            positive, so ``n >= 6 * C`` keeps the rates close to ``p_positive``).
        triggers: concept name -> trigger words (default :data:`DEFAULT_TRIGGERS`).
        seed: everything (labels, splits, words, positions) follows from it.
        p_positive: probability that a sample carries a given concept.
        fractions: train/cal/test fractions (splits are contiguous blocks).
        sentences: min and max number of filler sentences per paragraph.

    Returns:
        A :class:`TextDataset` whose ``meta["triggers"]`` lists the trigger
        words; every span is exactly one trigger word, and trigger words occur
        nowhere else.
    """
    triggers = {k: tuple(v) for k, v in (triggers or DEFAULT_TRIGGERS).items()}
    concepts = list(triggers)
    overlap = {w for ws in triggers.values() for w in ws} & set(FILLER_WORDS)
    if overlap:
        raise InputError(f"triggers: words {sorted(overlap)} are also filler words")
    if n < 2 * len(SPLITS):
        raise InputError(f"n: expected at least {2 * len(SPLITS)} samples, got {n}")
    rng = np.random.default_rng(seed)
    n_train = int(round(fractions[0] * n))
    n_cal = int(round(fractions[1] * n))
    splits = np.array(["train"] * n_train + ["cal"] * n_cal + ["test"] * (n - n_train - n_cal))
    labels = rng.random((n, len(concepts))) < p_positive
    for s in SPLITS:  # at least two positives and one negative per concept and split
        idx = np.flatnonzero(splits == s)
        for c in range(len(concepts)):
            if labels[idx, c].sum() < 2:
                labels[idx[c % len(idx)], c] = labels[idx[(c + 1) % len(idx)], c] = True
            if labels[idx, c].all():
                labels[idx[-1], c] = False
    texts, spans = [], []
    for i in range(n):
        n_sent = int(rng.integers(sentences[0], sentences[1], endpoint=True))
        parts = [_sentence(rng, int(rng.integers(4, 8))) for _ in range(n_sent)]
        plants: dict[int, list[tuple[int, str]]] = {}  # sentence -> (concept, word)
        for k in np.flatnonzero(labels[i]).tolist():
            word = str(rng.choice(triggers[concepts[k]]))
            plants.setdefault(int(rng.integers(len(parts))), []).append((k, word))
        text, sample_spans = "", []
        for j, sent in enumerate(parts):
            words: list[tuple[str, int]] = [(w, -1) for w in sent.split()]  # (word, concept)
            for c, word in plants.get(j, []):  # never at position 0: stays lower case
                words.insert(int(rng.integers(1, len(words) + 1)), (word, c))
            k = len(text) + (1 if text else 0)
            for w, c in words:
                if c >= 0:
                    sample_spans.append((k, k + len(w), c))
                k += len(w) + 1
            sentence = " ".join(w for w, _ in words).capitalize() + "."
            text = f"{text} {sentence}" if text else sentence
        texts.append(text)
        spans.append(sorted(sample_spans))
    paths = [f"synthetic/{i:05d}.txt" for i in range(n)]
    meta = {"triggers": triggers, "seed": seed}
    return TextDataset("synthetic", concepts, texts, labels, spans, splits, paths, meta)
