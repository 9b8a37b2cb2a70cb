"""What a run produced: :class:`Experiment` (kept in memory for analyses, figures
and notebooks) and :class:`SplitScores` (one split's scores for one concept type,
token scores read back from the run's chunks only when asked). Built by
:func:`superact_lens.pipeline.run_rank`; split out of :mod:`superact_lens.pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jaxtyping import Bool
from torch import Tensor

from superact_lens.concepts import ConceptBank
from superact_lens.data import TextDataset
from superact_lens.detection import PromptDetector
from superact_lens.lens import ConceptLens
from superact_lens.normalization import Normalizer
from superact_lens.scores import TokenScores
from superact_lens.stats.summary import SplitSummary
from superact_lens.vision.masks import ImageRunData

if TYPE_CHECKING:
    from superact_lens.pipeline import RunConfig

__all__ = ["Experiment", "SplitScores"]


class SplitScores:
    """One split's scores for one concept type, with the labels they are judged against.

    ``summary``: the per-sample reductions detectors calibrate on and are evaluated
    on (:class:`~superact_lens.stats.summary.SplitSummary`). ``scores`` (token scores,
    and in ``.cls`` the CLS-level bank's sample scores) and ``masks`` (in-concept
    token masks ``[n_tokens, C]``) are read from the run's committed chunks the
    first time they are asked for (figures, notebooks, analyses), so a run that
    does not ask never holds the split's token scores. ``parts()`` reads the split
    chunk by chunk as ``(scores, labels, token_masks)`` (``separability_chunks``)
    while the run's state is on disk.
    """

    def __init__(
        self,
        summary: SplitSummary,
        labels: Bool[Tensor, "n C"],
        load: Callable[[], tuple[TokenScores, Tensor]],
        parts: Callable[[], Iterator[tuple[TokenScores, Tensor, Tensor]]],
    ) -> None:
        self.summary, self.labels, self.parts = summary, labels, parts
        self._load: Callable[[], tuple[TokenScores, Tensor]] | None = load
        self._scores: TokenScores | None = None
        self._masks: Tensor | None = None

    def _loaded(self) -> tuple[TokenScores, Tensor]:
        if self._scores is None or self._masks is None:
            if self._load is None:  # pragma: no cover -- set in __init__
                raise RuntimeError("SplitScores: no loader")
            self._scores, self._masks = self._load()
            self._load = None
        return self._scores, self._masks

    @property
    def scores(self) -> TokenScores:
        return self._loaded()[0]

    @property
    def masks(self) -> Bool[Tensor, "n_tokens C"]:
        return self._loaded()[1]


@dataclass
class Experiment:
    """What a run produced, kept in memory for analyses, figures and notebooks."""

    config: RunConfig
    lens: ConceptLens
    dataset: TextDataset | ImageRunData
    layers: list[int]
    normalizer: Normalizer
    banks: dict[str, ConceptBank]
    cls_banks: dict[str, ConceptBank]
    cal: dict[str, SplitScores]
    test: dict[str, SplitScores]
    detectors: dict[str, dict[str, object]] = field(default_factory=dict)
    prompt: PromptDetector | None = None  # fitted on nothing; asked on TEST
    prompt_pred: Bool[Tensor, "n_test C"] | None = None
    results: dict = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def tokens_of(self, row: int) -> list[str]:
        """The content tokens of dataset row ``row`` as strings (TokenScores order);
        for an image, its content patches as ``"row,col"``."""
        if self.lens.is_vision:
            rc = self.lens.content_patches([self.dataset.texts[row]])[0]
            return [f"{r},{c}" for r, c in rc.tolist()]
        batch = self.lens.tokenize([self.dataset.texts[row]])
        ids = batch.input_ids[0][batch.content_mask[0]].tolist()
        return list(self.lens.tokenizer.convert_ids_to_tokens(ids))
