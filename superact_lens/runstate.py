"""The chunk plan and on-disk state of a resumable, data-parallel ``superact run``.

One global batch plan: a split's texts are sorted by length and cut into batches
exactly as :meth:`ConceptLens.stream` does in one process, so a sample's residuals
come from the same batch (same padding, same numerics) whatever the number of
processes. A *chunk* is a run of ``CHUNK_BATCHES`` consecutive batches; rank ``r``
of ``W`` streams the chunks ``j`` with ``j % W == r``.

State under ``OUT/.superact/`` (every file written atomically, see
:func:`superact_lens.stats.save_state`):

* ``run.json``: the command's configuration, the dataset fingerprint and the
  version. A different command on the same ``--out`` is refused.
* ``pass1/chunk-NNNNN``: the chunk's normalisation moments and sample embeddings.
* ``pass1/collector-TAG``: one process's token collector over the chunks it
  streamed, rewritten after each chunk, with the list of those chunks. A pass-1
  chunk is done when a collector file lists it (its chunk file is written first).
* ``fit/``: normaliser and concept banks; ``fit/done.json`` last.
* ``pass2/chunk-NNNNN``: the chunk's scores on every bank (:class:`ScoreRows`).
  A pass-2 chunk is done when its JSON exists.

Moments are merged in chunk order, so the normaliser (and everything after it)
is bit for bit the same for any number of processes and any restart point.
What each pass streams, commits and merges is in :mod:`superact_lens.run_passes`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from superact_lens.errors import InputError

__all__ = [
    "CHUNK_BATCHES",
    "FAIL_ENV",
    "RunState",
    "World",
    "chunk_plan",
    "dataset_fingerprint",
    "run_document",
]

#: Batches per chunk: the unit of work that is committed to disk and shared out.
CHUNK_BATCHES = 8
#: Test hook: raise after this many chunks (of either pass) were committed.
FAIL_ENV = "SUPERACT_FAIL_AFTER_CHUNKS"
STATE_DIR = ".superact"
_SPOOL_BYTES = 8 << 20  # dataset_fingerprint's spans JSON beyond this goes to a temp file


def chunk_plan(
    texts: Sequence[Any], batch_size: int, chunk_batches: int = CHUNK_BATCHES
) -> list[list[int]]:
    """Chunks of text indices, each in streaming order.

    The texts are ordered as :meth:`ConceptLens.stream` orders them (longest
    first, stable; images as given) and cut into batches of ``batch_size``;
    chunk ``j`` holds batches ``j * chunk_batches ...``. Streaming a chunk's texts in this order
    with the same ``batch_size`` reproduces the one-process batches.
    """
    known = texts.known_lengths() if hasattr(texts, "known_lengths") else None
    if known is not None:  # texts left on disk (data.on_disk): not read again
        lengths = known.tolist()
    else:
        lengths = [len(t) if isinstance(t, str) else 0 for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    size = batch_size * chunk_batches
    return [order[s : s + size] for s in range(0, len(order), size)]


def _update_json_list(h: Any, items: Iterable[Any]) -> None:
    """Feed ``h`` the bytes of ``json.dumps(list(items))``, one item at a time
    (no JSON text of the whole dataset in memory)."""
    h.update(b"[")
    for i, item in enumerate(items):
        h.update((", " if i else "").encode() + json.dumps(item).encode())
    h.update(b"]")


def dataset_fingerprint(ds: Any) -> str:
    """sha256 of what a run reads from a dataset: concepts, texts, labels, spans, splits.

    The digest is that of the JSON documents ``[concepts, texts]``, the label bytes,
    the spans and the splits. It is streamed in one pass over the samples, so texts
    left in their folder (``data.on_disk``) are read once: the texts go straight into
    the digest, the spans' JSON into a spooled temporary file (in memory up to 8 MB,
    ~30 bytes per sample) that is digested after the labels."""
    h = hashlib.sha256()
    h.update(b"[" + json.dumps(list(ds.concepts)).encode() + b", [")
    texts, spans = ds.texts, ds.spans
    if len(spans) != len(texts):
        raise InputError(f"dataset: {len(texts)} texts but {len(spans)} span lists")
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spans_json:
        spans_json.write(b"[")
        for i in range(len(texts)):
            sep = b", " if i else b""
            h.update(sep + json.dumps(texts[i]).encode())
            spans_json.write(sep + json.dumps([list(s) for s in spans[i]]).encode())
        spans_json.write(b"]")
        h.update(b"]]")
        h.update(np.ascontiguousarray(np.asarray(ds.labels, dtype=bool)).tobytes())
        spans_json.seek(0)
        for block in iter(lambda: spans_json.read(1 << 20), b""):
            h.update(block)
    _update_json_list(h, (str(s) for s in ds.splits))
    return h.hexdigest()


def run_document(config: Any, fingerprint: str) -> dict[str, Any]:
    """What identifies a run's command: config (minus progress), dataset, version."""
    import superact_lens

    doc = {k: v for k, v in asdict(config).items() if k != "progress"}
    doc = json.loads(json.dumps(doc))  # tuples -> lists, as read back from run.json
    return {
        "config": doc,
        "dataset_sha256": fingerprint,
        "superact_lens_version": superact_lens.__version__,
    }


