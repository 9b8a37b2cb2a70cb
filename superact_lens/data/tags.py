"""Inline span markup: ``<TAG>...</TAG>`` -> stripped text + character spans.

Tag names start with a letter or ``_`` and may contain letters, digits, ``_``,
``-``, ``.`` and spaces (so ``<noun.animal>`` and ``<Joy>`` are both tags).
Tags may nest (``<a>x <b>y</b></a>``) but not cross (``<a>x <b>y</a></b>``).
Names compare case-insensitively with space, ``_`` and ``-`` equivalent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from superact_lens.errors import InputError

__all__ = ["TAG_RE", "TaggedSpan", "normalize_name", "parse_tagged", "render_tagged"]

TAG_RE = re.compile(r"<(/?)([A-Za-z_][A-Za-z0-9_.\- ]*)>")


def normalize_name(name: str) -> str:
    """Canonical form of a tag or concept name: lower case, runs of space/_/- -> ``_``."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


@dataclass(frozen=True)
class TaggedSpan:
    """One tagged span of the stripped text (half-open, surrounding spaces trimmed)."""

    start: int
    end: int
    tag: str  # as written in the file


def parse_tagged(text: str) -> tuple[str, list[TaggedSpan], list[str]]:
    """Strip tags from ``text``.

    Returns:
        ``(stripped, spans, problems)``; ``problems`` is empty when the markup is
        well formed (balanced and properly nested). Spans are trimmed of
        leading/trailing whitespace, so a token made of the space before a word
        (SentencePiece ``▁``) does not count as in-concept.
    """
    out: list[str] = []
    pos_out = 0
    last = 0
    stack: list[tuple[str, str, int]] = []  # (normalised name, raw name, start in stripped)
    spans: list[TaggedSpan] = []
    problems: list[str] = []
    for m in TAG_RE.finditer(text):
        chunk = text[last : m.start()]
        out.append(chunk)
        pos_out += len(chunk)
        last = m.end()
        closing, raw = m.group(1) == "/", m.group(2).strip()
        key = normalize_name(raw)
        if not closing:
            stack.append((key, raw, pos_out))
            continue
        if stack and stack[-1][0] == key:
            _, raw_open, start = stack.pop()
            spans.append(TaggedSpan(start, pos_out, raw_open))
        elif any(k == key for k, _, _ in stack):
            problems.append(f"crossing tags: </{raw}> closes while <{stack[-1][1]}> is open")
            # recover: close the innermost matching tag, leave the ones opened after it open
            j = max(i for i, (k, _, _) in enumerate(stack) if k == key)
            _, raw_open, start = stack.pop(j)
            spans.append(TaggedSpan(start, pos_out, raw_open))
        else:
            problems.append(f"unbalanced tag: </{raw}> without a matching <{raw}>")
    out.append(text[last:])
    for _, raw, _ in stack:
        problems.append(f"unbalanced tag: <{raw}> is never closed")
    stripped = "".join(out)
    trimmed = []
    for sp in spans:
        start, end = sp.start, sp.end
        while start < end and stripped[start].isspace():
            start += 1
        while end > start and stripped[end - 1].isspace():
            end -= 1
        trimmed.append(TaggedSpan(start, end, sp.tag))
    trimmed.sort(key=lambda s: (s.start, -s.end))
    return stripped, trimmed, problems


def render_tagged(text: str, spans: list[tuple[int, int, str]]) -> str:
    """Inverse of :func:`parse_tagged`: insert ``<tag>``/``</tag>`` around spans.

    Spans must nest or be disjoint; crossing spans raise ``ValueError``.
    """
    ordered = sorted(spans, key=lambda s: (s[0], -s[1]))
    for i, (s1, e1, _) in enumerate(ordered):
        for s2, e2, _ in ordered[i + 1 :]:
            if s2 >= e1:
                break
            if e2 > e1:
                raise InputError(f"spans: ({s1}, {e1}) and ({s2}, {e2}) cross; cannot write tags")
    inserts: list[tuple[int, int, int, str]] = []  # (position, kind, order, tag text)
    for rank, (start, end, tag) in enumerate(ordered):
        if start == end:
            continue  # a zero-width span carries no text
        # at one position, closing tags (inner first) come before opening tags (outer first)
        inserts.append((start, 1, rank, f"<{tag}>"))
        inserts.append((end, 0, -rank, f"</{tag}>"))
    inserts.sort()
    pieces, last = [], 0
    for pos, _, _, tag_text in inserts:
        pieces.append(text[last:pos])
        pieces.append(tag_text)
        last = pos
    pieces.append(text[last:])
    return "".join(pieces)
