"""The prompting baseline (issue 10, item 3; SPEC §4) on small random decoders.

The decision must be exactly "greedy first token restricted to the answers" of an
unpadded, unbatched forward pass on the documented prompt; batching (left padding,
position ids from the mask) must not change it; the chat template is used when
the tokenizer has one; encoders are refused with a clear error.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from superact_lens.detection.generative import load_generative
from superact_lens.detection.prompting import (
    DEFAULT_QUESTION,
    PromptDetector,
    describe_concept,
    prompt_report,
)
from superact_lens.errors import InputError, InputTypeError
from tests.extras import needs_extra
from tests.tiny_decoders import gpt2_style, llama_style, save, tiny_gpt2, tiny_llama

TEXTS = [
    "The cat sat on the mat.",
    "A much longer sentence about the economy, taxes and politics in Europe.",
    "She walked to the river and saw a bird on a tree.",
    "Rain.",
    "The dog ate the bread and drank the milk in the garden.",
]
CONCEPTS = ["noun.animal", "verb.consumption", "weather"]
CHAT = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ATOL = 1e-5

MODELS = {  # GPT-2: absolute positions (a left-padding bug shows); Llama: BOS + pad token
    "gpt2": (tiny_gpt2, gpt2_style),
    "llama": (tiny_llama, llama_style),
}


def detector(arch: str, **kwargs) -> PromptDetector:
    make, style = MODELS[arch]
    tokenizer = kwargs.pop("tokenizer", None) or style()
    return PromptDetector(make(), CONCEPTS, tokenizer=tokenizer, progress=False, **kwargs)


def answer_ids(tokenizer, word: str) -> set[int]:
    """Vocabulary entries spelling ``word`` with or without the byte-level space."""
    vocab = tokenizer.get_vocab()
    forms = (word, "Ġ" + word, word.lower(), "Ġ" + word.lower())
    return {vocab[f] for f in forms if f in vocab}


def plain_forward(model, ids: list[int]) -> torch.Tensor:
    """Next-token logits of one prompt: no padding, no mask, no position ids."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decision_is_the_unbatched_greedy_answer(arch):
    """Each decision = (best Yes logit > best No logit) of a plain forward pass on
    ``text + "\\n\\n" + question + "\\nAnswer:"``; neither_rate_ counts the argmaxes
    that are no answer token."""
    det = detector(arch, batch_size=4)
    pred = det.predict(TEXTS)
    tokenizer, model = det.tokenizer_, det.model_
    yes, no = answer_ids(tokenizer, "Yes"), answer_ids(tokenizer, "No")
    assert set(det.yes_ids_) == yes and set(det.no_ids_) == no and yes and no
    assert det.template_ == "{text}\n\n" + DEFAULT_QUESTION + "\nAnswer:"
    margins, neither = torch.empty(len(TEXTS), len(CONCEPTS)), 0
    for i, text in enumerate(TEXTS):
        for c, concept in enumerate(CONCEPTS):
            question = DEFAULT_QUESTION.format(concept=describe_concept(concept))
            ids = tokenizer(f"{text}\n\n{question}\nAnswer:")["input_ids"]
            logits = plain_forward(model, ids)
            margins[i, c] = logits[list(yes)].max() - logits[list(no)].max()
            neither += int(int(logits.argmax()) not in yes | no)
    torch.testing.assert_close(det.margin_, margins, atol=ATOL, rtol=0)
    clear = margins.abs() > ATOL
    assert torch.equal(pred[clear], (margins > 0)[clear])
    assert det.n_prompts_ == len(TEXTS) * len(CONCEPTS)
    assert det.neither_rate_ == pytest.approx(neither / det.n_prompts_)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batched_equals_one_at_a_time(arch):
    """Left padding with mask-derived positions: batches of mixed lengths give the
    margins of one prompt per forward pass."""
    one = detector(arch, batch_size=1)
    many = detector(arch, batch_size=6)
    pred_one, pred_many = one.predict(TEXTS), many.predict(TEXTS)
    # Margins differ between prompts by far more than the tolerance: a real comparison.
    assert float(one.margin_.max() - one.margin_.min()) > 1000 * ATOL
    torch.testing.assert_close(many.margin_, one.margin_, atol=ATOL, rtol=0)
    clear = one.margin_.abs() > ATOL
    assert torch.equal(pred_many[clear], pred_one[clear])


def test_chat_template_is_used_when_present():
    tokenizer = llama_style()
    tokenizer.chat_template = CHAT
    det = detector("llama", tokenizer=tokenizer, batch_size=4)
    pred = det.predict(TEXTS[:3])
    assert det.uses_chat_template_ and det.info()["chat_template"] is True
    bos = tokenizer.bos_token_id
    yes, no = answer_ids(tokenizer, "Yes"), answer_ids(tokenizer, "No")
    for i, text in enumerate(TEXTS[:3]):
        for c, concept in enumerate(CONCEPTS):
            question = DEFAULT_QUESTION.format(concept=describe_concept(concept))
            expected = tokenizer.apply_chat_template(
                [{"role": "user", "content": f"{text}\n\n{question}"}],
                tokenize=False,
                add_generation_prompt=True,
            )
            assert det.prompts([text])[0][c] == expected
            assert expected.endswith("<|assistant|>\n")
            ids = tokenizer(expected, add_special_tokens=False)["input_ids"]
            assert ids[0] == bos and ids[1] != bos  # the template's BOS, not a second one
            logits = plain_forward(det.model_, ids)
            margin = logits[list(yes)].max() - logits[list(no)].max()
            assert float(det.margin_[i, c]) == pytest.approx(float(margin), abs=ATOL)
            if abs(float(margin)) > ATOL:
                assert bool(pred[i, c]) == (float(margin) > 0)
    plain = detector("llama", tokenizer=tokenizer, chat_template=False).load()
    assert not plain.uses_chat_template_ and plain.template_.endswith("\nAnswer:")
    with pytest.raises(InputError, match="chat_template=True"):
        detector("llama", chat_template=True).load()  # no template on this tokenizer


