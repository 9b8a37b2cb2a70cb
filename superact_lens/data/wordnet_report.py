"""Label-noise measurement and release files (README, LICENSE, archive) of wordnet-supersenses."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from superact_lens.data.dataset import SPLITS, TextDataset
from superact_lens.data.folder import write_dataset_folder
from superact_lens.data.wordnet_sentences import Sentence

__all__ = ["WORDNET_LICENSE", "noise_report", "write_release"]

WORDNET_LICENSE = """\
WordNet Release 3.0

This software and database is being provided to you, the LICENSEE, by
Princeton University under the following license.  By obtaining, using
and/or copying this software and database, you agree that you have
read, understood, and will comply with these terms and conditions.:

Permission to use, copy, modify and distribute this software and
database and its documentation for any purpose and without fee or
royalty is hereby granted, provided that you agree to comply with
the following copyright notice and statements, including the disclaimer,
and that the same appear on ALL copies of the software, database and
documentation, including modifications that you make for internal
use or for distribution.

WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR
IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON
UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES OF MERCHANT-
ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE
OF THE LICENSED SOFTWARE, DATABASE OR DOCUMENTATION WILL NOT
INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR
OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in
advertising or publicity pertaining to distribution of the software
and/or database.  Title to copyright in this software, database and
any associated documentation shall at all times remain with
Princeton University and LICENSEE agrees to preserve same.
"""


def noise_report(
    ds: TextDataset, members: list, sentences: list[Sentence], wn, min_share: float = 0.1
) -> dict:
    """Per concept, how often a paragraph labelled *absent* still has a word that may mean it.

    For each concept ``c`` and its negative paragraphs: ``mfs`` share with an
    untagged word whose most frequent sense is in ``c``; ``substantial`` with
    at least ``min_share`` of the word's (smoothed SemCor) uses in ``c`` (both
    0 by construction); ``any_sense`` with a word having any noun/verb sense in
    ``c`` (an upper bound on the remaining noise); ``expected``: the mean
    chance that a negative holds a word meaning ``c`` when each word takes
    its senses with their (add-one smoothed) SemCor frequencies; ``hard_negatives`` with a
    sense-tagged lemma of another supersense that also has a sense in ``c``
    (correctly labelled, lexically confusable). For positives,
    ``untagged_in_positive``: share with an extra untagged word substantially
    meaning ``c`` (tokens the mask misses).
    """
    cache: dict[str, tuple[set, dict]] = {}

    def readings(word: str) -> tuple[set, dict]:
        if word not in cache:
            w, _, tag = word.partition("/")
            cache[word] = wn.readings(w, ("n",) if tag == "n" else ("n", "v"))
        return cache[word]

    out = {}
    for c_i, c in enumerate(ds.concepts):
        neg = np.flatnonzero(~ds.labels[:, c_i])
        pos = np.flatnonzero(ds.labels[:, c_i])
        counts: Counter[str] = Counter()
        offenders: Counter[str] = Counter()
        expected = 0.0
        for p in neg:
            flags = set()
            p_clean = 1.0
            for s_i, _ in members[p]:
                s = sentences[s_i]
                for w in s.words:
                    mfs, shares = readings(w)
                    if c in mfs:
                        flags.add("mfs")
                    if shares.get(c, 0.0) >= min_share:
                        flags.add("substantial")
                    if c in shares:
                        flags.add("any_sense")
                        offenders[w.partition("/")[0]] += 1
                        p_clean *= 1.0 - shares[c]
                if c == "noun.person" and s.person_cue:
                    flags.add("person_cue")
                if s.span is not None and c in readings(s.text[s.span[0] : s.span[1]].lower())[1]:
                    flags.add("hard_negatives")
            counts.update(flags)
            expected += 1.0 - p_clean
        extra = sum(
            any(sentences[s_i].shares.get(c, 0.0) >= min_share for s_i, _ in members[p])
            for p in pos
        )
        out[c] = {
            "negatives": len(neg),
            **{k: round(counts[k] / max(len(neg), 1), 4) for k in ("mfs", "substantial")},
            "any_sense": round(counts["any_sense"] / max(len(neg), 1), 4),
            "expected": round(expected / max(len(neg), 1), 4),
            "hard_negatives": round(counts["hard_negatives"] / max(len(neg), 1), 4),
            "untagged_in_positive": round(extra / max(len(pos), 1), 4),
            "top_any_sense_words": [w for w, _ in offenders.most_common(6)],
        }
        if c == "noun.person":
            out[c]["person_cue"] = round(counts["person_cue"] / max(len(neg), 1), 4)
    return out


def _readme(ds: TextDataset, cfg, report: dict, noise: dict, sources: dict[str, str]) -> str:
    rows = []
    for c_i, c in enumerate(ds.concepts):
        pos = [int(ds.labels[ds.splits == s, c_i].sum()) for s in SPLITS]
        nz = noise[c]
        cells = [c, *map(str, pos)]
        cells += [f"{nz[k]:.3f}" for k in ("mfs", "substantial", "expected", "any_sense")]
        cells += [f"{nz[k]:.3f}" for k in ("hard_negatives", "untagged_in_positive")]
        cells.append(", ".join(nz["top_any_sense_words"][:4]))
        rows.append("| " + " | ".join(cells) + " |")
    n = {s: int((ds.splits == s).sum()) for s in SPLITS}
    uses = report["positive_uses"]
    min_pool = min(min(v.values()) for v in report["pool_sizes"].values())
    src = "\n".join(f"- `{k}` sha256 `{v}`" for k, v in sources.items())
    return f"""# wordnet-supersenses

