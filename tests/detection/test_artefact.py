"""ConceptDetector: bit-exact save/load, clear errors for every broken folder, model checks,
and `detect` records equal to the detector's own predict (fast path = slow path)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil

import pytest
import torch

from superact_lens.concepts.bank import ConceptBank
from superact_lens.data import make_synthetic_dataset
from superact_lens.detection import AggregatorDetector
from superact_lens.detection.apply import token_pieces
from superact_lens.detection.artefact import ConceptDetector, ModelIdentity, vocab_hash
from superact_lens.errors import InputError, InputFileNotFoundError, InputTypeError
from superact_lens.lens import ConceptLens

from .tiny_detector import build_detector, tiny_bert_folder

TEXTS = [
    "The apple and the banana were ripe.",
    "Iron and copper ore under a storm.",
    "   ",
    "A quiet morning by the river, with rain on the window.",
    "Hello",
    "\ufeff\u200b",  # only characters the tokenizer drops: no content token
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, minilm_folder):
    return tiny_bert_folder(tmp_path_factory.mktemp("tiny-bert"), minilm_folder)


@pytest.fixture(scope="module")
def lens(tiny_folder):
    return ConceptLens(str(tiny_folder))


@pytest.fixture(scope="module")
def detector(lens, tiny_folder):
    return build_detector(lens, str(tiny_folder))


@pytest.fixture(scope="module", params=["superact", "clusters", "fixed_n"])
def any_detector(request, detector, lens, tiny_folder):
    """Each kind of max-token detector: SuperActivator, on cluster columns, fixed N."""
    if request.param == "clusters":
        return build_detector(lens, str(tiny_folder), n_columns=6)
    if request.param == "fixed_n":
        return build_detector(lens, str(tiny_folder), fixed_n=True)
    return detector


@pytest.fixture()
def saved(detector, tmp_path):
    return detector.save(tmp_path / "det")


def _tensor_state(obj) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(obj).items() if isinstance(v, torch.Tensor)}


def test_round_trip_is_bit_exact(any_detector, tmp_path):
    detector = any_detector
    saved = detector.save(tmp_path / "det")
    back = ConceptDetector.load(saved)
    for attr in ("vectors", "bias"):
        a, b = getattr(detector.bank, attr), getattr(back.bank, attr)
        assert a.dtype == b.dtype and torch.equal(a, b), attr
    assert detector.bank.to_dict() == back.bank.to_dict()
    assert torch.equal(detector.normalizer.mean, back.normalizer.mean)
    assert torch.equal(detector.normalizer.scale, back.normalizer.scale)
    assert detector.normalizer.layers == back.normalizer.layers
    assert type(back.detector) is type(detector.detector)
    mine, theirs = _tensor_state(detector.detector), _tensor_state(back.detector)
    assert set(mine) == set(theirs) and {"threshold_", "layer_", "column_", "n_"} <= set(mine)
    for k in mine:
        assert mine[k].dtype == theirs[k].dtype and torch.equal(mine[k], theirs[k]), k
    plain = {k: v for k, v in vars(detector.detector).items() if k not in mine}
    assert plain == {k: v for k, v in vars(back.detector).items() if k not in theirs}
    for f in ("concepts", "concept_type", "model", "provenance"):
        assert getattr(back, f) == getattr(detector, f), f
    assert back.source == saved


def test_saving_again_replaces_and_leaves_no_temporary_folder(detector, saved):
    other = dataclasses.replace(detector, provenance={"command": "again"})
    other.save(saved)
    assert ConceptDetector.load(saved).provenance == {"command": "again"}
    assert sorted(p.name for p in saved.parent.iterdir()) == ["det"]


def test_a_failed_save_leaves_the_old_detector(detector, saved, monkeypatch):
    before = (saved / "detector.json").read_text()

    def broken(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(ConceptBank, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        detector.save(saved)
    assert (saved / "detector.json").read_text() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["det"]


def test_save_refuses_to_overwrite_a_folder_that_is_not_a_detector(detector, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a detector folder"):
        detector.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


# --- broken folders: one clear error naming the file ---------------------------------


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "file", "match", "error"),
    [
        (lambda p: shutil.rmtree(p), "", "does not exist", InputFileNotFoundError),
        (lambda p: p.unlink(), "detector.json", "is missing", InputFileNotFoundError),
        (lambda p: p.unlink(), "bank/bank.safetensors", "is missing", InputFileNotFoundError),
        (lambda p: p.unlink(), "normalizer.safetensors", "is missing", InputFileNotFoundError),
        (_truncate, "detector/state.safetensors", "corrupted or truncated", InputError),
        (_flip_last_byte, "bank/bank.safetensors", "corrupted or truncated", InputError),
        (_truncate, "bank/bank.json", "corrupted or truncated", InputError),
        (_truncate, "detector.json", "not valid JSON", InputError),
    ],
)
def test_broken_folder_is_one_clear_error(saved, damage, file, match, error):
    target = saved / file if file else saved
    damage(target)
    with pytest.raises(error, match=match) as info:
        ConceptDetector.load(saved)
    message = str(info.value)
    assert "\n" not in message and str(target) in message


def test_unknown_format_version(saved):
    index = json.loads((saved / "detector.json").read_text())
    index["format_version"] = 99
    (saved / "detector.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=r"unknown format_version 99 .*reads version 1") as info:
        ConceptDetector.load(saved)
    assert str(saved / "detector.json") in str(info.value)


def test_only_max_token_detectors_are_accepted(detector, lens):
    data = make_synthetic_dataset(n=36, seed=0)
    cal = lens.scores(data.texts, detector.bank, detector.normalizer, progress=False)
    mean = AggregatorDetector("mean", match_columns=detector.detector.match_columns)
    mean.fit(cal, torch.as_tensor(data.labels))
    with pytest.raises(InputTypeError, match="AggregatorDetector does not apply the max-token"):
        dataclasses.replace(detector, detector=mean)


# --- the model check -------------------------------------------------------------------


def test_model_identity_of_a_lens(lens, tiny_folder):
    ident = ModelIdentity.from_lens(lens, str(tiny_folder))
    assert (ident.name, ident.n_layers, ident.d_model) == (str(tiny_folder.resolve()), 3, 32)
    assert ident.vocab_hash == vocab_hash(lens.tokenizer).strip()
    grown = copy.deepcopy(lens.tokenizer)
    grown.add_tokens(["zzqqxx"])
    assert vocab_hash(grown) != ident.vocab_hash


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n_layers": 13}, "depth n_layers 3 != 13"),
        ({"vocab_hash": "sha256:0"}, "tokenizer vocabulary differs"),
    ],
)
def test_model_mismatch_names_the_folder_and_the_difference(
    detector, lens, tmp_path, change, match
):
    other = dataclasses.replace(detector, model=dataclasses.replace(detector.model, **change))
    path = other.save(tmp_path / "det")
    ConceptDetector.load(path)  # without a lens nothing is checked
    with pytest.raises(InputError, match=match) as info:
        ConceptDetector.load(path, lens=lens)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_width_mismatch(saved, tmp_path, minilm_folder):
    wider = ConceptLens(str(tiny_bert_folder(tmp_path / "wide", minilm_folder, width=48, blocks=3)))
    with pytest.raises(InputError, match=r"width d_model 48 != 32; depth n_layers 4 != 3$"):
        ConceptDetector.load(saved, lens=wider)


# --- applying it: records equal the detector's own predict --------------------------


def test_detect_equals_predict_on_lens_scores(any_detector, lens):
    detector = any_detector
    records = detector.detect(lens, TEXTS, top_k=2, token_scores=True, batch_size=1)
    assert [r["index"] for r in records] == list(range(len(TEXTS)))
    live = [0, 1, 3, 4]
    scores = lens.scores(
        [TEXTS[i] for i in live], detector.bank, detector.normalizer, batch_size=1, progress=False
    )
    predicted = detector.detector.predict(scores)
    selected = detector.detector._selected(scores)  # the max-token aggregate per concept
    for j, i in enumerate(live):
        want = [n for c, n in enumerate(detector.concepts) if predicted[j, c]]
        assert records[i]["present"] == want
        for c, name in enumerate(detector.concepts):
            entry = records[i]["concepts"][name]
            assert entry["score"] == float(selected[j, c])
            assert entry["present"] == bool(predicted[j, c])
    assert predicted.any() and not predicted.all(), "a test that cannot tell present from absent"


def test_record_fields_are_consistent(detector, lens):
    records = detector.detect(lens, TEXTS, top_k=2, token_scores=True)
    for blank in (records[2], records[5]):
        assert blank["tokens"] == [] and blank["present"] == []
        assert all(e["score"] is None and not e["present"] for e in blank["concepts"].values())
    for r in records:
        assert "".join(r["tokens"]) == (r["text"].strip() if r["tokens"] else "")
        assert list(r["concepts"]) == detector.concepts
        for c, e in enumerate(r["concepts"].values()):
            assert e["threshold"] == detector.threshold_of(c) and e["layer"] == detector.layer_of(c)
            n = float(detector.detector.n_[c])
            assert e["sparsity"] == (None if math.isnan(n) else n)
            assert len(e["token_scores"]) == len(r["tokens"])
            if r["tokens"]:
                assert e["score"] == max(e["token_scores"])
            above = sorted((s for s in e["token_scores"] if s > e["threshold"]), reverse=True)
            assert [s["score"] for s in e["superactivators"]] == above[:2]
            for s in e["superactivators"]:
                assert s["token"] == r["tokens"][s["position"]]
                assert e["token_scores"][s["position"]] == s["score"]
            assert e["present"] == bool(above)
    json.dumps(records, allow_nan=False)


def test_chunks_do_not_change_records(detector, lens):
    whole = detector.detect(lens, TEXTS, batch_size=1, chunk_size=100, token_scores=True)
    chunked = detector.detect(lens, iter(TEXTS), batch_size=1, chunk_size=2, token_scores=True)
    assert whole == chunked


def test_concept_selection_and_errors(detector, lens):
    name = detector.concepts[-1]
    (record,) = detector.detect(lens, TEXTS[:1], concepts=[name], top_k=0)
    assert list(record["concepts"]) == [name]
    assert record["concepts"][name]["superactivators"] == []
    assert "token_scores" not in record["concepts"][name]
    with pytest.raises(InputError, match=r"unknown concept\(s\) \['nope'\]; the detector has"):
        detector.detect(lens, TEXTS, concepts=["nope"])
    with pytest.raises(InputError, match="top_k"):
        detector.detect(lens, TEXTS, top_k=-1)


def test_token_pieces_rebuild_the_text():
    text = "The  dog barked."
    assert token_pieces(text, [(0, 3), (5, 8), (9, 15), (15, 16)]) == [
        "The",
        "  dog",
        " barked",
        ".",
    ]
    assert token_pieces("é!", [(0, 1), (0, 1), (1, 2)]) == ["é", "", "!"]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("files", ["bank/bank.json"], "'files' must map relative paths"),
        ("files", {"../elsewhere": "0"}, "'files' must map relative paths"),
        ("model", {"name": "x"}, "unreadable"),
        ("concepts", None, "missing keys"),
    ],
)
def test_a_wrong_detector_json_is_one_clear_error(saved, key, value, match):
    index = json.loads((saved / "detector.json").read_text())
    if value is None:
        del index[key]
    else:
        index[key] = value
    (saved / "detector.json").write_text(json.dumps(index))
    with pytest.raises(InputError, match=match) as info:
        ConceptDetector.load(saved)
    assert str(saved) in str(info.value) and "\n" not in str(info.value)
