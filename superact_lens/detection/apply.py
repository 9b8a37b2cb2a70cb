"""Apply a :class:`~.artefact.ConceptDetector` to new text: one detection record per text.

The record (shared by ``superact detect --json``, the HTML page and tests)::

    {"index": 0, "text": "...", "tokens": [...content tokens...],
     "present": ["noun.animal"],
     "concepts": {"noun.animal": {"present": true, "score": 1.23, "threshold": 0.98,
                                  "layer": 4, "sparsity": 5.0,
                                  "superactivators": [{"position": 1, "token": " dog",
                                                       "score": 1.23}],
                                  "token_scores": [...]}}}   # only with token_scores=True

``score`` is the max over content tokens of the token score at the concept's
layer (null for a text without content tokens), and the concept is present iff
``score > threshold``: the same values and comparison as the detector's
``predict`` on ``lens.scores``. Texts are streamed through the lens in chunks,
so any number of them runs in bounded memory (:func:`iter_detect`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch

from superact_lens.errors import InputError, InputTypeError
from superact_lens.sinks.base import Sink
from superact_lens.sinks.projection import ProjectionSink

from .segments import segment_max

if TYPE_CHECKING:
    from superact_lens.lens import ConceptLens, TokenBatch

    from .artefact import ConceptDetector

__all__ = ["detect", "iter_detect", "select_concepts", "token_pieces"]


def select_concepts(
    detector: ConceptDetector, names: Sequence[str] | None, arg: str = "concepts"
) -> list[int]:
    """Indices of the concepts named (all of them, in detector order, for None);
    ``arg`` names the argument in the error."""
    if names is None:
        return list(range(len(detector.concepts)))
    index = {name: c for c, name in enumerate(detector.concepts)}
    unknown = [n for n in names if n not in index]
    if unknown or not names:
        raise InputError(
            f"{arg}: unknown concept(s) {unknown or list(names)}; the detector has "
            + ", ".join(detector.concepts)
        )
    return sorted({index[n] for n in names})


def token_pieces(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """Each content token as the slice of ``text`` it covers, with the gap before it.

    Joined, the pieces give ``text`` from its first content token to its last
    (so a reader sees the text, spaces included). A token sharing characters
    with the previous one (a character split into several byte tokens) is "".
    """
    pieces: list[str] = []
    cursor = spans[0][0] if spans else 0
    for _, end in spans:
        pieces.append(text[cursor:end] if end > cursor else "")
        cursor = max(cursor, end)
    return pieces


class _TokenSink(Sink):
    """Keeps each text's content token ids and character spans (no layer needed)."""

    def __init__(self, on_batch: Callable[[int], None] | None = None) -> None:
        self.layers = []
        self.on_batch = on_batch

    def begin(self, n_samples: int, layers: list[int], d_model: int) -> None:
        super().begin(n_samples, layers, d_model)
        self.ids_: list[list[int]] = [[] for _ in range(n_samples)]
        self.spans_: list[list[tuple[int, int]]] = [[] for _ in range(n_samples)]

    def begin_batch(self, batch: TokenBatch) -> None:
        for row, sample in enumerate(batch.sample_ids.tolist()):
            keep = batch.content_mask[row]
            self.ids_[sample] = batch.input_ids[row][keep].tolist()
            self.spans_[sample] = [tuple(s) for s in batch.offsets[row][keep].tolist()]

    def end_batch(self, batch: TokenBatch) -> None:
        if self.on_batch is not None:
            self.on_batch(len(batch.sample_ids))


def _number(x: float) -> float | None:
    """JSON-safe float: NaN becomes null (an infinite threshold never comes from calibration
    on finite scores, but it would also become null rather than invalid JSON)."""
    return None if not math.isfinite(x) else x


