"""ConceptMonitor: which concepts fire, on which tokens, while a model generates.

>>> with ConceptMonitor(model, detector, tokenizer=tokenizer) as mon:
...     out = model.generate(**batch, max_new_tokens=20)
>>> mon.fired()          # per batch row, the concepts that fired
>>> mon.events[:3]       # ConceptEvent(step, row, column, position, token_id, concept, ...)

Inside the ``with`` block every forward pass of the model is watched: Hugging
Face ``generate``, a TransformerLens bridge's ``generate`` and nnsight's
``model.generate(...)`` (which drives the wrapped Hugging Face model). Hooks sit
on the residual stream at the detector's layers only, where the lens reads it
(:mod:`superact_lens.monitor_hooks`), plus one pre-hook on the model that reads
each forward's token ids and attention mask.

With a KV cache each step runs only the new tokens, and only those are scored;
a generation without a cache re-runs the whole sequence, and only the columns
not seen before are scored. The prompt (prefill) is step 0. A concept fires on
a token iff its score at the detector's layer is strictly greater than its
threshold (the SuperActivator rule; ``detector.detector.predict`` on the
lens's scores of the same tokens gives the same concepts per row). Padding,
BOS and every other special token (EOS, the pad ids that fill finished rows)
never fire. The last token ``generate`` returns is never run through the model,
so it is never scored. Only the scores at the detector's chosen layers are kept
(``[batch, columns, C]`` per generation, dropped when the next one starts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from superact_lens.adapters import OwnedHooks
from superact_lens.adapters.base import first_tensor
from superact_lens.detection.artefact import ConceptDetector
from superact_lens.errors import InputError, InputTypeError
from superact_lens.lens import ConceptLens
from superact_lens.monitor_hooks import (
    CACHE_KWARGS,
    block_input,
    cache_length,
    residual_sites,
    unwrap_envoy,
)

__all__ = ["ConceptEvent", "ConceptMonitor"]


@dataclass(frozen=True, slots=True)
class ConceptEvent:
    """One concept firing on one token during generation.

    Attributes:
        generation: which generation inside the monitor (0 for the first
            ``generate`` call; a forward that starts a new sequence starts a new one).
        step: forward pass within the generation; 0 is the prompt (prefill).
        row: batch row of the forward pass.
        column: index into the row of the sequences ``generate`` returns
            (padding included).
        position: the token's position in its own text (attended tokens counted
            from 0, BOS included), so left padding does not shift it.
        token_id: the token's id.
        concept: concept name; ``score > threshold`` at the detector's layer.
    """

    generation: int
    step: int
    row: int
    column: int
    position: int
    token_id: int
    concept: str
    score: float
    threshold: float


@dataclass
class _Step:
    """What the model pre-hook learnt about the forward pass now running."""

    skip: int  # leading input columns scored in an earlier step (generation without cache)
    columns: Int[Tensor, " n"]
    token_ids: Int[Tensor, "batch n"]
    positions: Int[Tensor, "batch n"]
    valid: Bool[Tensor, "batch n"]
    scores: Float[Tensor, "batch n C"]
    layers_left: set[int]


class ConceptMonitor:
    """Report the concepts a calibrated detector sees while a model generates.

    Args:
        model_or_lens: a :class:`~superact_lens.lens.ConceptLens`, or a model it
            accepts (Hugging Face model, TransformerBridge, NNsight / LanguageModel).
            Generate with this very model object inside the ``with`` block.
        detector: the calibrated :class:`~superact_lens.detection.artefact.ConceptDetector`.
        callback: called with each :class:`ConceptEvent` as it happens (inside the
            forward pass; an exception it raises stops the generation).
        batch_index: report only these batch rows (an int or a list); None = all.
        tokenizer: for a model without its own (passed to ``ConceptLens``); its
            special ids (BOS, EOS, pad) never fire.
        keep_scores: keep the current generation's scores for :meth:`scores`.

    Attributes:
        events: every event so far, in order (step, then row, position, concept).
    """

    # the live generation (reset when a forward pass starts a new sequence)
    _generation: int
    _batch: int  # rows
    _width: int  # columns seen so far
    _step_index: int
    _ids: list[Tensor]  # token ids seen, per step (to recognise a re-run without cache)
    _chunks: list[tuple[Tensor, Tensor]]  # (columns, scores [batch, n, C]) per step
    _fired: list[set[str]]

    def __init__(
        self,
        model_or_lens: Any,
        detector: ConceptDetector,
        *,
        callback: Callable[[ConceptEvent], Any] | None = None,
        batch_index: int | Sequence[int] | None = None,
        tokenizer: Any = None,
        keep_scores: bool = True,
    ) -> None:
        if not isinstance(detector, ConceptDetector):
            raise InputTypeError(
                f"detector: expected a ConceptDetector, got {type(detector).__name__}"
            )
        if callback is not None and not callable(callback):
            raise InputTypeError(f"callback: expected a callable, got {type(callback).__name__}")
        if isinstance(model_or_lens, ConceptLens):
            if tokenizer is not None:
                raise InputError("tokenizer: pass it to the ConceptLens, not to the monitor")
            self.lens = model_or_lens
        else:
            model, tokenizer = unwrap_envoy(model_or_lens, tokenizer)
            self.lens = ConceptLens(model, tokenizer=tokenizer)
        if detector.model.d_model != self.lens.d_model:
            raise InputError(
                f"detector: calibrated on a model of width d_model={detector.model.d_model}, "
                f"this model has d_model={self.lens.d_model}"
            )
        if detector.model.n_layers != self.lens.n_layers:
            raise InputError(
                f"detector: calibrated on a model with {detector.model.n_layers} layers, "
                f"this model has {self.lens.n_layers}"
            )
        self.detector = detector
        self.callback = callback
        self.rows = _check_rows(batch_index)
        self.keep_scores = bool(keep_scores)
        self.events: list[ConceptEvent] = []
        self._hooks = OwnedHooks()
        self._active = False
        self._special = sorted(
            {int(i) for i in getattr(self.lens.tokenizer, "all_special_ids", [])}
        )
        self._step: _Step | None = None
        self._reset_generation(0)
        self._generation = -1  # no generation yet

    # --- results -------------------------------------------------------------------------
    def fired(self) -> list[set[str]]:
        """Per batch row of the latest generation, the concepts that fired so far."""
        return [set(names) for names in self._fired]

    def scores(self) -> Float[Tensor, "batch columns C"]:
        """The latest generation's scores, ``[batch, columns, C]`` (concepts in detector order).

        Columns index the sequences ``generate`` returns; NaN where nothing was
        scored: padding, special tokens, the last returned token.
        """
        if not self.keep_scores:
            raise InputError("scores: the monitor was created with keep_scores=False")
        n_c = len(self.detector.concepts)
        if not self._chunks:
            return torch.empty(self._batch, 0, n_c)
        width = max(int(cols[-1]) + 1 for cols, _ in self._chunks)
        out = torch.full((self._batch, width, n_c), float("nan"), device=self._chunks[0][1].device)
        for cols, chunk in self._chunks:
            out[:, cols.to(out.device)] = chunk
        return out

    # --- context manager -----------------------------------------------------------------
    def __enter__(self) -> ConceptMonitor:
        if self._active:
            raise RuntimeError("ConceptMonitor is already active (it does not nest with itself)")
        device = self.lens.device
        self._projector = self.detector.projector()
        self._projector.to(device)
        n_c = len(self.detector.concepts)
        # float64 (exact for any stored threshold) so that ``score > threshold`` is the
        # comparison ``detector.predict`` makes; MPS has no float64.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self._thresholds = torch.tensor(
            [self.detector.threshold_of(c) for c in range(n_c)], dtype=dtype, device=device
        )
        self._special_ids = torch.tensor(self._special, dtype=torch.long, device=device)
        # Per-step work reads only these (no tensor-to-int conversions in the hot path).
        self._layers = self.detector.layers
        self._concepts_at = {layer: self.detector.concepts_at(layer) for layer in self._layers}
        self._columns_at = {
            layer: torch.tensor(
                [self.detector.column_of(c) for c in concepts], dtype=torch.long, device=device
            )
            for layer, concepts in self._concepts_at.items()
        }
        self._threshold_list = [self.detector.threshold_of(c) for c in range(n_c)]
        top_module, sites = residual_sites(self.lens, self.detector.layers)
        try:
            self._hooks.add(
                top_module.register_forward_pre_hook(self._on_forward, with_kwargs=True)
            )
            for layer, (module, is_input) in sites.items():
                if is_input:
                    hook = self._make_input_hook(layer)
                    self._hooks.add(module.register_forward_pre_hook(hook, with_kwargs=True))
                else:
                    self._hooks.add(module.register_forward_hook(self._make_output_hook(layer)))
        except BaseException:
            self._hooks.remove()
            raise
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.remove()
        self._active = False
        self._step = None

    # --- hooks ---------------------------------------------------------------------------
    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Read the token ids and mask of a forward pass; decide which columns are new."""
        self._step = None
        ids = kwargs.get("input_ids", kwargs.get("input"))
        if ids is None and args:
            ids = args[0]
        if not isinstance(ids, Tensor) or ids.ndim != 2 or ids.is_floating_point():
            return  # embeddings in, no token ids: nothing to report on
        mask = kwargs.get("attention_mask")
        mask = mask if isinstance(mask, Tensor) and mask.ndim == 2 else None
        batch, n_in = ids.shape
        past = mask.shape[1] - n_in if mask is not None else cache_length(kwargs)
        cached = kwargs.get("use_cache") is True or any(
            kwargs.get(name) is not None for name in CACHE_KWARGS
        )
        skip = 0
        if past <= 0 and not cached and self._continues(ids):  # no cache: all of it again
            skip, step = self._width, self._step_index + 1
        elif past > 0 and self._batch == batch and self._width == past:
            step = self._step_index + 1
        else:
            self._reset_generation(batch)
            self._generation += 1
            step = 0
            past = max(past, 0)
        new = ids[:, skip:]
        start = max(past, 0) + skip
        columns = torch.arange(start, start + new.shape[1], device=ids.device)
        if mask is not None:
            attended = mask.bool()
            positions = (attended.long().cumsum(dim=1) - 1)[:, mask.shape[1] - new.shape[1] :]
            attended = attended[:, mask.shape[1] - new.shape[1] :]
        else:
            attended = torch.ones_like(new, dtype=torch.bool)
            positions = columns.unsqueeze(0).expand(batch, -1)
        valid = attended & ~torch.isin(new, self._special_ids.to(new.device))
        if self.rows is not None:
            chosen = torch.zeros(batch, dtype=torch.bool, device=new.device)
            chosen[[r for r in self.rows if r < batch]] = True
            valid &= chosen.unsqueeze(1)
        scores = torch.full(
            (batch, new.shape[1], len(self.detector.concepts)), float("nan"), device=new.device
        )
        self._ids.append(new)
        self._width = start + new.shape[1]
        self._step_index = step
        self._step = _Step(skip, columns, new, positions, valid, scores, set(self._layers))

    def _continues(self, ids: Tensor) -> bool:
        """Whether ``ids`` is the live generation's sequence plus new tokens (no cache)."""
        if self._batch != ids.shape[0] or not self._ids or ids.shape[1] <= self._width:
            return False
        seen = torch.cat(self._ids, dim=1) if len(self._ids) > 1 else self._ids[0]
        return seen.shape[1] == self._width and bool((ids[:, : self._width] == seen).all())

    def _make_input_hook(self, layer: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._on_residual(layer, block_input(args, kwargs))

        return hook

    def _make_output_hook(self, layer: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self._on_residual(layer, first_tensor(output))

        return hook

    def _on_residual(self, layer: int, resid: Float[Tensor, "batch pos d_model"]) -> None:
        step = self._step
        if step is None or layer not in step.layers_left:
            return  # a forward we do not follow, or a layer seen twice (nested module call)
        if resid.shape[1] != step.skip + step.token_ids.shape[1]:
            self._step = None  # not the sequence the model pre-hook saw
            return
        step.layers_left.discard(layer)
        concepts = self._concepts_at[layer]
        with torch.no_grad():
            # = detector.concept_scores(..., layer), with the column index built once
            scores = self._projector(resid[:, step.skip :], layer)[..., self._columns_at[layer]]
            step.scores[:, :, concepts] = scores.to(step.scores.device)
        if not step.layers_left:
            self._finish(step)

    def _finish(self, step: _Step) -> None:
        """Every detector layer is scored: compare with the thresholds, emit the events."""
        self._step = None
        scores = step.scores.masked_fill(~step.valid.unsqueeze(-1), float("nan"))
        if self.keep_scores:
            self._chunks.append((step.columns, scores))
        fired = scores > self._thresholds.to(scores.device)
        hits = fired.nonzero().tolist()
        if not hits:
            return
        values = scores[fired].tolist()
        names = self.detector.concepts
        columns, positions = step.columns.tolist(), step.positions.tolist()
        token_ids = step.token_ids.tolist()
        for (row, j, c), value in zip(hits, values, strict=True):
            event = ConceptEvent(
                generation=self._generation,
                step=self._step_index,
                row=row,
                column=columns[j],
                position=positions[row][j],
                token_id=token_ids[row][j],
                concept=names[c],
                score=value,
                threshold=self._threshold_list[c],
            )
            self.events.append(event)
            self._fired[row].add(event.concept)
            if self.callback is not None:
                self.callback(event)

    def _reset_generation(self, batch: int) -> None:
        self._batch = batch
        self._width = 0
        self._step_index = -1
        self._ids = []
        self._chunks = []
        self._fired = [set() for _ in range(batch)]


def _check_rows(batch_index: Any) -> list[int] | None:
    if batch_index is None:
        return None
    items = [batch_index] if isinstance(batch_index, int) else list(batch_index)
    if not items or not all(isinstance(r, int) and not isinstance(r, bool) for r in items):
        raise InputTypeError(f"batch_index: expected an int or a list of ints, got {batch_index!r}")
    if min(items) < 0:
        raise InputError(f"batch_index: rows must be >= 0, got {batch_index!r}")
    return sorted(set(items))
