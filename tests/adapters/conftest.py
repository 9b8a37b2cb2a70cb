import pytest


@pytest.fixture(scope="session")
def minilm_bridge(minilm_folder):
    """A TransformerBridge booted on MiniLM (TL 4.x)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(str(minilm_folder), device="cpu")


@pytest.fixture(scope="session")
def minilm_nnsight(minilm_folder):
    """An NNsight wrapper around its own, independently loaded MiniLM."""
    import warnings

    import nnsight
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(minilm_folder), attn_implementation="eager").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BERT's `output` children are served as E_output
        return nnsight.NNsight(model)


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_folder))


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory, minilm_tokenizer):
    """A small random BERT (context 32, dropout 0.1) saved with MiniLM's tokenizer."""
    from tests.adapters.helpers import save_tiny_bert

    folder = tmp_path_factory.mktemp("tiny_bert")
    save_tiny_bert(folder, minilm_tokenizer)
    return folder


@pytest.fixture(scope="session")
def tiny_bridge(tiny_bert_folder):
    """A TransformerBridge booted on the tiny BERT (restore anything a test changes on it)."""
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(str(tiny_bert_folder), device="cpu")