def _records(
    detector: ConceptDetector,
    lens: ConceptLens,
    texts: list[str],
    start: int,
    chosen: list[int],
    top_k: int,
    token_scores: bool,
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """Records of ``texts`` (input positions ``start...``); texts without content tokens
    (blank ones, or only characters the tokenizer drops) skip the model."""

    def scored(live: list[int]) -> list[dict[str, Any]]:
        return _scored(
            detector, lens, texts, live, start, chosen, top_k, token_scores, batch_size, on_batch
        )

    live = [i for i, t in enumerate(texts) if t.strip()]
    try:
        return scored(live)
    except InputError as err:
        if "no content tokens" not in str(err):
            raise
    # Rare: a text of characters the tokenizer drops (a BOM, zero-width spaces). Find
    # them (one more tokenisation of this chunk only) and record them as empty.
    return scored([i for i in live if _has_content(lens.tokenizer, texts[i])])


def _has_content(tokenizer: Any, text: str) -> bool:
    """Whether ``text`` has a token that is not special ([CLS], [SEP], BOS, ...)."""
    return 0 in tokenizer(text, return_special_tokens_mask=True)["special_tokens_mask"]


def _scored(
    detector: ConceptDetector,
    lens: ConceptLens,
    texts: list[str],
    live: list[int],
    start: int,
    chosen: list[int],
    top_k: int,
    token_scores: bool,
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> list[dict[str, Any]]:
    """Records of ``texts``, running the model on ``texts[i]`` for ``i`` in ``live`` only."""
    layers = sorted({detector.layer_of(c) for c in chosen})
    n_tokens = [0] * len(texts)
    ids: list[list[int]] = [[] for _ in texts]
    spans: list[list[tuple[int, int]]] = [[] for _ in texts]
    values = torch.empty(len(chosen), 0)  # [C_chosen, tokens of live texts]
    if live:
        scores_sink = ProjectionSink(detector.bank, detector.normalizer, layers=layers)
        token_sink = _TokenSink(on_batch)
        lens.stream(
            [texts[i] for i in live],
            [scores_sink, token_sink],
            layers=layers,
            batch_size=batch_size,
            progress=False,
        )
        scores = scores_sink.result()  # [L, T, K] over live texts, input order
        rows = torch.tensor([scores.layers.index(detector.layer_of(c)) for c in chosen])
        cols = torch.tensor([detector.column_of(c) for c in chosen])
        values = scores.tokens[rows, :, cols]  # [C_chosen, T]
        lengths = scores.lengths.tolist()
        for j, i in enumerate(live):
            n_tokens[i] = lengths[j]
            ids[i], spans[i] = token_sink.ids_[j], token_sink.spans_[j]
    offsets = torch.zeros(len(texts) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(n_tokens, dtype=torch.long), 0)
    best = segment_max(values, offsets, dim=1)  # [C_chosen, n]; -inf for blank texts
    thresholds = detector.detector.threshold_[chosen].to(best)
    fires = (best > thresholds.unsqueeze(1)).tolist()  # exactly the detector's predict rule
    # Plain Python from here (float32 -> float is exact, so comparisons agree with torch).
    best_l, values_l, thr_l = best.tolist(), values.tolist(), thresholds.tolist()
    names = [detector.concepts[c] for c in chosen]
    fixed = [
        {
            "threshold": _number(detector.threshold_of(c)),
            "layer": detector.layer_of(c),
            "sparsity": _number(float(detector.detector.n_[c])),
        }
        for c in chosen
    ]
    fast = bool(getattr(lens.tokenizer, "is_fast", False))
    out = []
    for i, text in enumerate(texts):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        tokens = (
            token_pieces(text, spans[i])
            if fast
            else list(lens.tokenizer.convert_ids_to_tokens(ids[i]))
        )
        concepts: dict[str, dict[str, Any]] = {}
        for k, name in enumerate(names):
            row = values_l[k][lo:hi]
            hits = sorted((p for p, v in enumerate(row) if v > thr_l[k]), key=lambda p: -row[p])
            entry: dict[str, Any] = {
                "present": fires[k][i],
                "score": best_l[k][i] if hi > lo else None,
                **fixed[k],
                "superactivators": [
                    {"position": p, "token": tokens[p], "score": row[p]} for p in hits[:top_k]
                ],
            }
            if token_scores:
                entry["token_scores"] = row
            concepts[name] = entry
        out.append(
            {
                "index": start + i,
                "text": text,
                "tokens": tokens,
                "present": [n for k, n in enumerate(names) if fires[k][i]],
                "concepts": concepts,
            }
        )
    return out


def iter_detect(
    detector: ConceptDetector,
    lens: ConceptLens,
    texts: Iterable[str],
    *,
    concepts: Sequence[str] | None = None,
    top_k: int = 5,
    token_scores: bool = False,
    batch_size: int = 32,
    chunk_size: int = 1024,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Records of ``texts`` in input order, ``chunk_size`` texts at a time.

    ``texts`` may be any iterable (a file, stdin): chunk ``k``'s records are all
    yielded before chunk ``k + 1`` is read, so memory is bounded by one chunk.
    ``on_batch(n)`` is called after every model batch of ``n`` texts (progress).
    """
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0:
        raise InputError(f"top_k: expected an integer >= 0, got {top_k!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    if isinstance(texts, str):
        raise InputTypeError("texts: expected a list of strings, got one str (wrap it in a list)")
    chosen = select_concepts(detector, concepts)
    stream = iter(texts)
    start = 0
    while chunk := list(islice(stream, chunk_size)):
        for j, text in enumerate(chunk):
            if not isinstance(text, str):
                raise InputTypeError(f"texts[{start + j}]: expected str, got {type(text).__name__}")
        yield from _records(
            detector, lens, chunk, start, chosen, top_k, token_scores, batch_size, on_batch
        )
        start += len(chunk)


def detect(
    detector: ConceptDetector,
    lens: ConceptLens,
    texts: Iterable[str],
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """All records of ``texts`` as a list (keyword arguments of :func:`iter_detect`)."""
    return list(iter_detect(detector, lens, texts, **kwargs))