@dataclass
class World:
    """This process's place among the run's processes (rank 0 of 1 when alone).

    ``solo_threads``: torch threads for what rank 0 does alone while the others
    wait (concept fitting, calibration): the thread count of a 1-process run, so
    that BLAS reductions, and so the fitted banks, are the same bit for bit
    (streaming is not sensitive to it). None leaves the count as it is.
    """

    rank: int = 0
    size: int = 1
    solo_threads: int | None = None

    @classmethod
    def from_env(cls, device: str = "cpu", solo_threads: int | None = None) -> World:
        """Join the process group that ``RANK``/``WORLD_SIZE`` describe (torchrun or
        ``superact run --nproc``): gloo on CPU, NCCL on CUDA."""
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return cls()
        if not dist.is_initialized():
            backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
            dist.init_process_group(backend)
        return cls(dist.get_rank(), dist.get_world_size(), solo_threads)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    @contextmanager
    def solo(self) -> Iterator[None]:
        """Run the body with ``solo_threads`` torch threads (see the class)."""
        if self.solo_threads is None:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.solo_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _fail_hook() -> Callable[[], None]:
    limit = os.environ.get(FAIL_ENV)
    done = [0]

    def committed() -> None:
        done[0] += 1
        if limit is not None and done[0] >= int(limit):
            raise RuntimeError(f"{FAIL_ENV}={limit}: stopping after {done[0]} chunks (test hook)")

    return committed


class RunState:
    """The files of one run under ``root`` (``OUT/.superact``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.pass1 = self.root / "pass1"
        self.fit = self.root / "fit"
        self.pass2 = self.root / "pass2"
        self.tag = uuid.uuid4().hex[:12]  # this process's collector file
        self.committed = _fail_hook()

    @classmethod
    def claim(cls, out: str | Path, doc: dict[str, Any], overwrite: bool = False) -> RunState:
        """Start or resume the run ``doc`` in ``out``.

        A ``run.json`` for a different command, or a non-empty ``out`` without
        one, is refused unless ``overwrite`` (which removes the old state).
        """
        out = Path(out)
        root = out / STATE_DIR
        run_json = root / "run.json"
        if overwrite:
            shutil.rmtree(root, ignore_errors=True)
        if run_json.is_file():
            try:
                old = json.loads(run_json.read_text())
            except json.JSONDecodeError:
                old = None
            if old != doc:
                raise InputError(f"--out {out}: {_difference(old, doc)}")
        elif any(out.iterdir()) and not overwrite:
            raise InputError(
                f"--out {out} is not empty and holds no superact run; choose an empty "
                "folder, or pass --overwrite to write into it"
            )
        root.mkdir(parents=True, exist_ok=True)
        tmp = run_json.with_name("run.json.tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, run_json)
        return cls(root)

    def clean(self) -> None:
        """Remove the temporary files a killed process left (call on rank 0 only)."""
        for sub in (self.pass1, self.fit, self.pass2):
            sub.mkdir(parents=True, exist_ok=True)
            for tmp in sub.glob("*.tmp"):
                tmp.unlink(missing_ok=True)

    def finish(self) -> None:
        """Remove the streamed state once the outputs are written (keep ``run.json``,
        so the same command on this ``--out`` is still recognised)."""
        for sub in (self.pass1, self.fit, self.pass2):
            shutil.rmtree(sub, ignore_errors=True)

    # ----------------------------------------------------------------- pass 1
    def chunk_path(self, pass_dir: Path, j: int) -> Path:
        return pass_dir / f"chunk-{j:05d}"

    def collector_files(self) -> list[Path]:
        return sorted(self.pass1.glob("collector-*.json"))

    def pass1_done(self) -> set[int]:
        done: set[int] = set()
        for path in self.collector_files():
            done.update(json.loads(path.read_text())["states"]["chunks"]["done"])
        return done

    def pass2_done(self, n_chunks: int) -> set[int]:
        return {
            j
            for j in range(n_chunks)
            if self.chunk_path(self.pass2, j).with_suffix(".json").is_file()
        }

    def fit_done(self) -> bool:
        return (self.fit / "done.json").is_file()


def _difference(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "its .superact/run.json is unreadable; pass --overwrite to start again"
    keys = [k for k in new["config"] if old.get("config", {}).get(k) != new["config"][k]]
    if old.get("dataset_sha256") != new["dataset_sha256"]:
        keys.append("dataset contents")
    if old.get("superact_lens_version") != new["superact_lens_version"]:
        keys.append("superact_lens version")
    return (
        f"holds a run of a different command (differs in: {', '.join(keys) or 'format'}); "
        "run the same command to resume it, or pass --overwrite to start again"
    )
