"""Hugging Face ids without a network: ``resolve_hub_id`` decides at once (issue 14, item 5).

The uncached-id errors (``HF_HUB_OFFLINE`` and an unreachable endpoint) are in
tests/test_bad_inputs.py; here: a cached id loads from the cache without
retries, and a Hub that answers is left to the loader.
"""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from superact_lens.adapters.loading import load_model, resolve_hub_id

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, minilm_folder):
    """A Hugging Face cache holding the id ``org/tiny`` (a 1-block random BERT)."""
    from huggingface_hub import constants
    from transformers import AutoTokenizer, BertConfig, BertModel

    repo = tmp_path / "models--org--tiny"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    BertModel(config).save_pretrained(str(snapshot))
    tokenizer.save_pretrained(str(snapshot))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_cached_id_loads_from_the_cache_when_the_hub_is_unreachable(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert resolve_hub_id("org/tiny") == {"local_files_only": True}
    start = time.perf_counter()
    model, tokenizer = load_model("org/tiny")
    assert time.perf_counter() - start < 10.0
    assert model.config.hidden_size == 16 and tokenizer.vocab_size > 0


def test_cached_id_offline_uses_local_files_only(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_hub_id("org/tiny") == {"local_files_only": True}


def test_a_hub_that_answers_is_left_to_the_loader(hub_cache, monkeypatch):
    """Any HTTP answer (here 501 from a local server) means there is a network."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert resolve_hub_id("org/not-cached") == {}
        assert resolve_hub_id("org/tiny") == {}
    finally:
        server.shutdown()
        server.server_close()


def test_an_invalid_id_is_left_to_the_loader(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_hub_id("not a valid id!") == {}
