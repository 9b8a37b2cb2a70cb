"""Sense-tagged sentences from WordNet glosses, with per-word supersense readings.

Two kinds of real WordNet sentences are produced:

- ``example``: a quoted example of a synset's gloss, e.g. "the dog barked all
  night" (from ``dog``); the synset's own lemma, found in it by morphology, is
  a sense-tagged span of the synset's supersense.
- ``definition``: a synset's definition made into a sentence,
  "A bullfrog is a large frog of eastern North America." (nouns) or
  "To gallop is to ride at a gallop." (verbs); the lemma is the tagged span.

Every other (untagged) word is looked up in WordNet: ``mfs`` is the set of
supersenses of its most frequent noun/verb senses, ``shares`` the largest share
of a word's uses (SemCor counts, add-one smoothed) in each supersense.
Those sets decide which paragraphs a sentence may go in without adding label
noise, and measure the noise that remains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from superact_lens.data.wordnet_db import Synset, WordNet

__all__ = ["STOPWORDS", "Sentence", "extract_sentences"]

# Function words, auxiliaries and modals: their WordNet noun/verb readings
# ("can" the container, "may" the month, "i" iodine, "be" beryllium) are not
# what they mean in running text, so they are never counted as concept words.
STOPWORDS = frozenset(
    """a an the and or but if of in on at to for from by with without as is are was were be
    been being am do does did doing done have has had having will would shall should can could
    may might must ought i me my mine we us our you your he him his she her it its they them
    their this that these those there here who whom whose which what when where why how not no
    nor so too very than then also just only all any each every some such both either neither
    one ones s t d ll re ve m o up down out off over under again once into onto upon about
    above below between through during before after until while because although though
    whether yet even more most less least much many few other another same own""".split()
)

# words that refer to people without being WordNet nouns: they count as noun.person cues
PERSON_WORDS = frozenset(
    """i me my mine myself you your yours yourself he him his himself she her hers herself we
    us our ours ourselves they them their theirs themselves who whom whose someone somebody
    anyone anybody everyone everybody nobody""".split()
)
_WORD_RE = re.compile(r"[A-Za-z0-9]+")
_BAD_CHARS = re.compile(r"[<>\"_;|\[\]{}]")


@dataclass
class Sentence:
    """A sentence, its tagged lemma span and the supersense readings of its other words."""

    text: str
    kind: str  # "example" | "definition"
    lexname: str  # supersense of the synset it illustrates
    synset: str
    span: tuple[int, int] | None  # tagged lemma occurrence, or None if not found
    mfs: frozenset[str]  # supersenses of the most frequent senses of untagged words
    shares: dict[str, float]  # supersense -> largest share of an untagged word's uses in it
    words: tuple[str, ...]  # untagged content words, lower case; "word/n": noun readings only
    count: int = 0  # SemCor tag count of the synset's lemmas (how familiar the sense is)
    person_cue: bool = False  # a personal pronoun or a capitalised name outside the span


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _find_lemma(wn: WordNet, ss: Synset, text: str) -> tuple[int, int] | None:
    """First occurrence of one of the synset's lemmas (inflected allowed), as a char span."""
    lemmas = {lm.lower() for lm in ss.lemmas}
    pos = "v" if ss.pos == "v" else "n"
    words = list(_WORD_RE.finditer(text))
    for i in range(len(words)):
        for n in range(min(4, len(words) - i), 0, -1):
            group = words[i : i + n]
            gaps = [text[a.end() : b.start()] for a, b in zip(group, group[1:], strict=False)]
            if any(g not in (" ", "-") for g in gaps):
                continue
            parts = [w.group().lower() for w in group]
            surface = " ".join(parts)
            if surface in lemmas or text[group[0].start() : group[-1].end()].lower() in lemmas:
                return group[0].start(), group[-1].end()
            if ss.pos in ("n", "v"):
                inflect = -1 if pos == "n" else 0  # nouns inflect at the end, verbs at the head
                for base in wn.morphy(parts[inflect], pos) or []:
                    cand = list(parts)
                    cand[inflect] = base
                    if " ".join(cand) in lemmas:
                        return group[0].start(), group[-1].end()
    return None


