"""What a run opens before it streams: the model (and the prompting baseline), the
dataset, the layers and a source of token masks; and :class:`RowsView`, a split's
texts as a view of the dataset's. Split out of :mod:`superact_lens.pipeline`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from superact_lens.data import TextDataset, load_dataset
from superact_lens.detection import PromptDetector, load_generative
from superact_lens.errors import InputError
from superact_lens.lens import ConceptLens
from superact_lens.run_masks import PackedMasks, text_masks
from superact_lens.vision.masks import is_image_folder, prepare_images

if TYPE_CHECKING:
    from superact_lens.pipeline import RunConfig

__all__ = ["MasksOf", "RowsView", "prepare"]


def _open_model(config: RunConfig, names: list[str]) -> tuple[ConceptLens, PromptDetector | None]:
    """The lens, and the prompting baseline when asked for.

    For ``prompt`` the model is loaded once with its language-model head and the
    lens streams its base model (the same weights ``AutoModel`` would load).
    """
    if "prompt" not in config.methods:
        lens = ConceptLens(config.model, device=config.device, max_length=config.max_length)
        return lens, None
    try:
        causal, tokenizer = load_generative(config.model)
    except InputError as err:
        raise InputError(f"--methods prompt: {err}") from None
    lens = ConceptLens(
        causal.base_model, tokenizer=tokenizer, device=config.device, max_length=config.max_length
    )
    prompt = PromptDetector(
        causal, names, tokenizer=tokenizer, batch_size=config.batch_size, progress=config.progress
    )
    return lens, prompt.load()


MasksOf = Callable[[np.ndarray], PackedMasks]


def prepare(
    config: RunConfig, dataset: Any = None
) -> tuple[ConceptLens, TextDataset, list[int], MasksOf, PromptDetector | None]:
    """Load model and dataset, resolve layers, and set up the prompting baseline
    (None unless ``"prompt"`` is among the methods). ``masks_of(rows)`` gives the
    token masks of dataset rows ``rows``, packed in that order: for texts, the
    concept spans mapped to the tokens of those texts when asked (a run asks chunk
    by chunk, so the masks of the whole dataset are never held); for an image
    folder, its patch masks (``vision.masks.prepare_images``, all read at once).
    ``dataset``: ``config.dataset`` already read (``vision.masks.load_run_dataset``),
    so that it is read once."""
    if is_image_folder(config.dataset):
        lens, ids, layers, patch_masks, prompt = prepare_images(config, dataset)
        packed = PackedMasks.from_list(patch_masks, len(ids.concepts))
        return lens, ids, layers, lambda rows: PackedMasks.from_rows(packed, rows), prompt
    if dataset is None:
        dataset = load_dataset(config.dataset, seed=config.seed, texts_on_disk=True)
    lens, prompt = _open_model(config, list(dataset.concepts))
    if lens.is_vision:
        raise InputError(f"--model {config.model!r} takes images; --dataset holds texts")
    layers = lens.resolve_layers(config.layers)
    return lens, dataset, layers, lambda rows: text_masks(lens, dataset, rows), prompt


class RowsView(Sequence[str]):
    """``texts[rows]`` as a view: item ``k`` is ``texts[rows[k]]``, read when asked
    (a split's copy of a packed dataset's texts would be a few MB per 10^5 samples)."""

    def __init__(self, texts: Sequence[str], rows: np.ndarray) -> None:
        self._texts, self._rows = texts, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self._texts[int(i)] for i in self._rows[k]]
        return self._texts[int(self._rows[k])]

    def known_lengths(self) -> np.ndarray | None:
        """Each item's length when the texts know it without being read (texts left
        on disk, ``data.on_disk``), else None: what
        :func:`~superact_lens.runstate.chunk_plan` orders by."""
        if hasattr(self._texts, "known_lengths"):
            return self._texts.known_lengths()[self._rows]
        return None
