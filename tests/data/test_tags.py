"""Inline tag parsing and rendering."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.data.tags import normalize_name, parse_tagged, render_tagged


def test_normalize_name() -> None:
    assert normalize_name(" Noun.Animal ") == "noun.animal"
    assert normalize_name("verb-motion") == normalize_name("Verb Motion") == "verb_motion"


def test_parse_reports_unbalanced_and_crossing() -> None:
    assert parse_tagged("a <x>b</x> c")[2] == []
    assert parse_tagged("a <x>b")[2] == ["unbalanced tag: <x> is never closed"]
    assert parse_tagged("a </x>b")[2] == ["unbalanced tag: </x> without a matching <x>"]
    text, spans, problems = parse_tagged("<x>a <y>b</x> c</y>")
    assert problems == ["crossing tags: </x> closes while <y> is open"]
    assert text == "a b c"


def test_less_than_signs_that_are_not_tags_stay() -> None:
    text, spans, problems = parse_tagged("1 < 2 and 3 > 2, <3")
    assert (text, spans, problems) == ("1 < 2 and 3 > 2, <3", [], [])


words = st.text(alphabet="abc xyz.", min_size=1, max_size=8)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(words, st.sampled_from(["", "p", "q", "p.r"])), min_size=1, max_size=8))
def test_render_then_parse_roundtrip(pieces) -> None:
    text, spans = "", []
    for chunk, tag in pieces:
        start = len(text)
        text += chunk
        if tag and chunk.strip():
            spans.append((start, len(text), tag))
    stripped, parsed, problems = parse_tagged(render_tagged(text, spans))
    assert stripped == text and problems == []
    trimmed = set()
    for s, e, tag in spans:
        while text[s].isspace():
            s += 1
        while text[e - 1].isspace():
            e -= 1
        trimmed.add((s, e, tag))
    assert {(sp.start, sp.end, sp.tag) for sp in parsed} == trimmed
