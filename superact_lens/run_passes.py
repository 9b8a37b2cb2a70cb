"""The two streaming passes of a resumable, data-parallel ``superact run``.

Each pass streams this rank's unfinished chunks of the plan
(:func:`superact_lens.runstate.chunk_plan`) and commits every chunk's mergeable
state under the run's :class:`~superact_lens.runstate.RunState`; rank 0 merges
the committed files. Split out of :mod:`superact_lens.runstate` (which owns the
plan, the process group and the files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from superact_lens.concepts import ConceptBank
from superact_lens.normalization import Normalizer
from superact_lens.run_masks import PackedMasks
from superact_lens.runstate import RunState, World, chunk_plan
from superact_lens.scores import TokenScores, segment_positions
from superact_lens.sinks import NormStatsSink, ProjectionSink, SampleEmbeddingSink, TokenCollector
from superact_lens.sinks.token_sample import TokenSample
from superact_lens.stats import SampleRows, ScoreRows, load_state, save_state
from superact_lens.stats.summary import SplitSummary

__all__ = [
    "load_fit",
    "merge_pass1",
    "merge_pass2",
    "sample_range",
    "save_fit",
    "split_parts",
    "stream_pass1",
    "stream_pass2",
    "summarize_pass2",
]


_MASKS = "token_masks"  # a pass-2 chunk's masks, beside its scores per concept type


def _mine(world: World, n_chunks: int, done: set[int]) -> list[int]:
    return [j for j in range(n_chunks) if j % world.size == world.rank and j not in done]


def stream_pass1(
    state: RunState,
    world: World,
    lens: Any,
    texts: Sequence[str],
    make_collector: Callable[[list[int] | None], TokenCollector],
    cls_rows: Tensor,
    layers: list[int],
    batch_size: int,
    progress: bool,
) -> int:
    """Stream this rank's unfinished TRAIN chunks; commit each to ``pass1/``. Returns
    the number of chunks in the pass's plan (every rank's).

    ``make_collector(sample_index)`` builds a TokenCollector over the whole split;
    ``cls_rows`` (ascending train indices, :func:`~superact_lens.sinks.sample_subset`)
    are the samples whose embeddings are kept for the CLS-level concepts.
    """
    keep = torch.zeros(len(texts), dtype=torch.bool)
    keep[cls_rows] = True
    chunks = chunk_plan(texts, batch_size)
    mine = _mine(world, len(chunks), state.pass1_done())
    running: TokenCollector | None = None
    done: list[int] = []
    for k, j in enumerate(mine):
        ids = chunks[j]
        stats, collector, emb = NormStatsSink(), make_collector(ids), SampleEmbeddingSink()
        lens.stream(
            [texts[i] for i in ids],
            [stats, collector, emb],
            layers=layers,
            batch_size=batch_size,
            progress=progress and f"train pass {k + 1}/{len(mine)}",
        )
        kept = keep[ids]
        rows = SampleRows().add(torch.as_tensor(ids)[kept], emb=emb.result().transpose(0, 1)[kept])
        save_state(
            state.chunk_path(state.pass1, j), {"norm": stats.state_dict(), "emb": rows.state_dict()}
        )
        running = collector if running is None else running.merge(collector)
        done.append(j)
        save_state(
            state.pass1 / f"collector-{state.tag}",
            {"collector": running.state_dict(), "chunks": {"done": done}},
        )
        state.committed()
    return len(chunks)


def merge_pass1(
    state: RunState,
    n_chunks: int,
    make_collector: Callable[[list[int] | None], TokenCollector],
    cls_rows: Tensor,
) -> tuple[Normalizer, TokenSample, Tensor]:
    """Normaliser (moments merged in chunk order), token sample and the embeddings
    ``[layers, len(cls_rows), d_model]`` of the train samples ``cls_rows`` (ascending,
    as given to :func:`stream_pass1`) from every committed pass-1 file.

    Each chunk's embeddings are copied straight into place (peak: the merged
    embeddings plus one chunk; gathering then sorting held three copies), equal to
    :class:`~superact_lens.stats.SampleRows` merged over the chunks."""
    collector: TokenCollector | None = None
    for path in state.collector_files():
        part_c = make_collector(None).load_state_dict(load_state(path.with_suffix(""))["collector"])
        collector = part_c if collector is None else collector.merge(part_c)
    if collector is None or not bool(collector.seen_.all()):
        raise RuntimeError(f"{state.pass1}: the train pass is incomplete")
    cls_rows = torch.as_tensor(cls_rows, dtype=torch.long)
    norm: NormStatsSink | None = None
    emb: Tensor | None = None
    filled = torch.zeros(len(cls_rows), dtype=torch.bool)
    for j in range(n_chunks):
        st = load_state(state.chunk_path(state.pass1, j))
        part = NormStatsSink.from_state(st["norm"])
        norm = part if norm is None else norm.merge(part)
        ids, rows = st["emb"]["ids"], st["emb"]["col.emb"]  # rows: [b, layers, d_model]
        if emb is None:
            emb = torch.empty(rows.shape[1], len(cls_rows), rows.shape[2], dtype=rows.dtype)
        at = torch.searchsorted(cls_rows, ids)
        if bool((at >= len(cls_rows)).any()) or not torch.equal(cls_rows[at], ids):
            raise RuntimeError(f"{state.pass1}: chunk {j} holds samples outside the CLS subset")
        ids = at
        if bool(filled[ids].any()):
            raise RuntimeError(f"{state.pass1}: a train sample is in two chunks")
        filled[ids] = True
        emb[:, ids] = rows.transpose(0, 1)
        del st
    if norm is None or emb is None or not bool(filled.all()):
        raise RuntimeError(f"{state.pass1}: the train pass is incomplete")
    return norm.result(), collector.result(), emb


def save_fit(
    state: RunState,
    normalizer: Normalizer,
    banks: dict[str, ConceptBank],
    cls_banks: dict[str, ConceptBank],
) -> None:
    """Write the normaliser and banks to ``fit/``, then ``fit/done.json``."""
    norm = {"layers": list(normalizer.layers), "mean": normalizer.mean, "scale": normalizer.scale}
    save_state(state.fit / "normalizer", {"normalizer": norm})
    for kind in banks:
        banks[kind].save(state.fit / f"bank-{kind}")
        cls_banks[kind].save(state.fit / f"cls-{kind}")
    tmp = state.fit / "done.json.tmp"
    tmp.write_text(json.dumps({"kinds": list(banks)}))
    os.replace(tmp, state.fit / "done.json")


def load_fit(
    state: RunState, kinds: Sequence[str]
) -> tuple[Normalizer, dict[str, ConceptBank], dict[str, ConceptBank]]:
    """What :func:`save_fit` wrote."""
    norm = load_state(state.fit / "normalizer")["normalizer"]
    normalizer = Normalizer(layers=list(norm["layers"]), mean=norm["mean"], scale=norm["scale"])
    banks = {k: ConceptBank.load(state.fit / f"bank-{k}") for k in kinds}
    cls_banks = {k: ConceptBank.load(state.fit / f"cls-{k}") for k in kinds}
    return normalizer, banks, cls_banks


def stream_pass2(
    state: RunState,
    world: World,
    lens: Any,
    texts: Sequence[str],
    make_sinks: Callable[[], dict[str, ProjectionSink]],
    masks_of: Callable[[list[int]], PackedMasks],
    layers: list[int],
    batch_size: int,
    progress: bool,
) -> int:
    """Stream this rank's unfinished CAL+TEST chunks; commit their scores to ``pass2/``
    with their token masks (``masks_of(positions)``, packed in that order), so that
    nothing after this pass needs the masks of the whole split in memory. Returns
    the number of chunks in the pass's plan (every rank's)."""
    chunks = chunk_plan(texts, batch_size)
    mine = _mine(world, len(chunks), state.pass2_done(len(chunks)))
    for k, j in enumerate(mine):
        ids = chunks[j]
        sinks = make_sinks()
        lens.stream(
            [texts[i] for i in ids],
            list(sinks.values()),
            layers=layers,
            batch_size=batch_size,
            progress=progress and f"cal+test pass {k + 1}/{len(mine)}",
        )
        states = {}
        for kind, sink in sinks.items():
            s = sink.result()
            states[kind] = ScoreRows(s.layers, s.concepts, s.metadata).add(ids, s).state_dict()
        in_order = sorted(ids)  # ScoreRows keeps its samples sorted
        masks = masks_of(in_order)
        states[_MASKS] = {
            "ids": torch.tensor(in_order, dtype=torch.long),
            "offsets": masks.offsets,
            "data": masks.data,
        }
        save_state(state.chunk_path(state.pass2, j), states)
        state.committed()
    return len(chunks)


def merge_pass2(
    state: RunState, kinds: Sequence[str], n_chunks: int, n: int
) -> tuple[dict[str, TokenScores], Tensor | None]:
    """Every concept type's :class:`TokenScores` over the ``n`` CAL+TEST samples, in
    sample order, and their token masks ``[n_tokens, C]`` (None when the chunks hold
    none): equal to ``ScoreRows`` merged over the chunks, but each chunk's rows are
    copied straight into place (peak: the merged scores plus one chunk, where
    concatenating then reordering held three copies)."""
    lengths = torch.full((n,), -1, dtype=torch.long)
    heads: dict[str, dict[str, Any]] = {}
    for j in range(n_chunks):  # first read: who owns how many tokens
        st = load_state(state.chunk_path(state.pass2, j))
        first = st[kinds[0]]
        ids = first["ids"]
        if bool((lengths[ids] >= 0).any()):
            raise RuntimeError(f"{state.pass2}: a sample is in two chunks")
        lengths[ids] = first["offsets"].diff()
        for kind in [*kinds, _MASKS] if _MASKS in st else kinds:
            heads.setdefault(kind, st[kind])
    if bool((lengths < 0).any()):
        raise RuntimeError(f"{state.pass2}: the cal+test pass is incomplete")
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lengths, 0)
    out: dict[str, TokenScores] = {}
    for kind in kinds:
        h = heads[kind]
        n_layers, _, n_cols = h["tokens"].shape
        out[kind] = TokenScores(
            layers=list(h["layers"]),
            concepts=list(h["concepts"]),
            tokens=torch.empty(n_layers, int(offsets[-1]), n_cols, dtype=h["tokens"].dtype),
            offsets=offsets,
            cls=None if "cls" not in h else torch.empty(n_layers, n, n_cols, dtype=h["cls"].dtype),
            metadata=dict(h["metadata"]),
        )
    masks = None
    if _MASKS in heads:
        n_concepts = heads[_MASKS]["data"].shape[1]
        masks = torch.empty(int(offsets[-1]), n_concepts, dtype=torch.bool)
    heads.clear()
    for j in range(n_chunks):  # second read: copy every chunk's rows into place
        st = load_state(state.chunk_path(state.pass2, j))
        ids = st[kinds[0]]["ids"]
        dest = segment_positions(offsets[ids], st[kinds[0]]["offsets"].diff())
        for kind in kinds:
            part, whole = st[kind], out[kind]
            if not torch.equal(part["ids"], ids) or not torch.equal(
                part["offsets"], st[kinds[0]]["offsets"]
            ):
                raise RuntimeError(f"{state.pass2}: chunk {j} scores other tokens for {kind}")
            whole.tokens[:, dest] = part["tokens"]
            if whole.cls is not None:
                whole.cls[:, ids] = part["cls"]
        if masks is not None:
            masks[dest] = _chunk_masks(st, j).data
        del st
    return out, masks


def _chunk_masks(st: dict[str, dict[str, Any]], j: int) -> PackedMasks:
    """A loaded pass-2 chunk's token masks, checked against its scores."""
    if _MASKS not in st:
        raise RuntimeError(
            f"pass2 chunk {j}: no token masks (written by an earlier version of superact "
            "run): start the run again with --overwrite"
        )
    first = next(v for k, v in st.items() if k != _MASKS)
    m = st[_MASKS]
    if not torch.equal(m["ids"], first["ids"]) or not torch.equal(m["offsets"], first["offsets"]):
        raise RuntimeError(f"pass2 chunk {j}: its token masks cover other tokens than its scores")
    return PackedMasks(m["data"], m["offsets"])


