"""A calibrated ConceptDetector on a tiny random BERT, built in seconds (no `superact run`).

The model is random (MiniLM's tokenizer, width 32, two blocks) and saved to a
folder, so the detector's recorded model name loads it again the ordinary way.
The bank is random too: the detector is calibrated for real (SuperActivator on
the planted synthetic dataset) but what it detects means nothing; the tests
check that applying it is consistent, not that it is good.
"""

from __future__ import annotations

from pathlib import Path

import torch

from superact_lens.concepts.bank import ConceptBank
from superact_lens.data import make_synthetic_dataset, token_masks
from superact_lens.detection import FixedNDetector, SuperActivatorDetector
from superact_lens.detection.artefact import ConceptDetector, ModelIdentity
from superact_lens.lens import ConceptLens
from superact_lens.sinks import NormStatsSink


def tiny_bert_folder(
    folder: Path, minilm_folder: Path, seed: int = 0, width: int = 32, blocks: int = 2
) -> Path:
    """A random BERT (default: 2 blocks of width 32) with MiniLM's tokenizer, in ``folder``."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=width,
        num_hidden_layers=blocks,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def build_detector(
    lens: ConceptLens,
    model_name: str,
    n_columns: int | None = None,
    fixed_n: bool = False,
    seed: int = 0,
) -> ConceptDetector:
    """Random bank on every layer, normaliser and detector calibrated on synthetic texts.

    ``n_columns``: an unsupervised-style bank of that many columns (``match_columns``).
    """
    data = make_synthetic_dataset(n=36, seed=seed)
    texts, names = list(data.texts), list(data.concepts)
    layers = list(range(lens.n_layers))
    stats = NormStatsSink()
    lens.stream(texts, [stats], layers=layers, batch_size=8, progress=False)
    normalizer = stats.result()
    k = n_columns if n_columns is not None else len(names)
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(len(layers), k, lens.d_model, generator=g)
    bank = ConceptBank(
        layers=layers,
        names=names if n_columns is None else [f"cluster_{i}" for i in range(k)],
        vectors=vectors / vectors.norm(dim=-1, keepdim=True),
        kind="linsep" if n_columns is None else "kmeans",
    )
    cal = lens.scores(texts, bank, normalizer, layers=layers, batch_size=8, progress=False)
    labels = torch.as_tensor(data.labels)
    match = n_columns is not None
    if fixed_n:
        det = FixedNDetector(n=20.0, match_columns=match).fit(cal, labels)
    else:
        masks = token_masks(data, lens.content_offsets(texts))
        det = SuperActivatorDetector(match_columns=match).fit(cal, labels, masks)
    return ConceptDetector(
        bank=bank,
        normalizer=normalizer,
        detector=det,
        concepts=names,
        concept_type=bank.kind,
        model=ModelIdentity.from_lens(lens, model_name),
        provenance={"command": "tests", "dataset": "synthetic", "seed": seed},
    )
