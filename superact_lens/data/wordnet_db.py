"""A minimal reader of the Princeton WordNet 3.0 database files (as in Debian ``wordnet-base``).

Reads ``data.{noun,verb,adj,adv}`` (synsets, lexicographer file, lemmas,
gloss = definition + quoted example sentences), ``index.{noun,verb}`` (senses
of a lemma in frequency order: the first is the most frequent sense),
``{noun,verb}.exc`` (irregular forms) and ``cntlist.rev`` (SemCor tag counts
per sense). Format: wndb(5WN), lexnames(5WN), cntlist(5WN).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from superact_lens.errors import InputError

__all__ = ["LEXNAMES", "Synset", "WordNet"]

# lexnames(5WN): lexicographer file number -> supersense name
LEXNAMES: tuple[str, ...] = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)  # fmt: skip
_SS_NUM = {"n": 1, "v": 2, "a": 3, "r": 4, "s": 5}
# wndb(5WN) "morphy" detachment rules
_RULES = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
          ("ing", "e"), ("ing", "")),
}  # fmt: skip


@dataclass(frozen=True)
class Synset:
    """One synset: ``pos`` in n/v/a/s/r, supersense ``lexname``, lemmas (spaces, as written)."""

    offset: int
    pos: str
    lexname: str
    lemmas: tuple[str, ...]
    lex_ids: tuple[int, ...]
    definition: str
    examples: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.pos}{self.offset:08d}"


def _parse_data_line(line: str) -> Synset | None:
    if line.startswith(" ") or " | " not in line:
        return None
    head, gloss = line.rstrip("\n").split(" | ", 1)
    parts = head.split()
    offset, lexfn, pos, n_words = int(parts[0]), int(parts[1]), parts[2], int(parts[3], 16)
    words = parts[4 : 4 + 2 * n_words : 2]
    lex_ids = tuple(int(x, 16) for x in parts[5 : 5 + 2 * n_words : 2])
    lemmas = tuple(re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in words)
    examples = tuple(e.strip() for e in re.findall(r'"([^"]+)"', gloss))
    definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
    return Synset(offset, pos, LEXNAMES[lexfn], lemmas, lex_ids, definition, examples)


class WordNet:
    """Synsets, lemma index and morphology of one WordNet database folder."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        missing = [
            f
            for f in ("data.noun", "data.verb", "index.noun", "index.verb")
            if not (folder / f).is_file()
        ]
        if missing:
            raise InputError(
                f"wordnet_dir: {folder} lacks {', '.join(missing)} "
                "(install the Debian package wordnet-base: files in /usr/share/wordnet)"
            )
        self.synsets: dict[str, Synset] = {}
        for name in ("noun", "verb", "adj", "adv"):
            path = folder / f"data.{name}"
            if not path.is_file():
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    ss = _parse_data_line(line)
                    if ss is not None:
                        self.synsets[ss.key] = ss
        # lemma -> synset keys in sense-number order (first = most frequent sense)
        self.index: dict[str, dict[str, list[str]]] = {"n": {}, "v": {}}
        for pos, name in (("n", "noun"), ("v", "verb")):
            with open(folder / f"index.{name}", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith(" "):
                        continue
                    parts = line.split()
                    p_cnt = int(parts[3])
                    offsets = parts[6 + p_cnt :]
                    self.index[pos][parts[0].replace("_", " ")] = [f"{pos}{o}" for o in offsets]
        self.exceptions: dict[str, dict[str, list[str]]] = {"n": {}, "v": {}}
        for pos, name in (("n", "noun"), ("v", "verb")):
            path = folder / f"{name}.exc"
            if path.is_file():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        self.exceptions[pos][parts[0].replace("_", " ")] = parts[1:]
        self.sense_counts: dict[str, int] = {}
        path = folder / "cntlist.rev"
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 3:
                    self.sense_counts[parts[0]] = int(parts[2])

    def sense_count(self, ss: Synset, lemma_index: int) -> int:
        """SemCor tag count of one lemma of ``ss`` (0 when untagged or for satellites)."""
        lemma = ss.lemmas[lemma_index].lower().replace(" ", "_")
        lexfn = LEXNAMES.index(ss.lexname)
        key = f"{lemma}%{_SS_NUM[ss.pos]}:{lexfn:02d}:{ss.lex_ids[lemma_index]:02d}::"
        return self.sense_counts.get(key, 0)

    def morphy(self, word: str, pos: str) -> list[str]:
        """Base forms of ``word`` (lower case) that are lemmas of ``pos`` ("n" or "v")."""
        index = self.index[pos]
        out = [b for b in self.exceptions[pos].get(word, []) if b in index]
        if word in index:
            out.append(word)
        for suffix, repl in _RULES[pos]:
            if word.endswith(suffix) and len(word) > len(suffix):
                base = word[: len(word) - len(suffix)] + repl
                if base in index:
                    out.append(base)
        return list(dict.fromkeys(out))

    def senses(self, base: str, pos: str) -> list[tuple[str, int]]:
        """``(supersense, SemCor count)`` of each sense of a lemma, in sense order."""
        out = []
        for key in self.index[pos].get(base, []):
            ss = self.synsets[key]
            lowered = [lm.lower() for lm in ss.lemmas]
            i = lowered.index(base) if base in lowered else 0
            out.append((ss.lexname, self.sense_count(ss, i)))
        return out

    def readings(self, word: str, pos: tuple[str, ...] = ("n", "v")) -> tuple[set[str], dict]:
        """Supersenses a surface word may carry, over its readings in ``pos``.

        Returns ``(most_frequent, shares)``: the supersense of the sense with the
        highest SemCor count over all readings (the first sense of each part of
        speech when nothing is tagged), and for every supersense the word has a
        sense in, the share of its uses there (SemCor counts, add-one smoothed).
        """
        senses = [sn for p in pos for base in self.morphy(word, p) for sn in self.senses(base, p)]
        if not senses:
            return set(), {}
        if sum(c for _, c in senses):
            mfs = {max(senses, key=lambda sn: sn[1])[0]}
        else:
            mfs = {self.senses(b, p)[0][0] for p in pos for b in self.morphy(word, p)[:1]}
        total = sum(c + 1 for _, c in senses)
        shares: dict[str, float] = {}
        for lexname, c in senses:
            shares[lexname] = shares.get(lexname, 0.0) + (c + 1) / total
        return mfs, shares
