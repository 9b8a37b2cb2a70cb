"""Small random decoders and decoder-style tokenizers, built in memory (no download).

For tests, benchmarks and notebooks that need a decoder where no pretrained one
can be fetched (CI, this offline machine). The models are random: what they
show is the machinery (hooks, padding, caching, speed), never a finding.

The tokenizers are byte-level BPE (GPT-2 style, any text encodes), trained in
memory on a few sentences so that common words and the answers " Yes" / " No"
are single tokens:

* ``llama_style``: prepends BOS ``<s>`` to every text and has a pad token (Llama /
  Gemma style);
* ``gpt2_style``: no BOS, no pad token (the lens pads with id 0 under a zero mask).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch

__all__ = ["gpt2_style", "llama_style", "save", "tiny_gpt2", "tiny_llama"]

CORPUS = [
    "The cat sat on the mat.",
    "The dog ate the bread and drank the milk in the garden.",
    "A much longer sentence about the economy, taxes and politics in Europe.",
    "She walked to the river and saw a bird on a tree.",
    "Does the text above mention an animal? Answer Yes or No.",
    "Answer: Yes",
    "Answer: No",
    "fruit metal weather apple iron rain storm banana copper wind",
    "Letter found small table window morning book river door friend quiet.",
    "Walked garden large opened house city road man woman new under.",
]
VOCAB = 512


@functools.cache
def _trained(bos: bool, pad: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    if bos:
        bos_id = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
    kwargs = {"bos_token": "<s>", "eos_token": "</s>"}
    if pad:
        kwargs["pad_token"] = "<pad>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def llama_style(side: str = "right"):
    """A tokenizer that adds BOS and has a pad token, padding on ``side``."""
    tokenizer = copy.deepcopy(_trained(True, True))
    tokenizer.padding_side = side
    return tokenizer


def gpt2_style(side: str = "right"):
    """A tokenizer with neither BOS nor a pad token, padding on ``side``."""
    tokenizer = copy.deepcopy(_trained(False, False))
    tokenizer.padding_side = side
    return tokenizer


def tiny_llama(
    seed: int = 0, head: bool = True, layers: int = 2, hidden: int = 32, positions: int = 256
):
    """A random Llama (rotary positions), with or without its LM head, in eval mode.

    ``hidden`` is d_model (two heads, one KV head, MLP width ``2 * hidden``).
    """
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.LlamaConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=2 * hidden, max_position_embeddings=positions,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    model = tf.LlamaForCausalLM(config) if head else tf.LlamaModel(config)
    return model.eval()


def tiny_gpt2(seed: int = 0, head: bool = True, n_positions: int = 256):
    """A random GPT-2 (learned absolute positions), with or without its LM head."""
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=n_positions,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    model = tf.GPT2LMHeadModel(config) if head else tf.GPT2Model(config)
    return model.eval()


def save(folder: Path, model, tokenizer) -> Path:
    """Write ``model`` and ``tokenizer`` as a Hugging Face folder."""
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
