"""The prompting baseline (SPEC §4): ask a generative model whether each concept is present.

For every (text, concept) pair the model reads one prompt, the text followed by
a question (``DEFAULT_QUESTION``)::

    <text>

    Does the text above mention <concept description>? Answer Yes or No.

wrapped as the user turn of the tokenizer's chat template (with the generation
prompt) when the tokenizer has one, else followed by ``"\\nAnswer:"`` so that a
base model continues with the answer. The decision is greedy decoding's first
token restricted to the two answers: one forward pass, and "present" iff the
largest next-token logit among the "Yes" tokens (``Yes``, `` Yes``, ``yes``,
`` yes``) exceeds the largest among the "No" tokens. There is nothing to fit and
no threshold. How often the unrestricted argmax is neither answer is recorded
(``neither_rate_``): an honest diagnostic of how well a small model follows the
question at all.

Prompts are left-padded (the last column is every row's last token) with
position ids counted over attended tokens (``position_ids_from_mask``), batched
by length, under ``torch.no_grad()`` in eval mode.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor
from tqdm import tqdm

from superact_lens.adapters.base import (
    CONTEXT_KEYS,
    accepted_kwargs,
    config_value,
    eval_mode,
    takes_mask_positions,
)
from superact_lens.adapters.tokenize import check_texts, position_ids_from_mask
from superact_lens.errors import InputError, InputTypeError

from .generative import answer_token_ids, check_causal_lm, load_generative
from .metrics import bootstrap_weighted_f1, detection_metrics

__all__ = [
    "DEFAULT_QUESTION",
    "PromptDetector",
    "describe_concept",
    "prompt_report",
]

DEFAULT_QUESTION = "Does the text above mention {concept}? Answer Yes or No."
_ANSWER_CUE = "\nAnswer:"  # after the question when there is no chat template
_YES = ("Yes", " Yes", "yes", " yes")
_NO = ("No", " No", "no", " no")
_SAFETY = 8  # tokens kept free when a text is cut to fit the context (merges at the seams)

# WordNet lexicographer files (lexnames(5WN): "nouns denoting animals", "verbs of
# eating and drinking", ...) as phrases that read after "Does the text above mention".
WORDNET_SUPERSENSES = {
    "noun.animal": "an animal",
    "noun.artifact": "a man-made object",
    "noun.body": "a part of the body",
    "noun.communication": "communication (a message, statement or other communicative content)",
    "noun.feeling": "a feeling or emotion",
    "noun.food": "a food or drink",
    "noun.location": "a place or location",
    "noun.person": "a person",
    "noun.plant": "a plant",
    "noun.substance": "a substance or material",
    "verb.communication": "an act of communicating (telling, asking, ordering, singing)",
    "verb.consumption": "eating or drinking",
    "verb.emotion": "feeling an emotion",
    "verb.motion": "movement (walking, flying, swimming)",
    "verb.perception": "perceiving (seeing, hearing, feeling)",
}


def describe_concept(name: str, descriptions: Mapping[str, str] | None = None) -> str:
    """A readable description of concept ``name`` for the question.

    ``descriptions`` first, then the WordNet supersenses of the shipped dataset,
    else the name itself with ``_``/``-`` as spaces and a ``noun.``/``verb.``-style
    prefix dropped (``noun.Tops`` -> ``Tops``).
    """
    if descriptions and name in descriptions:
        return descriptions[name]
    if name in WORDNET_SUPERSENSES:
        return WORDNET_SUPERSENSES[name]
    head, dot, tail = name.partition(".")
    if dot and head in ("noun", "verb", "adj", "adv") and tail:
        name = tail
    return name.replace("_", " ").replace("-", " ").strip() or name


class PromptDetector:
    """Ask a causal language model "does the text mention <concept>?" per sample and concept.

    scikit-learn style: parameters here, nothing fitted (no threshold); the model
    is loaded on first use (:meth:`load`) and kept in ``model_`` / ``tokenizer_``.

    Args:
        model: a causal LM (``AutoModelForCausalLM`` or any Hugging Face model with
            an output embedding) or a name: packaged (``gemma-270m``), folder, Hub id.
        concepts: concept names, one output column each.
        tokenizer: the model's tokenizer (loaded with the model when ``model`` is a name).
        descriptions: concept name -> phrase for the question (see :func:`describe_concept`).
        question: the question, with ``{concept}`` where the description goes.
        chat_template: ``"auto"`` uses the tokenizer's chat template when it has one;
            True requires one; False never uses it.
        batch_size: prompts per forward pass.
        device: move the model there (in place); None keeps it where it is.
        progress: progress bar on stderr.

    After :meth:`predict`: ``margin_`` ``[n, C]`` (best Yes logit − best No logit),
    ``neither_rate_`` (share of prompts whose unrestricted argmax is no answer token),
    ``n_prompts_``, ``seconds_``, ``n_truncated_`` (texts cut to fit the context).
    """

    method = "prompt"

    def __init__(
        self,
        model: Any,
        concepts: Sequence[str],
        tokenizer: Any = None,
        descriptions: Mapping[str, str] | None = None,
        question: str = DEFAULT_QUESTION,
        chat_template: bool | str = "auto",
        batch_size: int = 16,
        device: str | torch.device | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.concepts = concepts
        self.tokenizer = tokenizer
        self.descriptions = descriptions
        self.question = question
        self.chat_template = chat_template
        self.batch_size = batch_size
        self.device = device
        self.progress = progress

    # --- set-up -----------------------------------------------------------------------
    def _check_params(self) -> list[str]:
        if isinstance(self.concepts, str) or not all(isinstance(c, str) for c in self.concepts):
            raise InputTypeError("concepts: expected a list of concept names (strings)")
        names = list(self.concepts)
        if not names:
            raise InputError("concepts: the list is empty")
        if not isinstance(self.question, str) or "{concept}" not in self.question:
            raise InputError(
                f"question: expected a string with '{{concept}}', got {self.question!r}"
            )
        if self.chat_template not in ("auto", True, False):
            raise InputError(
                f"chat_template: expected 'auto', True or False, got {self.chat_template!r}"
            )
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise InputError(f"batch_size: expected a positive int, got {self.batch_size!r}")
        return names

    def load(self) -> PromptDetector:
        """Load (or check) the model and tokenizer and find the answer tokens; idempotent."""
        if hasattr(self, "model_"):
            return self
        names = self._check_params()
        if isinstance(self.model, (str, Path)):
            model, tokenizer = load_generative(str(self.model))
            tokenizer = self.tokenizer if self.tokenizer is not None else tokenizer
        else:
            model, tokenizer = self.model, self.tokenizer
        check_causal_lm(model)
        if tokenizer is None:
            raise InputError("tokenizer: required when model is a model object")
        if self.device is not None:
            model.to(self.device)
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if self.chat_template is True and not has_template:
            raise InputError("chat_template=True: the tokenizer has no chat template")
        yes, no = answer_token_ids(tokenizer, _YES), answer_token_ids(tokenizer, _NO)
        if not yes or not no or set(yes) & set(no):
            raise InputError(
                f"tokenizer: needs distinct single tokens for Yes and No, found yes={yes} no={no}"
            )
        self.model_, self.tokenizer_ = model, tokenizer
        self.concepts_ = names
        self.descriptions_ = [describe_concept(c, self.descriptions) for c in names]
        self.uses_chat_template_ = has_template and self.chat_template is not False
        self.yes_ids_, self.no_ids_ = yes, no
        self.template_ = self._render("{text}", "{concept}")
        return self

    def _render(self, text: str, description: str) -> str:
        """The prompt string for one text and one concept description."""
        user = f"{text}\n\n{self.question.replace('{concept}', description)}"
        if not self.uses_chat_template_:
            return user + _ANSWER_CUE
        messages = [{"role": "user", "content": user}]
        return self.tokenizer_.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def _encode(self, prompt: str) -> list[int]:
        # A chat template writes its own BOS; a plain prompt gets the tokenizer's.
        special = not self.uses_chat_template_
        return list(self.tokenizer_(prompt, add_special_tokens=special)["input_ids"])

    def prompts(self, texts: Sequence[str]) -> list[list[str]]:
        """The prompt strings, ``[text][concept]`` (texts cut to fit the context)."""
        self.load()
        texts = check_texts(texts)
        self._cut = 0
        context = config_value(getattr(self.model_, "config", None), CONTEXT_KEYS)
        if context is not None:
            longest = max(self.descriptions_, key=len)
            budget = context - len(self._encode(self._render("", longest))) - _SAFETY
            if budget < 1:
                raise InputError(
                    f"question: the prompt alone exceeds the model context ({context})"
                )
            texts = [self._fit(t, budget) for t in texts]
        return [[self._render(t, d) for d in self.descriptions_] for t in texts]

    def _fit(self, text: str, budget: int) -> str:
        """``text`` cut at a token boundary to at most ``budget`` tokens."""
        if len(self.tokenizer_(text, add_special_tokens=False)["input_ids"]) <= budget:
            return text
        if not getattr(self.tokenizer_, "is_fast", False):
            raise InputTypeError(
                "tokenizer: cutting a long text to the context needs a fast tokenizer"
            )
        enc = self.tokenizer_(text, add_special_tokens=False, return_offsets_mapping=True)
        self._cut += 1
        return text[: int(enc["offset_mapping"][budget - 1][1])]

    # --- prediction -------------------------------------------------------------------
    def predict(self, texts: Sequence[str]) -> Bool[Tensor, "n C"]:
        """``[n, C]`` decisions: True iff the best Yes token beats the best No token."""
        self.load()
        texts = check_texts(texts)
        rendered = self.prompts(texts)
        flat = [self._encode(p) for row in rendered for p in row]
        n, n_c = len(texts), len(self.concepts_)
        margin = torch.empty(len(flat))
        neither = 0
        answers = torch.tensor(self.yes_ids_ + self.no_ids_)
        order = sorted(range(len(flat)), key=lambda i: -len(flat[i]))
        started = time.perf_counter()
        bar = tqdm(
            total=len(flat),
            desc="prompt baseline",
            disable=not self.progress,
            file=sys.stderr,
            unit="prompt",
            leave=False,
        )
        with bar, eval_mode(self.model_), torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                logits = self._last_logits([flat[i] for i in rows])
                yes = logits[:, self.yes_ids_].max(dim=1).values
                no = logits[:, self.no_ids_].max(dim=1).values
                margin[rows] = (yes - no).float().cpu()
                top = logits.argmax(dim=1).cpu()
                neither += int((~torch.isin(top, answers)).sum())
                bar.update(len(rows))
        self.seconds_ = time.perf_counter() - started
        self.n_prompts_ = len(flat)
        self.neither_rate_ = neither / len(flat)
        self.n_truncated_ = self._cut
        if self._cut:
            warnings.warn(
                f"{self._cut} of {n} texts were cut to fit the model context in the prompt",
                stacklevel=2,
            )
        self.margin_: Float[Tensor, "n C"] = margin.view(n, n_c)
        return self.margin_ > 0

    def _last_logits(self, rows: list[list[int]]) -> Float[Tensor, "batch vocab"]:
        """Next-token logits after each prompt: one left-padded forward pass."""
        model, width = self.model_, max(len(r) for r in rows)
        pad = self.tokenizer_.pad_token_id
        ids = torch.full((len(rows), width), 0 if pad is None else int(pad), dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
        device = next(model.parameters()).device
        inputs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if takes_mask_positions(model):
            inputs["position_ids"] = position_ids_from_mask(mask).to(device)
        extra = {"use_cache": False, "logits_to_keep": 1}  # no KV cache; LM head on the last token
        inputs.update({k: extra[k] for k in accepted_kwargs(model.forward, list(extra))})
        out = model(**inputs)
        logits = out.logits if hasattr(out, "logits") else out[0]
        return logits[:, -1, :]

    # --- reporting --------------------------------------------------------------------
    def summary(self, concept_names: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per concept, in the shape of the other methods: no layer, sparsity or threshold."""
        self.load()
        names = list(concept_names) if concept_names is not None else self.concepts_
        if len(names) != len(self.concepts_):
            raise InputError(
                f"concept_names must list {len(self.concepts_)} names, got {len(names)}"
            )
        return {
            name: {
                "layer": None,
                "sparsity": None,
                "threshold": None,
                "column": c,
                "column_name": self.concepts_[c],
                "cal_f1": None,
                "description": self.descriptions_[c],
            }
            for c, name in enumerate(names)
        }

    def info(self) -> dict[str, Any]:
        """What was asked and how it was read, for results.json."""
        self.load()
        decode = self.tokenizer_.convert_ids_to_tokens
        out: dict[str, Any] = {
            "template": self.template_,
            "question": self.question,
            "chat_template": self.uses_chat_template_,
            "decision": "greedy first token restricted to the answer tokens: "
            "max logit over yes tokens > max logit over no tokens",
            "answer_tokens": {"yes": decode(self.yes_ids_), "no": decode(self.no_ids_)},
        }
        if hasattr(self, "n_prompts_"):
            out |= {
                "n_prompts": self.n_prompts_,
                "neither_rate": self.neither_rate_,
                "yes_rate": float((self.margin_ > 0).float().mean()),
                "n_truncated": self.n_truncated_,
                "seconds": round(self.seconds_, 3),
                "prompts_per_s": round(self.n_prompts_ / max(self.seconds_, 1e-9), 3),
            }
        return out


def prompt_report(
    detector: PromptDetector,
    pred: Bool[Tensor, "n C"],
    labels: Bool[Tensor, "n C"],
    concept_names: list[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``prompt`` entry of results.json: the metrics every method reports
    (:func:`~.metrics.detection_metrics`, :func:`~.metrics.bootstrap_weighted_f1`),
    per-concept fields with null layer / sparsity / threshold, and ``prompt``: the
    exact template and the answer diagnostics."""
    m = detection_metrics(pred, labels)
    lo, hi = bootstrap_weighted_f1(pred, labels, n_resamples=n_resamples, seed=seed)
    per = {
        name: {
            "f1": float(m["f1"][c]),
            "precision": float(m["precision"][c]),
            "recall": float(m["recall"][c]),
            "support": int(m["support"][c]),
            **s,
        }
        for c, (name, s) in enumerate(detector.summary(concept_names).items())
    }
    return {
        "weighted_f1": m["weighted_f1"],
        "ci95": [lo, hi],
        "per_concept": per,
        "prompt": detector.info(),
    }