def test_model_by_folder_equals_model_object(tmp_path):
    """A name / folder is loaded with its LM head (AutoModelForCausalLM)."""
    folder = save(tmp_path / "llama", tiny_llama(), llama_style())
    by_name = PromptDetector(str(folder), CONCEPTS, batch_size=8, progress=False)
    by_name.predict(TEXTS[:2])
    by_object = detector("llama", batch_size=8)
    by_object.predict(TEXTS[:2])
    torch.testing.assert_close(by_name.margin_, by_object.margin_, atol=ATOL, rtol=0)


def test_encoders_and_headless_models_are_refused(minilm_folder):
    with pytest.raises(InputError, match="minilm is not a generative model"):
        load_generative("minilm")
    with pytest.raises(InputError, match="not a generative model.*BertModel"):
        PromptDetector(str(minilm_folder), CONCEPTS).load()
    headless = PromptDetector(tiny_llama(head=False), CONCEPTS, tokenizer=llama_style())
    with pytest.raises(InputTypeError, match="LlamaModel has no language-model head"):
        headless.load()
    with pytest.raises(InputError, match="concepts"):
        PromptDetector(tiny_llama(), "noun.animal", tokenizer=llama_style()).load()
    with pytest.raises(InputError, match="question"):
        detector("llama", question="Is it there?").load()


def test_long_texts_are_cut_to_the_context():
    """A text longer than the model context is cut at a token boundary (GPT-2's
    learned positions would fail with an index error otherwise), with a warning."""
    det = PromptDetector(
        tiny_gpt2(n_positions=64), CONCEPTS, tokenizer=gpt2_style(), progress=False
    )
    long = " ".join([TEXTS[1]] * 12)
    with pytest.warns(UserWarning, match="1 of 2 texts were cut"):
        pred = det.predict([long, TEXTS[0]])
    assert pred.shape == (2, 3) and det.n_truncated_ == 1
    for prompt in det.prompts([long])[0]:
        assert len(det.tokenizer_(prompt)["input_ids"]) <= 64


def test_describe_concept():
    assert describe_concept("noun.animal") == "an animal"
    assert describe_concept("verb.consumption") == "eating or drinking"
    assert describe_concept("noun.Tops") == "Tops"
    assert describe_concept("fresh_water-fish") == "fresh water fish"
    assert describe_concept("fruit", {"fruit": "a fruit"}) == "a fruit"


def test_report_entry_has_the_method_shape():
    """prompt_report: the metrics every method reports, null layer/sparsity/threshold."""
    det = detector("gpt2", batch_size=8)
    pred = det.predict(TEXTS)
    labels = torch.zeros(len(TEXTS), len(CONCEPTS), dtype=torch.bool)
    labels[[0, 2, 4], 0] = True
    labels[4, 1] = True
    entry = prompt_report(det, pred, labels, CONCEPTS, n_resamples=50)
    assert set(entry["per_concept"]) == set(CONCEPTS)
    for c, name in enumerate(CONCEPTS):
        pc = entry["per_concept"][name]
        assert pc["layer"] is None and pc["sparsity"] is None and pc["threshold"] is None
        tp = int((pred[:, c] & labels[:, c]).sum())
        assert pc["support"] == int(labels[:, c].sum())
        assert pc["recall"] == pytest.approx(tp / max(pc["support"], 1))
    lo, hi = entry["ci95"]
    assert lo <= entry["weighted_f1"] <= hi
    info = entry["prompt"]
    assert info["template"] == det.template_ and info["n_prompts"] == 15
    assert 0.0 <= info["neither_rate"] <= 1.0


@pytest.mark.slow
@pytest.mark.models
@needs_extra("gemma-270m")
def test_gemma_answers_a_handful_of_prompts():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = PromptDetector("gemma-270m", CONCEPTS, batch_size=8, progress=False).load()
    assert det.uses_chat_template_ == bool(det.tokenizer_.chat_template)
    pred = det.predict(TEXTS[:4])
    assert pred.shape == (4, 3)
    one = PromptDetector(det.model_, CONCEPTS, tokenizer=det.tokenizer_, batch_size=1)
    one.progress = False
    one.predict(TEXTS[:4])
    # Gemma's logits are O(10): 1e-3 absolute is far below any decision margin that matters.
    torch.testing.assert_close(det.margin_, one.margin_, atol=1e-3, rtol=0)
    assert 0.0 <= det.neither_rate_ <= 1.0
