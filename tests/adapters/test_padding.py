"""Padding must not move positions: a text's scores do not depend on its batch.

Under left padding a text's tokens sit after its row's pads. A model that numbers
columns (``arange``) instead of attended tokens sees every token shifted by the pad
count, so a text scored beside a longer one got other scores than alone (issue 9:
up to 10.6 at MiniLM's layer 6). The lens now passes ``position_ids`` counted over
attended tokens wherever the model takes them, on every adapter path, and leaves
alone models that number positions themselves from ``input_ids`` (RoBERTa, MPNet).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from superact_lens.adapters.base import takes_mask_positions
from superact_lens.adapters.tokenize import position_ids_from_mask
from superact_lens.concepts.bank import ConceptBank
from superact_lens.lens import ConceptLens
from tests.test_lens import unit_bank

pytestmark = pytest.mark.model

SHORT = "The cat sat on the mat."
LONG = "A much longer sentence about the economy, taxes and politics in Europe, said the cat."
TOL = 1e-4  # the bound; measured differences are ~1e-6


def with_side(tokenizer, side: str, pad_token: str | None = "keep", decoder: bool = False):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.padding_side = side
    if pad_token != "keep":
        tokenizer.pad_token = pad_token
    if decoder:  # as GPT-2 / Llama tokenizers: no token_type_ids (GPT-2 would embed them)
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


def alone_and_beside_longer(lens: ConceptLens, side: str, bank: ConceptBank):
    """Scores of SHORT alone, and of SHORT in one batch with LONG."""
    cls_bank = unit_bank(6, range(lens.n_layers), lens.d_model, seed=1)
    alone = lens.scores([SHORT], bank, cls_bank=cls_bank, progress=False)
    both = lens.scores([SHORT, LONG], bank, cls_bank=cls_bank, batch_size=2, progress=False)
    batch = lens.tokenize([SHORT, LONG])
    pads = batch.attention_mask[0] == 0
    # The short text really is padded, on the side under test.
    assert pads.any()
    assert bool(pads[0]) == (side == "left") and bool(pads[-1]) == (side == "right")
    return alone, both


def test_position_ids_from_mask():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [
        [0, 0, 0, 1, 2],  # left padding: the first attended token is position 0
        [0, 1, 2, 2, 2],  # right padding: arange on every attended token
        [0, 1, 2, 3, 4],
    ]


@pytest.fixture(scope="module")
def minilm_models(minilm_hf, minilm_nnsight, minilm_bridge):
    return {
        "hf": (minilm_hf, {}),
        "nnsight": (minilm_nnsight, {}),
        "bridge_fast": (minilm_bridge, {}),
        "bridge_hooks": (minilm_bridge, {"fast_path": False}),
    }


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("adapter", ["hf", "nnsight", "bridge_fast", "bridge_hooks"])
def test_scores_do_not_depend_on_batch(minilm_models, minilm_lens, side, adapter):
    model, kwargs = minilm_models[adapter]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lens = ConceptLens(model, tokenizer=with_side(minilm_lens.tokenizer, side), **kwargs)
    alone, both = alone_and_beside_longer(lens, side, unit_bank(6, range(7), 384))
    expected_path = {"bridge_fast": "fast", "bridge_hooks": "hook_points"}.get(adapter, adapter)
    assert lens.adapter.path == expected_path
    assert both.lengths.tolist()[0] == alone.lengths.tolist()[0]
    torch.testing.assert_close(both.sample(0), alone.tokens, atol=TOL, rtol=0)
    torch.testing.assert_close(both.cls[:, 0], alone.cls[:, 0], atol=TOL, rtol=0)


def test_gate():
    """Which models get mask-derived position ids (built small, no download)."""
    from transformers import (
        BertConfig,
        BertModel,
        MPNetConfig,
        MPNetModel,
        OPTConfig,
        OPTModel,
        RobertaConfig,
        RobertaModel,
    )

    small = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    small |= dict(vocab_size=50, max_position_embeddings=16)
    assert takes_mask_positions(BertModel(BertConfig(**small)))
    assert not takes_mask_positions(RobertaModel(RobertaConfig(**small)))  # staticmethod helper
    assert not takes_mask_positions(MPNetModel(MPNetConfig(**small)))  # module-level helper
    opt = OPTConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, ffn_dim=8)
    opt.num_attention_heads, opt.word_embed_proj_dim, opt.max_position_embeddings = 2, 8, 16
    assert not takes_mask_positions(OPTModel(opt))  # its positional embedding takes the mask
    assert not takes_mask_positions(torch.nn.Linear(2, 2))  # no position_ids in forward


# --- small random models built here (MiniLM's tokenizer, ids < vocab) -------------------

VOCAB = 30522  # MiniLM's vocabulary
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def gpt2_config():
    import transformers as tf

    config = tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    config.bos_token_id = config.eos_token_id = 0
    return config


def tiny(kind: str):
    """A random ``kind`` model and the pad token its position scheme expects."""
    import transformers as tf

    torch.manual_seed(0)
    if kind == "roberta":  # positions from padding_idx + 1 over input_ids != padding_idx
        config = tf.RobertaConfig(**SIZES, vocab_size=VOCAB, max_position_embeddings=80)
        config.pad_token_id = 0  # MiniLM's [PAD]
        return tf.RobertaModel(config), "[PAD]"
    if kind == "mpnet":  # the same scheme, padding_idx fixed at 1 ([unused0] in MiniLM)
        config = tf.MPNetConfig(**SIZES, vocab_size=VOCAB, max_position_embeddings=80)
        return tf.MPNetModel(config), "[unused0]"
    if kind == "gpt2":  # learned absolute positions; no pad token (padded with id 0)
        return tf.GPT2Model(gpt2_config()), None
    if kind == "llama":  # rotary positions
        config = tf.LlamaConfig(**SIZES, vocab_size=VOCAB, max_position_embeddings=64)
        config.num_key_value_heads = 1
        return tf.LlamaModel(config), None
    raise ValueError(kind)


def unpadded_reference(model, tokenizer, text: str, layer_bank: ConceptBank):
    """Scores of ``text`` run alone through the bare model, no padding, no position_ids."""
    enc = tokenizer([text], return_tensors="pt", return_special_tokens_mask=True)
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], output_hidden_states=True).hidden_states
    content = ~enc["special_tokens_mask"][0].bool()
    n_blocks = len(hidden) - 1
    # hidden_states[-1] of a decoder is after the final norm; the lens's last layer is not.
    rows = [layer_bank.score(hidden[i][0][content], i) for i in range(n_blocks)]
    return torch.stack(rows)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("kind", ["roberta", "mpnet", "gpt2", "llama"])
def test_small_models_left_and_right(minilm_lens, kind, side):
    """Scores equal the model's own unpadded run, alone and beside a longer text.

    RoBERTa / MPNet must keep numbering positions themselves (0-based ids would put
    content on their reserved rows); GPT-2 and Llama must get mask-derived ids.
    """
    model, pad_token = tiny(kind)
    model.eval()
    decoder = kind in ("gpt2", "llama")
    tokenizer = with_side(minilm_lens.tokenizer, side, pad_token, decoder)
    lens = ConceptLens(model, tokenizer=tokenizer)
    assert takes_mask_positions(model) == decoder
    bank = unit_bank(6, range(lens.n_layers), lens.d_model)
    alone, both = alone_and_beside_longer(lens, side, bank)
    torch.testing.assert_close(both.sample(0), alone.tokens, atol=TOL, rtol=0)
    reference = unpadded_reference(model, tokenizer, SHORT, bank)
    torch.testing.assert_close(alone.tokens[: len(reference)], reference, atol=TOL, rtol=0)
    torch.testing.assert_close(both.sample(0)[: len(reference)], reference, atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def tiny_gpt2_bridge(tmp_path_factory, minilm_lens):
    """A TransformerBridge booted on a saved random GPT-2, and that folder."""
    import transformers as tf
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_gpt2")
    tf.GPT2LMHeadModel(gpt2_config()).save_pretrained(folder)
    minilm_lens.tokenizer.save_pretrained(folder)
    return TransformerBridge.boot_transformers(str(folder), device="cpu"), folder


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("fast_path", [True, False])
def test_small_decoder_bridge(tiny_gpt2_bridge, minilm_lens, fast_path, side):
    """Both bridge paths on a decoder with absolute positions (runner = GPT2Model)."""
    from transformers import AutoModel

    bridge, folder = tiny_gpt2_bridge
    tokenizer = with_side(minilm_lens.tokenizer, side, None, decoder=True)
    lens = ConceptLens(bridge, tokenizer=tokenizer, fast_path=fast_path)
    bank = unit_bank(6, range(lens.n_layers), lens.d_model)
    alone, both = alone_and_beside_longer(lens, side, bank)
    assert lens.adapter.path == ("fast" if fast_path else "hook_points")
    torch.testing.assert_close(both.sample(0), alone.tokens, atol=TOL, rtol=0)
    reference = unpadded_reference(AutoModel.from_pretrained(folder).eval(), tokenizer, SHORT, bank)
    torch.testing.assert_close(both.sample(0)[: len(reference)], reference, atol=TOL, rtol=0)
