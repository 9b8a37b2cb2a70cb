"""Read and write the dataset folder format (``docs`` : INTERFACES.md section 1).

::

    DATASET/
      metadata.csv    one 0/1 column per concept, ``text_path`` (relative to
                      DATASET/), optional ``split`` in {train, cal, test}
      paragraphs/...  UTF-8 texts with inline <TAG>...</TAG> spans

Concept columns are the columns other than ``text_path``/``image_path``/
``split`` whose values are mostly 0/1; pass ``concepts=`` to name them
explicitly. Ignored columns are listed in ``meta["ignored_columns"]``.
A tag naming a concept marks a span of that concept; any other tag (e.g.
``<EMOTION>``) marks a span of every concept labelled 1 in that row.

Every problem is collected and raised at once as :class:`DatasetError`, each
line naming the row and file. A ``text_path`` listed on two rows is a problem
(the text would count twice, or leak from one split into another). Rows are
numbered from 1 = the first row after the header. A folder may also be given
as a ``.tar.gz``/``.tgz``/``.zip`` archive holding it.
"""

from __future__ import annotations

import csv
import io
import sys
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from superact_lens.data.dataset import SPLITS, DatasetError, TextDataset
from superact_lens.data.on_disk import FolderReader, digest
from superact_lens.data.packed import PackedSpans, PackedStrings
from superact_lens.data.source import Source, open_source, posix_key
from superact_lens.data.tags import normalize_name, parse_tagged, render_tagged

__all__ = ["read_dataset_folder", "stratified_split", "write_dataset_folder"]

RESERVED = {"text_path", "image_path", "split"}
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


class _CsvRows:
    """The rows of ``metadata.csv`` as dicts, parsed afresh on every iteration: the
    loader reads them twice (concept columns, then rows), and 10^5 dicts held at
    once cost ~40 MB that the process would not give back."""

    def __init__(self, raw: str, header: list[str]) -> None:
        self._raw, self._header = raw, header
        self._n = sum(1 for _ in self)

    def __iter__(self) -> Iterator[dict]:
        reader = csv.DictReader(io.StringIO(self._raw))
        _ = reader.fieldnames  # reads the header line
        reader.fieldnames = self._header
        return iter(reader)

    def __len__(self) -> int:
        return self._n


