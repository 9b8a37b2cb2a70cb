"""Default truncation: with no ``max_length``, inputs are cut to the model's context.

Small random models with a context of 32 positions (learned position
embeddings, so a longer input would make the forward fail) stand in for
MiniLM's 512, one per adapter: Hugging Face, nnsight, both TransformerBridge
paths, a TL-native bridge and a legacy HookedRootModule. The context must come
from the model: the tokenizer (MiniLM's) allows 512.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from superact_lens.lens import ConceptLens
from tests.adapters.helpers import Recorder, load_hf, wrap_nnsight
from tests.adapters.test_transformer_lens import legacy_model

pytestmark = pytest.mark.model

N_CTX = 32
LONG = " ".join(["word"] * 60)  # 62 tokens with [CLS] and [SEP]
FITS = " ".join(["word"] * (N_CTX - 2))  # what LONG becomes: exactly the context
KINDS = ["hf", "nnsight", "bridge_fast", "bridge_hook_points", "bridge_native", "hooked_root"]


def make_lens(kind, folder, bridge, tokenizer):
    if kind == "hf":
        return ConceptLens(load_hf(folder), tokenizer=tokenizer)
    if kind == "nnsight":
        return ConceptLens(wrap_nnsight(load_hf(folder)), tokenizer=tokenizer)
    if kind in ("bridge_fast", "bridge_hook_points"):
        return ConceptLens(bridge, fast_path=kind == "bridge_fast")
    if kind == "bridge_native":
        from transformer_lens.model_bridge.sources.native import boot

        config = dict(
            n_layers=2,
            d_model=16,
            n_heads=2,
            d_head=8,
            d_vocab=tokenizer.vocab_size,
            n_ctx=N_CTX,
            attn_only=True,
            seed=0,
        )
        return ConceptLens(boot(config, tokenizer=tokenizer))
    return ConceptLens(legacy_model(tokenizer, n_ctx=N_CTX))


@pytest.mark.parametrize("kind", KINDS)
def test_long_texts_are_cut_to_the_model_context(
    kind, tiny_bert_folder, tiny_bridge, minilm_tokenizer
):
    lens = make_lens(kind, tiny_bert_folder, tiny_bridge, minilm_tokenizer)
    assert lens.tokenizer.model_max_length > N_CTX
    assert lens.max_length == N_CTX
    texts = ["a short one", LONG]
    with pytest.warns(UserWarning, match=rf"1 of 2 texts .*max_length={N_CTX} tokens"):
        (cut,) = lens.stream(texts, [Recorder()], batch_size=2, progress=False)
    batch = lens.tokenize(texts)
    assert batch.truncated.tolist() == [False, True]
    assert batch.input_ids.shape[1] == N_CTX and int(batch.n_content[1]) == N_CTX - 2
    # the cut text reads as the text that fits: same tokens, same residuals, no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*truncated")
        (fits,) = lens.stream(["a short one", FITS], [Recorder()], batch_size=2, progress=False)
    assert sorted(cut.result()) == list(range(lens.n_layers))
    for layer, resid in cut.result().items():
        assert resid.shape == (2, N_CTX, lens.d_model)
        torch.testing.assert_close(resid, fits.result()[layer], atol=0, rtol=0)
