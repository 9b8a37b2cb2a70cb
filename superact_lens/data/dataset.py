"""The in-memory text dataset: stripped texts, sample labels, concept spans, splits.

A :class:`TextDataset` is what every later stage consumes. Texts have their
inline ``<TAG>...</TAG>`` markup removed; the markup survives as character
spans ``(start, end, concept_index)`` into the stripped text (half-open).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from superact_lens.errors import InputError

__all__ = ["SPLITS", "DatasetError", "TextDataset"]

SPLITS: tuple[str, ...] = ("train", "cal", "test")


class DatasetError(InputError):
    """A dataset folder is malformed. ``problems`` lists every reason, one per line.

    Each problem names where it comes from, e.g.
    ``"metadata.csv row 3 (file paragraphs/3.txt): unbalanced tag </joy>"``.
    """

    def __init__(self, problems: list[str], source: str = "dataset") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"{source}: {len(self.problems)} problem(s)"
        super().__init__(head + "\n  " + "\n  ".join(self.problems))


@dataclass
class TextDataset:
    """Texts with sample-level concept labels and character-level concept spans.

    Attributes:
        name: dataset name or folder it came from.
        concepts: concept names, one per label column.
        texts: the texts with tags stripped.
        labels: ``bool [n, C]``, concept present in the sample.
        spans: per sample, ``(char_start, char_end, concept_index)`` in the
            stripped text, half-open. A positive sample may have no span
            ("present, location unknown").
        splits: ``str [n]`` with values in ``{"train", "cal", "test"}``.
        paths: the source file of each sample (for error messages).
        meta: free-form extras (e.g. planted trigger words of a synthetic set).
    """

    name: str
    concepts: list[str]
    texts: list[str]
    labels: np.ndarray
    spans: list[list[tuple[int, int, int]]]
    splits: np.ndarray
    paths: list[str]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=bool)
        self.splits = np.asarray(self.splits, dtype=str)
        n, n_concepts = len(self.texts), len(self.concepts)
        if self.labels.shape != (n, n_concepts):
            raise InputError(f"labels: expected shape ({n}, {n_concepts}), got {self.labels.shape}")
        for attr in ("spans", "paths"):
            if len(getattr(self, attr)) != n:
                raise InputError(f"{attr}: expected {n} entries, got {len(getattr(self, attr))}")
        if self.splits.shape != (n,):
            raise InputError(f"splits: expected shape ({n},), got {self.splits.shape}")
        bad = sorted(set(self.splits.tolist()) - set(SPLITS))
        if bad:
            raise InputError(f"splits: unknown split name(s) {bad}; expected one of {SPLITS}")
        for i, sample_spans in enumerate(self.spans):
            for start, end, c in sample_spans:
                if not (0 <= start <= end <= len(self.texts[i]) and 0 <= c < n_concepts):
                    raise InputError(
                        f"spans[{i}]: span ({start}, {end}, {c}) outside the text "
                        f"(length {len(self.texts[i])}) or concept range ({n_concepts})"
                    )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_concepts(self) -> int:
        """Number of concepts ``C``."""
        return len(self.concepts)

    def split_indices(self, split: str) -> np.ndarray:
        """Indices (int array, ascending) of the samples in ``split``."""
        if split not in SPLITS:
            raise InputError(f"split: expected one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.splits == split)

    def select(self, indices: np.ndarray | list[int]) -> TextDataset:
        """A new dataset with the samples at ``indices``, in that order."""
        idx = [int(i) for i in np.asarray(indices, dtype=int).ravel()]
        return TextDataset(
            name=self.name,
            concepts=list(self.concepts),
            texts=[self.texts[i] for i in idx],
            labels=self.labels[idx],
            spans=[list(self.spans[i]) for i in idx],
            splits=self.splits[idx],
            paths=[self.paths[i] for i in idx],
            meta=dict(self.meta),
        )

    def subset(self, split: str) -> TextDataset:
        """The samples of one split (``"train"``, ``"cal"`` or ``"test"``), order kept."""
        return self.select(self.split_indices(split))

    def concept_spans(self, concept: int | str) -> list[list[tuple[int, int]]]:
        """Per sample, the ``(start, end)`` spans of one concept (by index or name)."""
        c = self.concepts.index(concept) if isinstance(concept, str) else int(concept)
        return [[(s, e) for s, e, k in sample if k == c] for sample in self.spans]