_NOUN_CONTEXT = frozenset(
    "a an the his her their its my your our this these those of every each".split()
)


def _person_cue(text: str, span: tuple[int, int] | None) -> bool:
    for k, m in enumerate(_WORD_RE.finditer(text)):
        if span is not None and m.start() < span[1] and span[0] < m.end():
            continue
        w = m.group()
        if w.lower() in PERSON_WORDS or (k > 0 and w[0].isupper() and w.lower() not in STOPWORDS):
            return True
    return False


def _readings(wn: WordNet, text: str, span: tuple[int, int] | None, cache: dict):
    """Readings of the untagged words (after a determiner: noun readings only)."""
    mfs: set[str] = set()
    shares: dict[str, float] = {}
    words = []
    prev = ""
    for m in _WORD_RE.finditer(text):
        w = m.group().lower()
        pos = ("n",) if prev in _NOUN_CONTEXT else ("n", "v")
        prev = w
        if span is not None and m.start() < span[1] and span[0] < m.end():
            continue
        if w in STOPWORDS or len(w) < 2:
            continue
        if (w, pos) not in cache:
            cache[w, pos] = wn.readings(w, pos)
        word_mfs, word_shares = cache[w, pos]
        mfs |= word_mfs
        for lexname, share in word_shares.items():
            shares[lexname] = max(shares.get(lexname, 0.0), share)
        words.append(w if len(pos) == 2 else f"{w}/n")
    return frozenset(mfs), shares, tuple(words)


def _definition_sentence(ss: Synset, lemma: str) -> tuple[str, tuple[int, int]] | None:
    definition = re.sub(r"^\([^)]*\)\s*", "", ss.definition).split(";")[0].strip()
    n_words = len(definition.split())
    if not 3 <= n_words <= 25 or _BAD_CHARS.search(definition) or "(" in definition:
        return None
    if ss.pos == "n":
        first = definition.split()[0].lower()
        if first in ("a", "an"):  # "A bullfrog is a large frog ..."
            head = "An " if lemma[0] in "aeiou" else "A "
            text = _tidy(f"{head}{lemma} is {definition}")
        else:  # dictionary style: "Communication: the activity of communicating."
            head = ""
            text = _tidy(f"{lemma}: {definition}")
    elif ss.pos == "v":
        head = "To "
        text = _tidy(f"{head}{lemma} is to {definition}")
    else:
        return None
    return text, (len(head), len(head) + len(lemma))


def extract_sentences(wn: WordNet) -> list[Sentence]:
    """All usable example and definition sentences of WordNet, in a fixed order.

    Examples: 4-30 words, no markup characters. Definitions: nouns and verbs
    whose lemma is lower case (no proper names), 3-25 words, one clause.
    """
    cache: dict = {}
    out: list[Sentence] = []
    for key in sorted(wn.synsets):
        ss = wn.synsets[key]
        count = sum(wn.sense_count(ss, i) for i in range(len(ss.lemmas)))
        made: list[tuple[str, str, tuple[int, int] | None]] = []
        for example in ss.examples:
            if not _BAD_CHARS.search(example) and 4 <= len(example.split()) <= 30:
                text = _tidy(example)
                made.append(("example", text, _find_lemma(wn, ss, text)))
        lemma = next((lm for lm in ss.lemmas if lm.islower() and lm.isascii()), None)
        definition = _definition_sentence(ss, lemma) if lemma and ss.pos in "nv" else None
        if definition is not None:
            made.append(("definition", *definition))
        for kind, text, span in made:
            mfs, shares, words = _readings(wn, text, span, cache)
            cue = _person_cue(text, span)
            out.append(
                Sentence(text, kind, ss.lexname, ss.key, span, mfs, shares, words, count, cue)
            )
    return out