def _read_metadata(src: Source, src_name: str) -> tuple[list[str], _CsvRows]:
    """Header (stripped names) and rows of ``metadata.csv``; :class:`DatasetError` if unusable."""
    try:
        raw = src.read_bytes("metadata.csv").decode("utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(["missing metadata.csv"], src_name) from None
    except UnicodeDecodeError as err:
        raise DatasetError([f"metadata.csv is not valid UTF-8 ({err.reason})"], src_name) from None
    reader = csv.DictReader(io.StringIO(raw))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise DatasetError(["metadata.csv is empty (no header)"], src_name)
    rows = _CsvRows(raw, header)
    if not len(rows):
        raise DatasetError(["metadata.csv has no rows"], src_name)
    return header, rows


def _parse_flag(value: str | None) -> bool | None:
    v = (value or "").strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def _concept_columns(header: list[str], rows: _CsvRows, concepts: Sequence[str] | None):
    """Concept columns: given explicitly, or columns whose values are mostly (> 50 %) 0/1.

    A concept column with a few bad values is thus still a concept column, and
    its bad rows are reported instead of the column being ignored silently.
    """
    if concepts is not None:
        return list(concepts), [f"missing column '{c}'" for c in concepts if c not in header]
    found = []
    for col in header:
        if col in RESERVED or not col:
            continue
        flags = [_parse_flag(r.get(col)) for r in rows]
        if rows and sum(f is not None for f in flags) > 0.5 * len(rows):
            found.append(col)
    return found, [] if found else ["no concept column (a column of 0/1 values) found"]


def _concept_lookup(
    header: list[str],
    rows: _CsvRows,
    concepts: Sequence[str] | None,
    problems: list[str],
    src_name: str,
) -> tuple[list[str], dict[str, int]]:
    """The concept columns and their index by normalised name (:func:`normalize_name`).

    Raises :class:`DatasetError` with ``problems`` (the header's, so far) and the
    column problems when the header is unusable; a name collision is added to
    ``problems`` (the rows are still checked).
    """
    cols, col_problems = _concept_columns(header, rows, concepts)
    problems += [f"metadata.csv: {p}" for p in col_problems]
    if problems:
        raise DatasetError(problems, src_name)
    lookup = {normalize_name(c): i for i, c in enumerate(cols)}
    if len(lookup) < len(cols):
        problems.append("metadata.csv: concept names collide once case, space, _ and - are ignored")
    return cols, lookup


def _row_labels(
    row: dict, cols: list[str], has_split: bool, labels: np.ndarray
) -> tuple[str, list[str]]:
    """Read one row's 0/1 concept columns into ``labels`` (its row of the label array).

    Returns its split (lower case; ``""`` without a ``split`` column) and its
    problems, without the row prefix.
    """
    problems = []
    for j, c in enumerate(cols):
        flag = _parse_flag(row.get(c))
        if flag is None:
            problems.append(f"column '{c}': expected 0 or 1, got {row.get(c)!r}")
        labels[j] = bool(flag)
    split = (row.get("split") or "").strip().lower() if has_split else ""
    if has_split and split not in SPLITS:
        problems.append(f"unknown split {row.get('split')!r} (expected train, cal, test)")
    return split, problems


def _finish_splits(
    header: list[str],
    cols: list[str],
    labels: np.ndarray,
    splits: list[str],
    has_split: bool,
    seed: int,
    problems: list[str],
    src_name: str,
) -> tuple[np.ndarray, dict]:
    """The split array (the ``split`` column, or :func:`stratified_split` by ``seed``)
    and the shared ``meta`` entries; raises :class:`DatasetError` with every problem.

    Concept-level checks run even when rows are bad, so one pass reports everything.
    """
    split_arr = np.asarray(splits) if has_split else stratified_split(labels, seed)
    for j, c in enumerate(cols):
        for s in ("train", "cal"):
            if not labels[split_arr == s, j].any():
                problems.append(f"concept '{c}': no positive sample in {s}")
    if problems:
        raise DatasetError(problems, src_name)
    meta = {
        "split_source": "column" if has_split else f"seed {seed}",
        "ignored_columns": [h for h in header if h not in RESERVED and h not in cols],
    }
    return split_arr, meta


def stratified_split(
    labels: np.ndarray, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> np.ndarray:
    """Deterministic split of ``labels [n, C]`` into train/cal/test, stratified by concept.

    Each sample is grouped by its rarest positive concept (or "none"), and each
    group is shuffled with ``seed`` and cut by ``fractions``, so every concept
    with at least 3 positives has one in every split.
    """
    labels = np.asarray(labels, dtype=bool)
    n = labels.shape[0]
    rng = np.random.default_rng(seed)
    freq = labels.sum(0)
    key = np.full(n, -1)
    for i in range(n):
        pos = np.flatnonzero(labels[i])
        if len(pos):
            key[i] = pos[np.argmin(freq[pos])]
    out = np.empty(n, dtype=object)
    for k in np.unique(key):
        idx = rng.permutation(np.flatnonzero(key == k))
        m = len(idx)
        n_cal = max(int(round(fractions[1] * m)), 1 if m >= 2 else 0)
        n_test = max(int(round(fractions[2] * m)), 1 if m >= 3 else 0)
        n_train = m - n_cal - n_test
        out[idx[:n_train]] = "train"
        out[idx[n_train : n_train + n_cal]] = "cal"
        out[idx[n_train + n_cal :]] = "test"
    return out.astype(str)


def _repeated_rows(paths: Sequence[str], key_hashes: array) -> list[tuple[int, int]]:
    """``(row, first row)`` (0-based) for each row whose normalised path an earlier row
    lists. Only rows whose key hash is shared are compared by key: a dict of 10^5
    path strings would stay resident among the load's freed temporaries."""
    h = np.frombuffer(key_hashes, dtype=np.int64)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    first: dict[str, int] = {}
    repeated = []
    for r in np.flatnonzero((counts[inverse] > 1) & (h != 0)).tolist():
        key = posix_key(paths[r])
        if key in first:
            repeated.append((r, first[key]))
        first.setdefault(key, r)
    return repeated


def _parse_text(
    tagged: str, labels: np.ndarray, cols: list[str], lookup: dict[str, int]
) -> tuple[str, list[tuple[int, int, int]], list[str], list[str]]:
    """One file's stripped text, its sorted concept spans, problems and warnings.

    ``labels`` is the row's 0/1 concept flags: a tag naming a concept must have
    its column set; any other tag marks a span of every concept set in the row."""
    text, tagged_spans, problems = parse_tagged(tagged)
    warnings: list[str] = []
    if not text.strip():
        problems.append("empty text")
    spans: list[tuple[int, int, int]] = []
    for sp in tagged_spans:
        c = lookup.get(normalize_name(sp.tag))
        if c is not None:
            if not labels[c]:
                problems.append(f"span tagged <{sp.tag}> but column '{cols[c]}' is 0")
            spans.append((sp.start, sp.end, c))
        else:
            on = np.flatnonzero(labels)
            if not len(on):
                warnings.append(f"tag <{sp.tag}> in a row with no concept")
            spans += [(sp.start, sp.end, int(c)) for c in on]
    return text, sorted(set(spans)), problems, warnings


class _RowParse:
    """Row ``r``'s text and spans from its file's tagged text (what
    :class:`~superact_lens.data.on_disk.FolderReader` calls; a class, so it pickles)."""

    def __init__(self, labels: np.ndarray, cols: list[str], lookup: dict[str, int]) -> None:
        self.labels, self.cols, self.lookup = labels, cols, lookup

    def __call__(self, r: int, tagged: str) -> tuple[str, list[tuple[int, int, int]]]:
        text, spans, _, _ = _parse_text(tagged, self.labels[r], self.cols, self.lookup)
        return text, spans


def read_dataset_folder(
    folder: str | Path,
    seed: int = 0,
    concepts: Sequence[str] | None = None,
    name: str | None = None,
    texts_on_disk: bool = False,
) -> TextDataset:
    """Load a dataset folder (or archive of one); raise :class:`DatasetError` listing all problems.

    Args:
        folder: the folder holding ``metadata.csv``, or a .tar.gz/.zip of it.
        seed: seed of the stratified split used when there is no ``split`` column.
        concepts: concept column names; by default the 0/1 columns.
        name: name of the dataset (default: the folder path).
        texts_on_disk: keep texts and spans in the folder: every file is read and
            checked now, then read again whenever its text or spans are asked for
            (:mod:`superact_lens.data.on_disk`), so memory holds paths, labels and an
            8-byte digest per sample, not the texts. Ignored for an archive, which
            is read into memory anyway.
    """
    src, src_name = open_source(folder, name)
    on_disk = texts_on_disk and src.is_folder
    digests, lengths = array("Q"), array("q")  # of each file, when left on disk
    header, rows = _read_metadata(src, src_name)
    problems: list[str] = []
    if "text_path" not in header:
        if "image_path" in header:
            problems.append(
                "image datasets (image_path) are read by superact_lens.data.read_image_folder"
            )
        problems.append("metadata.csv: missing column 'text_path'")
    cols, lookup = _concept_lookup(header, rows, concepts, problems, src_name)
    has_split = "split" in header
    # packed: 10^5 small objects would stay resident among the load's freed temporaries
    texts, spans, paths = PackedStrings(), PackedSpans(), PackedStrings()
    splits: list[str] = []
    labels = np.zeros((len(rows), len(cols)), dtype=bool)
    warnings: list[str] = []
    key_hashes = array("q")  # hash of each row's normalised text_path (0: none)
    for r, row in enumerate(rows, start=1):
        rel = (row.get("text_path") or "").strip()
        where = f"metadata.csv row {r} (file {rel or '?'})"
        row_problems = []
        key_hashes.append((hash(posix_key(rel)) or 1) if rel else 0)
        split, label_problems = _row_labels(row, cols, has_split, labels[r - 1])
        row_problems += label_problems
        text, sample_spans = "", list[tuple[int, int, int]]()
        if not rel:
            row_problems.append("missing text_path")
        else:
            try:
                raw = src.read_bytes(rel)
                tagged = raw.decode("utf-8-sig")
            except FileNotFoundError:
                row_problems.append("file not found")
            except (OSError, UnicodeDecodeError) as err:
                row_problems.append(f"unreadable file ({type(err).__name__}: {err})")
            else:
                text, sample_spans, parse_problems, parse_warnings = _parse_text(
                    tagged, labels[r - 1], cols, lookup
                )
                row_problems += parse_problems
                warnings += [f"{where}: {w}" for w in parse_warnings]
                if on_disk:
                    digests.append(digest(raw))
                    lengths.append(len(text))
        problems += [f"{where}: {p}" for p in row_problems]
        if not on_disk:
            texts.append(text)
            spans.append(sample_spans)
        paths.append(rel)
        splits.append(sys.intern(split))  # one str per split name, not per row
    # one text twice would be counted twice, or leak between splits
    problems += [
        f"metadata.csv row {r + 1} (file {paths[r]}): text_path also listed in row {first + 1}"
        for r, first in _repeated_rows(paths, key_hashes)
    ]
    split_arr, meta = _finish_splits(
        header, cols, labels, splits, has_split, seed, problems, src_name
    )
    meta = {"warnings": warnings, **meta}
    if not on_disk:
        return TextDataset(src_name, cols, texts, labels, spans, split_arr, paths, meta)

    parse = _RowParse(labels, cols, lookup)
    reader = FolderReader(src.read_bytes, paths, digests, lengths, parse, src_name)
    return TextDataset(
        src_name, cols, reader.texts(), labels, reader.spans(), split_arr, paths, meta
    )


def write_dataset_folder(ds: TextDataset, folder: str | Path, subdir: str = "paragraphs") -> Path:
    """Write ``ds`` in the folder format (concept-named tags), return the folder.

    Samples go to ``<subdir>/<index>.txt``; ``metadata.csv`` has ``text_path``,
    ``split`` and one column per concept.
    """
    folder = Path(folder)
    (folder / subdir).mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(ds))))
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text_path", "split", *ds.concepts])
        for i in range(len(ds)):
            rel = f"{subdir}/{i:0{width}d}.txt"
            tagged = render_tagged(ds.texts[i], [(s, e, ds.concepts[c]) for s, e, c in ds.spans[i]])
            (folder / rel).write_text(tagged, encoding="utf-8")
            w.writerow([rel, ds.splits[i], *(int(v) for v in ds.labels[i])])
    return folder
