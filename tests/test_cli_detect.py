"""`superact detect` (INTERFACES §2): JSON lines in input order equal to the detector's own
predict, --file / stdin / --text alike, --concepts and --top, one-line errors, streaming."""

from __future__ import annotations

import io
import json
import sys

import pytest

from superact_lens.cli import detect as detect_cmd
from superact_lens.cli import main
from superact_lens.detection.artefact import ConceptDetector
from superact_lens.lens import ConceptLens

from .detection.tiny_detector import build_detector, tiny_bert_folder

TEXTS = [
    "The apple and the banana were ripe.",
    "Iron and copper ore under a storm.",
    "",
    "A quiet morning by the river, with rain on the window.",
    "Hello",
    "Wind, rain and a long storm over the copper mine.",
]
KEYS = {"index", "text", "tokens", "present", "concepts"}
CONCEPT_KEYS = {"present", "score", "threshold", "layer", "sparsity", "superactivators"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_folder):
    folder = tiny_bert_folder(tmp_path_factory.mktemp("tiny-bert"), minilm_folder)
    lens = ConceptLens(str(folder))
    det = build_detector(lens, str(folder))
    return lens, det, det.save(tmp_path_factory.mktemp("det") / "linsep")


def _detect(capsys, path, *argv):
    code = main(["detect", "--detector", str(path), "--quiet", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_lines_follow_the_input_and_equal_predict(tiny, capsys):
    lens, det, path = tiny
    code, out, _ = _detect(capsys, path, "--json", "--text", *TEXTS)
    assert code == 0
    records = _records(out)
    assert [r["index"] for r in records] == list(range(len(TEXTS)))
    assert [r["text"] for r in records] == TEXTS
    for r in records:
        assert set(r) == KEYS and list(r["concepts"]) == det.concepts
        assert all(set(e) == CONCEPT_KEYS for e in r["concepts"].values())
    live = [i for i, t in enumerate(TEXTS) if t]
    scores = lens.scores([TEXTS[i] for i in live], det.bank, det.normalizer, progress=False)
    predicted = det.detector.predict(scores)
    assert predicted.any() and not predicted.all()
    for j, i in enumerate(live):
        assert records[i]["present"] == [n for c, n in enumerate(det.concepts) if predicted[j, c]]
    assert records[2]["present"] == [] and records[2]["tokens"] == []


def test_file_stdin_and_text_agree(tiny, capsys, tmp_path, monkeypatch):
    _, _, path = tiny
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    by_text = _detect(capsys, path, "--json", "--text", *TEXTS)[1]
    by_file = _detect(capsys, path, "--json", "--file", str(file))[1]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(TEXTS) + "\n"))
    by_stdin = _detect(capsys, path, "--json", "-")[1]
    assert by_text == by_file == by_stdin and len(by_text.splitlines()) == len(TEXTS)


def test_concepts_top_and_token_scores(tiny, capsys):
    _, det, path = tiny
    name = det.concepts[1]
    code, out, _ = _detect(
        capsys, path, "--json", "--concepts", name, "--top", "1", "--token-scores", "--text", *TEXTS
    )
    assert code == 0
    for r in _records(out):
        (entry,) = r["concepts"].values()
        assert list(r["concepts"]) == [name] and set(r["present"]) <= {name}
        assert len(entry["superactivators"]) <= 1
        assert len(entry["token_scores"]) == len(r["tokens"])
        if entry["present"]:
            assert entry["superactivators"][0]["score"] == entry["score"]


def test_plain_text_lists_what_fires(tiny, capsys):
    _, _, path = tiny
    json_out = _records(_detect(capsys, path, "--json", "--text", *TEXTS)[1])
    code, out, _ = _detect(capsys, path, "--text", *TEXTS)
    assert code == 0
    blocks = out.strip().split("\n\n")
    assert len(blocks) == len(TEXTS)
    for block, r in zip(blocks, json_out, strict=True):
        assert block.startswith(f"[{r['index']}] ")
        assert f"present: {', '.join(r['present']) or 'none'}" in block
        for name in r["present"]:
            assert f"  {name}: score " in block


def _one_line_error(code, err, *needles):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("superact: error:"), err
    for needle in needles:
        assert needle in lines[0]


def test_unknown_concept_is_one_line(tiny, capsys):
    _, _, path = tiny
    code, _, err = _detect(capsys, path, "--concepts", "fruit,nope", "--text", "x")
    _one_line_error(code, err, "--concepts", "'nope'")


def test_model_mismatch_is_one_line(tiny, capsys, tmp_path, minilm_folder):
    _, _, path = tiny
    wide = tiny_bert_folder(tmp_path / "wide", minilm_folder, width=48)
    capsys.readouterr()
    code, _, err = _detect(capsys, path, "--model", str(wide), "--text", "x")
    _one_line_error(code, err, str(path), "width d_model 48 != 32")


def test_missing_detector_is_one_line(capsys, tmp_path):
    code, _, err = _detect(capsys, tmp_path / "nope", "--text", "x")
    _one_line_error(code, err, str(tmp_path / "nope"), "does not exist")


def test_output_of_a_chunk_comes_before_the_next_is_read(tiny, monkeypatch):
    """Bounded memory: with chunks of 2 texts, when line j is read, every record of
    the chunks before it has already been written (and none of its own chunk)."""
    _, _, path = tiny
    out = io.StringIO()
    seen: list[tuple[int, int]] = []

    class Stdin:
        def __iter__(self):
            for j, text in enumerate(TEXTS * 2):
                seen.append((j, len(out.getvalue().splitlines())))
                yield text + "\n"

    monkeypatch.setattr(detect_cmd, "_CHUNK", 2)
    monkeypatch.setattr(sys, "stdin", Stdin())
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["detect", "--detector", str(path), "--quiet", "--json", "-"]) == 0
    assert seen == [(j, 2 * (j // 2)) for j in range(2 * len(TEXTS))]
    assert [r["index"] for r in _records(out.getvalue())] == list(range(2 * len(TEXTS)))


def test_html_page_gets_token_scores_and_is_capped(tiny, capsys, tmp_path, monkeypatch):
    _, det, path = tiny
    pages = []

    def fake_page(records, page, *, title):
        pages.append((records, page, title))

    monkeypatch.setattr("superact_lens.plots.token_page.write_detect_page", fake_page)
    html = tmp_path / "page.html"
    code, out, err = _detect(
        capsys, path, "--json", "--html", str(html), "--html-max", "2", "--text", *TEXTS
    )
    assert code == 0
    assert "first 2 of 6 texts" in err
    (records, page, title) = pages[0]
    assert page == html and det.concept_type in title
    assert [r["index"] for r in records] == [0, 1]
    assert all("token_scores" in e for r in records for e in r["concepts"].values())
    printed = _records(out)
    assert len(printed) == len(TEXTS)
    assert not any("token_scores" in e for r in printed for e in r["concepts"].values())


def test_html_page_is_written(tiny, capsys, tmp_path):
    _, _, path = tiny
    html = tmp_path / "page.html"
    code, _, _ = _detect(capsys, path, "--html", str(html), "--text", *TEXTS[:2])
    assert code == 0 and html.stat().st_size > 1000
    assert "<html" in html.read_text(encoding="utf-8").lower()


def test_default_model_is_the_recorded_one(tiny):
    _, det, path = tiny
    assert ConceptDetector.load(path).model.name == det.model.name