Paragraphs of real Princeton WordNet 3.0 sentences with sense-tagged spans of
{len(ds.concepts)} WordNet lexicographer supersenses (concepts). Built by
`python -m superact_lens.data.wordnet_build --wordnet-dir /usr/share/wordnet`
(Debian package `wordnet-base`), seed {cfg.seed}.

- Samples: {len(ds)} paragraphs of {cfg.sentences[0]}-{cfg.sentences[1]} sentences;
  train {n["train"]}, cal {n["cal"]}, test {n["test"]}.
- Concepts: {", ".join(ds.concepts)}.

  Supersenses with enough sense-tagged
  material (every one has at least {min_pool} distinct positive sentences in its
  smallest split), from concrete (animal, plant, food, substance, body) to
  abstract (feeling, communication) and verbs. Left out: the broad classes
  whose words are everywhere (noun.act, noun.attribute, noun.cognition,
  noun.state, noun.group, noun.time, verb.stative, verb.change, verb.social,
  verb.possession), where clean negatives are nearly impossible, and the tiny
  ones (verb.weather, noun.motive, noun.shape, noun.Tops).
- Sentences: example sentences of WordNet glosses and definition sentences
  ("A bullfrog is a large frog ...", "Mess: soft semiliquid food.",
  "To gallop is to ride at a gallop."); both kinds appear in positives and
  negatives in equal measure where the material allows. Each sentence belongs
  to one split, so no sentence is shared between splits. Positive sentences:
  {len(uses)} distinct, used {np.mean(uses):.2f} times on average (at most
  {max(uses)}) within their split; any sentence at most {report["max_reuse"]} times.
- Span: the synset's own lemma in its example or definition, tagged
  `<supersense>lemma</supersense>`; a paragraph is labelled with the
  supersenses of its tagged lemmas.
- Clean negatives: a sentence enters a paragraph only if every chosen
  supersense that one of its untagged words may well mean (its most frequent
  sense, or at least {cfg.min_share:.0%} of its SemCor uses; for noun.person also
  personal pronouns and capitalised names) is labelled present there.

## Positives and measured label noise

Noise columns are shares of the concept's NEGATIVE paragraphs containing an
untagged word whose most frequent sense (`mfs`) / at least {cfg.min_share:.0%} of its
uses (`share`; SemCor counts, add-one smoothed) / any noun or verb sense (`any`,
an upper bound) is in the supersense. `expected` is the estimated share of
negatives that really contain the supersense if every untagged word takes its
senses with those frequencies (1 - prod(1 - share) per paragraph, averaged).
`hard` = negatives with a sense-tagged lemma of another supersense that also
has a sense in this one (correct labels, lexically confusable). `extra+` =
positives with an additional untagged word of the supersense (tokens outside
the mask).

| concept | train | cal | test | mfs | share | expected | any | hard | extra+ | top `any` words |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## Source and licence

WordNet 3.0, Copyright 2006 by Princeton University, distributed under the
WordNet 3.0 licence (see `LICENSE`, which must accompany all copies). Files used:

{src}
"""


def _deterministic_tar(folder: Path, archive: Path) -> None:
    with open(archive, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    data = path.read_bytes()
                    info = tarfile.TarInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tf.addfile(info, io.BytesIO(data))


def write_release(
    ds: TextDataset, cfg, report: dict, noise: dict, out: Path, archive: bool = True
) -> Path:
    """Write the dataset folder (or ``<out>/<name>.tar.gz`` of it) with README.md and LICENSE."""
    wn_dir = Path(cfg.extra.get("wordnet_dir", "/usr/share/wordnet"))
    sources = {
        f: hashlib.sha256((wn_dir / f).read_bytes()).hexdigest()[:16]
        for f in ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "index.verb")
        if (wn_dir / f).is_file()
    }
    readme = _readme(ds, cfg, report, noise, sources)
    out.mkdir(parents=True, exist_ok=True)
    if not archive:
        write_dataset_folder(ds, out)
        (out / "README.md").write_text(readme, encoding="utf-8")
        (out / "LICENSE").write_text(WORDNET_LICENSE, encoding="utf-8")
        return out
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ds.name
        write_dataset_folder(ds, folder)
        (folder / "README.md").write_text(readme, encoding="utf-8")
        (folder / "LICENSE").write_text(WORDNET_LICENSE, encoding="utf-8")
        target = out / f"{ds.name}.tar.gz"
        _deterministic_tar(folder, target)
    (out / "README.md").write_text(readme, encoding="utf-8")
    (out / "LICENSE").write_text(WORDNET_LICENSE, encoding="utf-8")
    return target
