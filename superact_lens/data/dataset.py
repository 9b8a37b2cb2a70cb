"""The in-memory text dataset: stripped texts, sample labels, concept spans, splits.

A :class:`TextDataset` is what every later stage consumes. Texts have their
inline ``<TAG>...</TAG>`` markup removed; the markup survives as character
spans ``(start, end, concept_index)`` into the stripped text (half-open).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

import numpy as np

from superact_lens.data.on_disk import FolderSpans
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


_S = TypeVar("_S", bound="_Samples")


class _Samples:
    """What text and image datasets share: ``labels bool [n, C]``, ``splits str [n]``
    and per-sample fields (``_PER_SAMPLE``, one entry per sample each), selected
    together by index or split.
    """

    _PER_SAMPLE: ClassVar[tuple[str, ...]]  # the first one defines ``n``
    concepts: list[str]
    labels: np.ndarray
    splits: np.ndarray
    meta: dict

    def _check_samples(self) -> None:
        """Coerce ``labels`` and ``splits`` to arrays and check every shape against ``n``."""
        self.labels = np.asarray(self.labels, dtype=bool)
        self.splits = np.asarray(self.splits, dtype=str)
        n, n_concepts = len(getattr(self, self._PER_SAMPLE[0])), len(self.concepts)
        if self.labels.shape != (n, n_concepts):
            raise InputError(f"labels: expected shape ({n}, {n_concepts}), got {self.labels.shape}")
        for attr in self._PER_SAMPLE[1:]:
            if len(getattr(self, attr)) != n:
                raise InputError(f"{attr}: expected {n} entries, got {len(getattr(self, attr))}")
        if self.splits.shape != (n,):
            raise InputError(f"splits: expected shape ({n},), got {self.splits.shape}")
        bad = sorted(set(np.unique(self.splits).tolist()) - set(SPLITS))
        if bad:
            raise InputError(f"splits: unknown split name(s) {bad}; expected one of {SPLITS}")

    def __len__(self) -> int:
        return len(getattr(self, self._PER_SAMPLE[0]))

    @property
    def n_concepts(self) -> int:
        """Number of concepts ``C``."""
        return len(self.concepts)

    def split_indices(self, split: str) -> np.ndarray:
        """Indices (int array, ascending) of the samples in ``split``."""
        if split not in SPLITS:
            raise InputError(f"split: expected one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.splits == split)

    def select(self: _S, indices: np.ndarray | list[int]) -> _S:
        """A new dataset with the samples at ``indices``, in that order."""
        idx = [int(i) for i in np.asarray(indices, dtype=int).ravel()]
        per_sample = {
            f: (
                values.take(idx)  # packed (data.packed) stays packed
                if hasattr(values := getattr(self, f), "take")
                else [copy.copy(values[i]) for i in idx]
            )
            for f in self._PER_SAMPLE
        }
        return dataclasses.replace(  # type: ignore[type-var]  # the subclasses are dataclasses
            self,
            concepts=list(self.concepts),
            labels=self.labels[idx],
            splits=self.splits[idx],
            meta=dict(self.meta),
            **per_sample,
        )

    def subset(self: _S, split: str) -> _S:
        """The samples of one split (``"train"``, ``"cal"`` or ``"test"``), order kept."""
        return self.select(self.split_indices(split))


@dataclass
class TextDataset(_Samples):
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

    ``texts``, ``spans`` and ``paths`` may be lists or any sequence; datasets read
    from a folder hold them packed (:mod:`superact_lens.data.packed`), or leave
    texts and spans in the folder (``texts_on_disk``, :mod:`superact_lens.data.on_disk`),
    which ``select`` and ``subset`` keep.
        meta: free-form extras (e.g. planted trigger words of a synthetic set).
    """

    name: str
    concepts: list[str]
    texts: Sequence[str]
    labels: np.ndarray
    spans: Sequence[list[tuple[int, int, int]]]
    splits: np.ndarray
    paths: Sequence[str]
    meta: dict = field(default_factory=dict)

    _PER_SAMPLE = ("texts", "spans", "paths")

    def __post_init__(self) -> None:
        self._check_samples()
        if isinstance(self.spans, FolderSpans):  # checked as the folder was read
            return
        n_concepts = len(self.concepts)
        for i, sample_spans in enumerate(self.spans):
            for start, end, c in sample_spans:
                if not (0 <= start <= end <= len(self.texts[i]) and 0 <= c < n_concepts):
                    raise InputError(
                        f"spans[{i}]: span ({start}, {end}, {c}) outside the text "
                        f"(length {len(self.texts[i])}) or concept range ({n_concepts})"
                    )

    def concept_spans(self, concept: int | str) -> list[list[tuple[int, int]]]:
        """Per sample, the ``(start, end)`` spans of one concept (by index or name)."""
        c = self.concepts.index(concept) if isinstance(concept, str) else int(concept)
        return [[(s, e) for s, e, k in sample if k == c] for sample in self.spans]
