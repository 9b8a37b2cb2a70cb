"""The `superact detect --html` page: escaping, validation and data round trip (fast),
and the page itself in a real headless Chromium (marked ``browser``)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.errors import InputError, InputTypeError
from superact_lens.plots import detect_page_html, detect_page_iframe, write_detect_page

INJECT = "<script>window.__pwned = 1</script>"
IMG = '<img src=x onerror="window.__pwned = 2">'


def _record(index, tokens, concepts, present=None):
    """A detection record (the `superact detect --json` contract) with token scores."""
    per = {}
    for name, (scores, tau) in concepts.items():
        score = max(scores) if scores else None
        fires = score is not None and score > tau
        per[name] = {
            "present": fires,
            "score": score,
            "threshold": tau,
            "layer": 2,
            "sparsity": 5.0,
            "superactivators": [
                {"position": j, "token": tokens[j], "score": s}
                for j, s in sorted(enumerate(scores), key=lambda p: -p[1])
                if s > tau
            ],
            "token_scores": list(scores),
        }
    if present is None:
        present = [name for name, c in per.items() if c["present"]]
    return {
        "index": index,
        "text": "".join(tokens),
        "tokens": list(tokens),
        "present": present,
        "concepts": per,
    }


def _records():
    """Two texts, two concepts: `animal` fires on text 0 only, `verb` on text 1 only."""
    return [
        _record(
            0,
            ["The", " dog", " barked", INJECT],
            {
                "animal": ([0.1, 1.2345678901234567, 0.3, -0.2], 1.0),
                "verb": ([0.0, 0.2, 0.9, 0.1], 1.5),
            },
        ),
        _record(
            1,
            ["It", " ran", " & ", IMG],
            {"animal": ([-0.5, 0.2, 0.4, 0.0], 1.0), "verb": ([0.3, 2.75, -1.0, 1.6], 1.5)},
        ),
    ]


def _embedded(page: str) -> dict:
    """The JSON data block of a written page."""
    blocks = re.findall(
        r'<script type="application/json" id="superact-data">(.*?)</script>', page, re.S
    )
    assert len(blocks) == 1
    return json.loads(blocks[0])


def _num(v):
    return float(v) if isinstance(v, str) else v


# --- fast unit tests (no browser) ---


def test_tokens_text_and_title_cannot_inject_markup(tmp_path):
    records = _records()
    records[0]["text"] = "a </script><!-- " + INJECT
    page = write_detect_page(records, tmp_path / "p.html", title="<i>run</i> & co").read_text()
    # our two blocks only (data + code): no token closes the data block or opens a script
    assert len(re.findall(r"<script", page, re.I)) == 2
    assert len(re.findall(r"</script", page, re.I)) == 2
    assert "<!--" not in page and "<img" not in page and "<i>run" not in page
    assert "&lt;i&gt;run&lt;/i&gt; &amp; co" in page
    data = _embedded(page)
    assert data["texts"][0]["tokens"][3] == INJECT
    assert data["texts"][1]["tokens"][3] == IMG
    assert data["texts"][0]["text"] == records[0]["text"]
    assert data["title"] == "<i>run</i> & co"


def test_page_is_self_contained(tmp_path):
    records = _records()
    records[1]["tokens"][3] = "img"  # a token may say src=, the page itself may not
    records[1]["text"] = "It ran & img"
    page = write_detect_page(records, tmp_path / "sub" / "p.html").read_text()
    for ref in ("http://", "https://", "//unpkg", " src=", "<link", "@import", "url("):
        assert ref not in page, ref


def test_iframe_holds_exactly_the_page(tmp_path):
    """The notebook form: the whole page, escaped into one srcdoc attribute, so none of
    its markup (nor a token's) reaches the notebook's own document."""
    import html as html_lib

    records = _records()
    frame = detect_page_iframe(records, title="t", height=200)
    match = re.fullmatch(
        r'<iframe srcdoc="([^"]*)" style="[^"]*height:200px[^"]*"[^>]*></iframe>', frame
    )
    assert match, frame[:200]
    assert "<script" not in frame and "<img" not in frame
    assert html_lib.unescape(match.group(1)) == detect_page_html(records, title="t")
    assert write_detect_page(records, tmp_path / "p.html", title="t").read_text() == (
        detect_page_html(records, title="t")
    )


def test_embedded_data_round_trips(tmp_path):
    records = _records()
    data = _embedded(write_detect_page(records, tmp_path / "p.html").read_text())
    assert data["concepts"] == ["animal", "verb"]
    assert data["default"] == "animal"
    for rec, text in zip(records, data["texts"], strict=True):
        assert text["index"] == rec["index"] and text["tokens"] == rec["tokens"]
        assert text["present"] == rec["present"]
        for name, c in rec["concepts"].items():
            got = text["scores"][name]
            assert got["token_scores"] == c["token_scores"]
            assert got["threshold"] == c["threshold"] and got["score"] == c["score"]
            assert got["present"] == c["present"] and got["layer"] == c["layer"]


def test_default_concept_is_first_that_fires_else_first(tmp_path):
    records = _records()
    for rec in records:
        rec["present"] = [p for p in rec["present"] if p != "animal"]
    data = _embedded(write_detect_page(records, tmp_path / "a.html").read_text())
    assert data["default"] == "verb"
    for rec in records:
        rec["present"] = []
    data = _embedded(write_detect_page(records, tmp_path / "b.html").read_text())
    assert data["default"] == "animal"
    data = _embedded(write_detect_page([], tmp_path / "c.html").read_text())
    assert data == {"title": "superact detect", "concepts": [], "default": None, "texts": []}


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(st.text(max_size=8), max_size=6),
    data=st.data(),
    tau=st.one_of(_finite, st.just(math.inf), st.just(-math.inf)),
)
def test_round_trip_property(tmp_path_factory, tokens, data, tau):
    """Any token text and any float (non-finite thresholds as JS Number strings) read back."""
    scores = data.draw(st.lists(_finite, min_size=len(tokens), max_size=len(tokens)))
    rec = _record(0, tokens, {"c": (scores, tau)})
    path = tmp_path_factory.mktemp("prop") / "p.html"
    page = write_detect_page([rec], path).read_text()
    assert len(re.findall(r"<script", page, re.I)) == 2
    got = _embedded(page)["texts"][0]
    assert got["tokens"] == tokens
    assert [_num(s) for s in got["scores"]["c"]["token_scores"]] == scores
    assert _num(got["scores"]["c"]["threshold"]) == tau


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda r: r[1]["concepts"]["verb"].pop("token_scores"),
            r"records\[1\].*'verb'.*token_scores",
        ),
        (
            lambda r: r[1]["concepts"]["animal"]["token_scores"].pop(),
            r"records\[1\].*3 token_scores for 4",
        ),
        (lambda r: r[0]["tokens"].append("!"), r"records\[0\].*4 token_scores for 5"),
        (lambda r: r[1].pop("tokens"), r"records\[1\] has no 'tokens'"),
        (lambda r: r[0]["concepts"]["verb"].pop("threshold"), r"records\[0\].*'verb'.*threshold"),
        (
            lambda r: r[1]["concepts"]["verb"]["token_scores"].__setitem__(2, "x"),
            r"records\[1\].*\[2\]",
        ),
        (lambda r: r[0].pop("concepts"), r"records\[0\] has no 'concepts'"),
        (lambda r: r[1].__setitem__("present", "verb"), r"records\[1\]\['present'\]"),
    ],
)
def test_invalid_records_name_the_record(tmp_path, mutate, match):
    records = _records()
    mutate(records)
    with pytest.raises(InputError, match=match):
        write_detect_page(records, tmp_path / "p.html")
    assert not (tmp_path / "p.html").exists()


def test_records_must_be_a_list_of_dicts(tmp_path):
    with pytest.raises(InputTypeError, match="records must be a list"):
        write_detect_page(_records()[0], tmp_path / "p.html")
    with pytest.raises(InputTypeError, match=r"records\[1\] must be a dict"):
        write_detect_page([_records()[0], "text"], tmp_path / "p.html")


# --- the page in a real headless Chromium ---

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs playwright: pip install 'superact_lens[dev]'"
    )
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip(f"needs a system Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def opened(browser, tmp_path):
    """The page of `_records()` loaded from file://, with every request and error recorded
    (requests leaving file:// are also aborted, so a leak cannot hang the test)."""
    path = write_detect_page(_records(), tmp_path / "page.html", title="detect <test>")
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route(lambda url: not url.startswith("file:"), lambda route: route.abort())
    page.goto(path.as_uri())
    page.wait_for_selector(".tok")
    try:
        yield page, requests, errors
    finally:
        page.close()


def _state(page):
    """Per token: (text, background colour, outlined as SuperActivator)."""
    return page.eval_on_selector_all(
        ".tok",
        "els => els.map(e => [e.textContent, getComputedStyle(e).backgroundColor,"
        " e.classList.contains('sa')])",
    )


@pytest.mark.browser
def test_page_in_chromium(opened):
    page, requests, errors = opened
    assert [u for u in requests if not u.startswith("file:")] == []
    assert errors == []
    assert page.title() == "detect <test>"
    assert page.eval_on_selector("#concept", "s => s.value") == "animal"
    assert page.text_content("#tau") == "1"

    before = _state(page)
    texts = [t for t, _, _ in before]
    assert texts == _records()[0]["tokens"] + _records()[1]["tokens"]  # shown as text
    assert page.evaluate("window.__pwned") is None and page.locator("#texts img").count() == 0
    assert [i for i, (_, _, sa) in enumerate(before) if sa] == [1]  # " dog" > tau 1.0

    page.select_option("#concept", "verb")
    after = _state(page)
    assert [c for _, c, _ in after] != [c for _, c, _ in before]
    assert [i for i, (_, _, sa) in enumerate(after) if sa] == [5, 7]  # 2.75, 1.6 > 1.5
    assert page.text_content("#tau") == "1.5"

    page.select_option("#concept", "animal")
    page.hover(".tok >> nth=1")
    tip = page.locator("#tip")
    assert tip.is_visible()
    assert "score 1.2345678901234567" in tip.text_content()
    assert "SuperActivator" in tip.text_content()
    assert errors == [] and [u for u in requests if not u.startswith("file:")] == []


@pytest.mark.browser
def test_present_concepts_listed_per_text(opened):
    page, _, _ = opened
    chips = page.eval_on_selector_all(
        ".text", "els => els.map(e => [...e.querySelectorAll('.chip')].map(c => c.textContent))"
    )
    assert chips == [["animal"], ["verb"]]
    page.click(".text >> nth=1 >> .chip")  # clicking a listed concept shows it
    assert page.eval_on_selector("#concept", "s => s.value") == "verb"
