"""Build the shipped ``wordnet-supersenses`` dataset from Princeton WordNet 3.0.

Concepts are WordNet lexicographer supersenses. Samples are paragraphs of 3-6
real WordNet sentences (gloss examples and definitions, see
:mod:`superact_lens.data.wordnet_sentences`); a concept is present where a
sense-tagged lemma of it is in the paragraph, and that lemma is its span.

Label noise is kept out of negatives: a sentence goes into a paragraph only if
every concept one of its untagged words *substantially* means (the word's most
frequent sense, or a sense with >= 25 % of its SemCor uses; pronouns and names
for noun.person) is labelled present in that paragraph. What remains (words
with a rarer sense in the concept) is measured and written to the README.

Run (deterministic for a given seed and WordNet folder)::

    python -m superact_lens.data.wordnet_build --wordnet-dir /usr/share/wordnet
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from superact_lens.data.dataset import SPLITS, TextDataset
from superact_lens.data.wordnet_sentences import Sentence, extract_sentences
from superact_lens.errors import InputError

__all__ = ["DEFAULT_CONCEPTS", "BuildConfig", "build_dataset", "main"]

DEFAULT_CONCEPTS: tuple[str, ...] = (
    "noun.animal", "noun.artifact", "noun.body", "noun.communication", "noun.feeling",
    "noun.food", "noun.location", "noun.person", "noun.plant", "noun.substance",
    "verb.communication", "verb.consumption", "verb.emotion", "verb.motion", "verb.perception",
)  # fmt: skip


@dataclass
class BuildConfig:
    """Knobs of the build; the defaults make the shipped dataset."""

    concepts: tuple[str, ...] = DEFAULT_CONCEPTS
    n_samples: int = 3000
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    sentences: tuple[int, int] = (4, 7)  # sentences per paragraph (min, max)
    max_rate: float = 0.15  # target share of paragraphs positive for a concept
    reuse: float = 2.0  # a positive sentence is used at most about this often per split
    p_definition: float = 0.5  # share of definition sentences (vs gloss examples), all roles
    min_share: float = 0.1  # a word "may well mean" a concept above this share of its uses
    seed: int = 0
    extra: dict = field(default_factory=dict)


def _hits(s: Sentence, chosen: frozenset[str], min_share: float) -> frozenset[str]:
    """Concepts an untagged word of ``s`` may well mean (most frequent sense or share)."""
    hits = set(s.mfs & chosen) | {c for c in chosen if s.shares.get(c, 0.0) >= min_share}
    if s.person_cue and "noun.person" in chosen:
        hits.add("noun.person")
    return frozenset(hits)


class _Pool:
    """Sentences grouped by the concept set they require; least-used-first sampling."""

    def __init__(
        self, items: list[tuple[int, frozenset[str]]], familiar: np.ndarray, is_def: np.ndarray
    ) -> None:
        self.familiar, self.is_def = familiar, is_def
        self.groups: dict[frozenset[str], list[int]] = defaultdict(list)
        for idx, need in items:
            self.groups[need].append(idx)
        self.size = len(items)

    def draw(
        self, allowed: frozenset[str], used: np.ndarray, rng: np.random.Generator, definition: bool
    ) -> int:
        """A sentence fitting a paragraph labelled ``allowed``: least used, familiar first,
        then of the requested kind (definition or example) where there is a choice."""
        cand = [
            i
            for k in range(len(allowed) + 1)
            for sub in combinations(sorted(allowed), k)
            for i in self.groups.get(frozenset(sub), [])
        ]
        if not cand:
            raise InputError(f"no sentence fits a paragraph labelled {sorted(allowed)}")
        arr = np.asarray(cand)
        priority = used[arr] + 0.5 * ~self.familiar[arr]
        best = arr[priority == priority.min()]
        if (self.is_def[best] == definition).any():
            best = best[self.is_def[best] == definition]
        return int(best[rng.integers(len(best))])


def build_dataset(sentences: list[Sentence], cfg: BuildConfig) -> tuple[TextDataset, dict]:
    """Compose paragraphs; return the dataset and a build report (counts, noise inputs)."""
    rng = np.random.default_rng(cfg.seed)
    chosen = frozenset(cfg.concepts)
    concepts = list(cfg.concepts)
    # familiar = the synset's lemmas are tagged in SemCor (everyday senses first)
    familiar = np.array([s.count > 0 for s in sentences], dtype=bool)
    is_def = np.array([s.kind == "definition" for s in sentences], dtype=bool)
    split_of = rng.choice(len(SPLITS), size=len(sentences), p=list(cfg.fractions))
    pools: dict[tuple[str, int], _Pool] = {}
    for s_i in range(len(SPLITS)):
        fill, pos = [], defaultdict(list)
        for i, s in enumerate(sentences):
            if split_of[i] != s_i:
                continue
            need = _hits(s, chosen, cfg.min_share)
            if s.lexname in chosen:
                if s.span is not None:
                    pos[s.lexname].append((i, need - {s.lexname}))
            else:
                fill.append((i, need))
        pools["filler", s_i] = _Pool(fill, familiar, is_def)
        for c in concepts:
            pools[c, s_i] = _Pool(pos[c], familiar, is_def)
    used = np.zeros(len(sentences), dtype=int)
    n_split = [int(round(f * cfg.n_samples)) for f in cfg.fractions[:2]]
    n_split.append(cfg.n_samples - sum(n_split))
    texts, spans, labels, splits, members = [], [], [], [], []
    targets: dict[str, dict[str, int]] = {c: {} for c in concepts}
    for s_i, split in enumerate(SPLITS):
        n = n_split[s_i]
        lab = np.zeros((n, len(concepts)), dtype=bool)
        for c_i, c in enumerate(concepts):
            t = int(min(cfg.max_rate * n, cfg.reuse * pools[c, s_i].size))
            targets[c][split] = t
            lab[rng.choice(n, size=t, replace=False), c_i] = True
        for row in lab:
            present = frozenset(concepts[c] for c in np.flatnonzero(row))
            chosen_ids = []
            for c in sorted(present):
                i = pools[c, s_i].draw(present, used, rng, rng.random() < cfg.p_definition)
                used[i] += 1
                chosen_ids.append((i, concepts.index(c)))
            lo, hi = cfg.sentences
            n_sent = max(int(rng.integers(lo, hi, endpoint=True)), len(chosen_ids) + 1)
            for _ in range(n_sent - len(chosen_ids)):
                i = pools["filler", s_i].draw(present, used, rng, rng.random() < cfg.p_definition)
                used[i] += 1
                chosen_ids.append((i, -1))
            order = rng.permutation(len(chosen_ids))
            text, sample_spans = "", []
            for k in order:
                i, c_i = chosen_ids[k]
                start = len(text) + (1 if text else 0)
                s = sentences[i]
                if c_i >= 0 and s.span is not None:
                    sample_spans.append((start + s.span[0], start + s.span[1], c_i))
                text = f"{text} {s.text}" if text else s.text
            texts.append(text)
            spans.append(sorted(sample_spans))
            labels.append(row)
            splits.append(split)
            members.append([chosen_ids[k] for k in order])
    paths = [f"paragraphs/{i:05d}.txt" for i in range(len(texts))]
    ds = TextDataset(
        "wordnet-supersenses", concepts, texts, np.array(labels), spans, np.array(splits), paths
    )
    report = {
        "targets": targets,
        "members": members,
        "pool_sizes": {c: {sp: pools[c, k].size for k, sp in enumerate(SPLITS)} for c in concepts},
        "filler_pool": {sp: pools["filler", k].size for k, sp in enumerate(SPLITS)},
        "max_reuse": int(used.max()),
        "positive_uses": [
            int(used[i]) for i in sorted({i for m in members for i, c in m if c >= 0})
        ],
    }
    return ds, report


def main(argv: list[str] | None = None) -> int:
    """Command line: build the dataset folder, its archive, README and LICENSE."""
    from superact_lens.data.loading import SHIPPED_DIR
    from superact_lens.data.wordnet_db import WordNet
    from superact_lens.data.wordnet_report import noise_report, write_release

    p = argparse.ArgumentParser(prog="python -m superact_lens.data.wordnet_build")
    p.add_argument("--wordnet-dir", default="/usr/share/wordnet", help="WordNet 3.0 dict folder")
    p.add_argument(
        "--out",
        default=str(SHIPPED_DIR / "wordnet-supersenses"),
        help="output folder (default: the package's shipped dataset folder)",
    )
    p.add_argument("--n-samples", type=int, default=BuildConfig.n_samples)
    p.add_argument("--seed", type=int, default=BuildConfig.seed)
    p.add_argument("--no-archive", action="store_true", help="write the plain folder instead")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    wn = WordNet(args.wordnet_dir)
    sentences = extract_sentences(wn)
    cfg = BuildConfig(
        n_samples=args.n_samples, seed=args.seed, extra={"wordnet_dir": args.wordnet_dir}
    )
    ds, report = build_dataset(sentences, cfg)
    noise = noise_report(ds, report["members"], sentences, wn, cfg.min_share)
    out = write_release(ds, cfg, report, noise, Path(args.out), archive=not args.no_archive)
    print(f"wrote {out} ({len(ds)} samples) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