def _pass2_chunks(
    state: RunState, n_chunks: int
) -> Iterator[tuple[Tensor, dict[str, TokenScores], PackedMasks]]:
    """Each committed CAL+TEST chunk: its CAL+TEST positions (sorted), its scores
    per concept type and its token masks, one chunk in memory at a time."""
    for j in range(n_chunks):
        st = load_state(state.chunk_path(state.pass2, j))
        masks = _chunk_masks(st, j)
        kinds = [k for k in st if k != _MASKS]
        parts = {kind: ScoreRows.from_state(st[kind]).result() for kind in kinds}
        ids = st[kinds[0]]["ids"]
        del st
        yield ids, parts, masks


def split_parts(
    state: RunState,
    n_chunks: int,
    rows: range,
    kind: str,
    labels_of: Callable[[Tensor], Tensor],
) -> Callable[[], Iterator[tuple[TokenScores, Tensor, Tensor]]]:
    """A re-iterable source of one split's ``(scores, labels, token_masks)`` parts
    for concept type ``kind``, read chunk by chunk from the committed files (what
    :func:`superact_lens.analysis.separability_chunks` reads).

    ``rows``: the split's range of CAL+TEST positions; ``labels_of(positions)``
    gives their labels ``[b, C]``; the token masks ``[T_b, C]`` come from the chunks.
    """

    def parts() -> Iterator[tuple[TokenScores, Tensor, Tensor]]:
        for ids, scores, masks in _pass2_chunks(state, n_chunks):
            keep = (ids >= rows.start) & (ids < rows.stop)
            if bool(keep.any()):
                pos = ids[keep]
                chosen = masks.stack(torch.nonzero(keep).flatten())
                yield scores[kind].select_samples(keep), labels_of(pos), chosen

    return parts


