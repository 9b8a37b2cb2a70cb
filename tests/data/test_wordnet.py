"""WordNet reader and builder (on a tiny fake WordNet), and the shipped wordnet-supersenses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from superact_lens.data import load_dataset
from superact_lens.data.wordnet_build import BuildConfig, _hits, build_dataset
from superact_lens.data.wordnet_db import LEXNAMES, WordNet
from superact_lens.data.wordnet_report import noise_report, write_release
from superact_lens.data.wordnet_sentences import extract_sentences

ANIMAL, FOOD, ACT = LEXNAMES.index("noun.animal"), LEXNAMES.index("noun.food"), 4


def _fake_wordnet(root: Path) -> Path:
    """~60 synsets: animals, foods, acts, plus 'bat' (mostly an animal, once a club)."""
    data, index = [], []
    off = 1

    def synset(lexfn: int, lemma: str, definition: str, example: str, count: int = 1) -> None:
        nonlocal off
        data.append(f'{off:08d} {lexfn:02d} n 01 {lemma} 0 000 | {definition}; "{example}"')
        index.append((lemma, off, count))
        off += 1

    for k in range(20):
        synset(
            ANIMAL, f"zorb{k}", f"a small furry creature number {k}", f"the zorb{k} slept all day"
        )
        synset(FOOD, f"plim{k}", f"a sweet dish number {k}", f"we shared a plim{k} after dinner")
        synset(ACT, f"quod{k}", f"the act of waiting number {k}", f"his quod{k} lasted an hour")
    synset(ANIMAL, "bat", "nocturnal flying mammal", "a bat flew out of the cave", 5)
    synset(
        LEXNAMES.index("noun.artifact"), "bat", "a club used in games", "he swung the bat hard", 1
    )
    synset(ACT, "chat", "an informal talk", "the bat hung near our chat", 1)  # untagged 'bat'
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.noun").write_text("\n".join(data) + "\n")
    (root / "data.verb").write_text("  license header line\n")
    (root / "verb.exc").write_text("slept sleep\n")
    by_lemma: dict[str, list[int]] = {}
    for lemma, o, _ in index:
        by_lemma.setdefault(lemma, []).append(o)
    lines = [
        f"{lm} n {len(os)} 0 {len(os)} 1 " + " ".join(f"{o:08d}" for o in os)
        for lm, os in sorted(by_lemma.items())
    ]
    (root / "index.noun").write_text("\n".join(lines) + "\n")
    (root / "index.verb").write_text("")
    counts = [f"{lemma}%1:{int(data[o - 1].split()[1]):02d}:00:: 1 {c}" for lemma, o, c in index]
    (root / "cntlist.rev").write_text("\n".join(counts) + "\n")
    return root


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> WordNet:
    return WordNet(_fake_wordnet(tmp_path_factory.mktemp("wn")))


def test_reader_parses_synsets_index_and_counts(fake: WordNet) -> None:
    ss = fake.synsets["n00000001"]
    assert (ss.lexname, ss.lemmas, ss.definition) == (
        "noun.animal",
        ("zorb0",),
        "a small furry creature number 0",
    )
    assert ss.examples == ("the zorb0 slept all day",)
    assert fake.morphy("bats", "n") == ["bat"]
    mfs, shares = fake.readings("bats")
    assert mfs == {"noun.animal"}
    assert shares["noun.animal"] == pytest.approx(6 / 8) and shares[
        "noun.artifact"
    ] == pytest.approx(2 / 8)


def test_missing_files_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wordnet-base"):
        WordNet(tmp_path)


def test_sentences_tag_the_synsets_own_lemma(fake: WordNet) -> None:
    sentences = extract_sentences(fake)
    ex = next(s for s in sentences if s.synset == "n00000001" and s.kind == "example")
    assert ex.text == "The zorb0 slept all day." and ex.text[ex.span[0] : ex.span[1]] == "zorb0"
    de = next(s for s in sentences if s.synset == "n00000001" and s.kind == "definition")
    assert de.text == "A zorb0 is a small furry creature number 0."
    assert de.text[de.span[0] : de.span[1]] == "zorb0"
    chat = next(s for s in sentences if s.text.startswith("The bat hung"))
    assert "noun.animal" in chat.mfs  # untagged 'bat' read as its most frequent sense


def test_build_keeps_negatives_clean(fake: WordNet, tmp_path: Path) -> None:
    sentences = extract_sentences(fake)
    cfg = BuildConfig(concepts=("noun.animal", "noun.food"), n_samples=40, max_rate=0.3, seed=1)
    ds, report = build_dataset(sentences, cfg)
    again, _ = build_dataset(sentences, cfg)
    assert ds.texts == again.texts  # deterministic
    assert len(ds) == 40 and set(ds.splits) == {"train", "cal", "test"}
    chosen = frozenset(cfg.concepts)
    for i, members in enumerate(report["members"]):
        present = {ds.concepts[c] for c in np.flatnonzero(ds.labels[i])}
        for s_i, c_i in members:
            s = sentences[s_i]
            need = _hits(s, chosen, cfg.min_share) - ({s.lexname} if c_i >= 0 else set())
            assert need <= present, (ds.texts[i], need, present)
        tagged = {c for _, _, c in ds.spans[i]}
        assert tagged == set(np.flatnonzero(ds.labels[i]))
    noise = noise_report(ds, report["members"], sentences, fake, cfg.min_share)
    assert all(noise[c]["mfs"] == 0 and noise[c]["substantial"] == 0 for c in cfg.concepts)
    cfg.extra["wordnet_dir"] = str(tmp_path)
    archive = write_release(ds, cfg, report, noise, tmp_path / "out")
    assert archive.name == "wordnet-supersenses.tar.gz"
    assert (tmp_path / "out" / "LICENSE").read_text().startswith("WordNet Release 3.0")
    loaded = load_dataset(archive)
    assert loaded.texts == ds.texts and loaded.spans == ds.spans


def test_shipped_dataset_loads_by_name() -> None:
    ds = load_dataset("wordnet-supersenses")
    assert ds.name == "wordnet-supersenses" and 12 <= ds.n_concepts <= 20
    assert all(c.split(".")[0] in ("noun", "verb") for c in ds.concepts)
    for split in ("cal", "test"):
        assert (ds.labels[ds.splits == split].sum(0) >= 30).all()
    rate = ds.labels.mean(0)
    assert ((rate > 0.05) & (rate < 0.3)).all()
    for text, spans, row in zip(ds.texts, ds.spans, ds.labels, strict=True):
        assert {c for _, _, c in spans} == set(np.flatnonzero(row))
        assert all(text[s:e].strip() == text[s:e] and e > s for s, e, _ in spans)
