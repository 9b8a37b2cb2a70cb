import pytest


@pytest.fixture(scope="session")
def bert_tokenizer(minilm_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_folder))


@pytest.fixture(scope="module")
def planted(bert_tokenizer):
    """(lens, detector) of the hand-built planted model (tests/localization/planted.py)."""
    from tests.localization.planted import planted_detector, planted_lens

    return planted_lens(bert_tokenizer), planted_detector()