def summarize_pass2(
    state: RunState,
    n_chunks: int,
    splits: dict[str, range],
    make_summary: Callable[[str, str, TokenScores], SplitSummary],
    labels_of: Callable[[Tensor], Tensor],
) -> dict[str, dict[str, SplitSummary]]:
    """Per split and concept type, the :class:`SplitSummary` of the committed
    CAL+TEST scores, read one chunk at a time: memory holds one chunk's token
    scores and the summaries, never the splits' token scores.

    ``splits``: each split's range of positions in the CAL+TEST order;
    ``make_summary(split, kind, first_scores)`` builds an empty summary;
    ``labels_of(positions)``: labels ``[b, C]`` of those CAL+TEST positions (their
    token masks come from the chunks).
    """
    out: dict[str, dict[str, SplitSummary]] = {split: {} for split in splits}
    seen = 0
    for ids, parts, chunk_masks in _pass2_chunks(state, n_chunks):
        seen += len(ids)
        for split, rows in splits.items():
            keep = (ids >= rows.start) & (ids < rows.stop)
            if not bool(keep.any()):
                continue
            pos = ids[keep]
            labels, masks = labels_of(pos), chunk_masks.stack(torch.nonzero(keep).flatten())
            for kind, scores in parts.items():
                part = scores.select_samples(keep)
                if kind not in out[split]:
                    out[split][kind] = make_summary(split, kind, part)
                out[split][kind].update(pos - rows.start, part, labels, masks)
    total = sum(len(r) for r in splits.values())
    if seen != total:
        raise RuntimeError(f"{state.pass2}: {seen} samples scored, expected {total}")
    return out


def sample_range(scores: TokenScores, start: int, stop: int) -> TokenScores:
    """Samples ``start:stop`` of ``scores`` as views (no copy of the token rows)."""
    a, b = int(scores.offsets[start]), int(scores.offsets[stop])
    return TokenScores(
        layers=list(scores.layers),
        concepts=list(scores.concepts),
        tokens=scores.tokens[:, a:b],
        offsets=scores.offsets[start : stop + 1] - a,
        cls=None if scores.cls is None else scores.cls[:, start:stop],
        metadata=dict(scores.metadata),
    )
