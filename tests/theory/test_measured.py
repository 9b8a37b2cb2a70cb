"""Model-agnostic measured heads: specs against the modules of tiny random decoders.

The fast tests build small random Llama and Gemma 3 models (grouped-query
attention, Gemma's q/k RMS norms, ``query_pre_attn_scalar``, a sliding-window
layer, RoPE, randomised norm gains) and check that what the spec extracts and
recomputes equals what the Hugging Face modules compute, within 1e-5. The slow
test runs the full report on Gemma-3-270M.
"""

import math
import re
import zlib

import pytest
import torch

from tests.extras import needs_extra
from theory.heads import AttentionWeights, _blocked, measure_layer
from theory.measured import capture_layers, head_report, summarise
from theory.native import aligned_native_model, tl_attention_weights
from theory.quantities import attention_moments
from theory.specs import spec_for

TEXTS = [
    "the cat sat on the warm mat today",
    "a dog ran after the red ball in the park",
    "markets fell again on monday",
    "the old horse slept in the barn all night long",
    "she wrote a short letter",
    "birds and fish are animals too",
]
SPANS = [[(4, 7)], [(2, 5)], [], [(8, 13)], [], [(0, 5), (10, 14)]]
VOCAB = 64


class _WordTokenizer:
    """Whitespace tokenizer with BOS, right padding and character offsets (no download)."""

    bos_token_id, pad_token_id = 1, 0

    def __call__(self, texts, *, max_length=64, **_):
        rows = []
        for t in texts:
            words = [(m.group(), m.span()) for m in re.finditer(r"\S+", t)]
            ids = [(self.bos_token_id, (0, 0))]
            ids += [(2 + zlib.crc32(w.encode()) % (VOCAB - 2), sp) for w, sp in words]
            rows.append(ids[:max_length])
        N, T = len(rows), max(len(r) for r in rows)
        enc = {
            "input_ids": torch.zeros(N, T, dtype=torch.long),
            "attention_mask": torch.zeros(N, T, dtype=torch.long),
            "offset_mapping": torch.zeros(N, T, 2, dtype=torch.long),
        }
        for n, r in enumerate(rows):
            enc["input_ids"][n, : len(r)] = torch.tensor([i for i, _ in r])
            enc["attention_mask"][n, : len(r)] = 1
            enc["offset_mapping"][n, : len(r)] = torch.tensor([sp for _, sp in r])
        return enc


def _randomise(model, seed: int):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


def _tiny(kind: str):
    common = {
        "vocab_size": VOCAB,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "attn_implementation": "eager",
    }
    if kind == "llama":
        from transformers import LlamaConfig, LlamaModel

        return _randomise(LlamaModel(LlamaConfig(**common, attention_bias=True)), 0)
    from transformers import Gemma3TextConfig, Gemma3TextModel

    cfg = Gemma3TextConfig(
        **common,
        head_dim=8,
        query_pre_attn_scalar=12,  # scaling 12 ** -0.5, not head_dim ** -0.5
        sliding_window=3,
        layer_types=["sliding_attention", "full_attention"],
        attn_logit_softcapping=0.5,  # in the config, never applied by the module
    )
    return _randomise(Gemma3TextModel(cfg), 1)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def tiny(request):
    model = _tiny(request.param)
    return model, capture_layers(model, _WordTokenizer(), TEXTS)


def test_per_head_weights_are_the_module_projections(tiny):
    """W_Q of head h, and W_K / W_V of its K/V head h // (H / H_kv), as the module computes."""
    model, cap = tiny
    spec = spec_for(model)
    H, H_kv = model.config.num_attention_heads, model.config.num_key_value_heads
    for layer, blk in enumerate(spec.blocks(model)):
        attn, x = blk.self_attn, cap["x"][layer]
        w = spec.weights(blk)
        assert w.W_Q.shape == (H, 32, attn.head_dim) and w.causal
        assert w.scale == pytest.approx(1 / attn.scaling)
        with torch.no_grad():
            q = attn.q_proj(x).unflatten(-1, (H, -1))
            k = attn.k_proj(x).unflatten(-1, (H_kv, -1))
            v = attn.v_proj(x).unflatten(-1, (H_kv, -1))
        for h in range(H):
            kv = h // (H // H_kv)
            torch.testing.assert_close(x @ w.W_Q[h] + w.b_Q[h], q[:, :, h], atol=1e-5, rtol=0)
            torch.testing.assert_close(x @ w.W_K[h] + w.b_K[h], k[:, :, kv], atol=1e-5, rtol=0)
            torch.testing.assert_close(x @ w.W_V[h] + w.b_V[h], v[:, :, kv], atol=1e-5, rtol=0)


def test_recomputed_pattern_and_update_equal_the_module(tiny):
    """Logits from the normalised, rotated q/k and the mask reproduce the model's attention;
    the pattern with the per-head weights reproduces ``o_proj``'s output."""
    model, cap = tiny
    rep = head_report(model, _WordTokenizer(), data=(TEXTS, SPANS))
    assert rep["kappa_source"] == "fit"
    for layer in rep["layers"]:
        assert layer["pattern_err"] < 1e-5, layer["layer"]
        assert layer["exact_err"] < 1e-5, layer["layer"]
        assert len(layer["heads"]["gain"]) == 4
        assert all(math.isfinite(v) for v in layer["heads"]["corr"])
        assert layer["corr_scalar_stream"] is not None
    assert summarise(rep)["max_pattern_err"] < 1e-5


def test_sliding_window_blocks_old_keys(tiny):
    model, cap = tiny
    spec = spec_for(model)
    blocks = spec.blocks(model)
    window = getattr(blocks[0].self_attn, "sliding_window", None)
    m = spec.blocked(blocks[0], cap["pad"])
    T = cap["pad"].shape[1]
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    expect = (j > i) | ~cap["pad"][:, None, :]
    if window is not None:
        expect = expect | (i - j >= window)
    assert torch.equal(m, expect)
    # the model's own probabilities are zero exactly where we block (real query rows)
    probs = cap["attentions"][0]
    real = cap["pad"][:, None, :, None].expand_as(probs)
    assert torch.all(probs[m[:, None].expand_as(probs) & real] == 0)


def test_bos_is_a_key_but_not_a_statistic(tiny):
    _, cap = tiny
    assert not cap["content"][:, 0].any() and cap["pad"][:, 0].all()
    assert torch.equal(cap["content"][:, 1:], cap["pad"][:, 1:])


def test_fitted_kappa_recovers_planted_logits():
    """Logits kappa_h a_i a_j + a row constant: the row-centred fit returns kappa_h, delta 0."""
    gen = torch.Generator().manual_seed(0)
    N, T, d, H, dh = 5, 9, 6, 3, 2
    x = torch.randn(N, T, d, generator=gen, dtype=torch.float64)
    c = torch.randn(d, generator=gen, dtype=torch.float64)
    c = c / c.norm()
    a = x @ c
    kappa = torch.tensor([0.7, -0.2, 1.3], dtype=torch.float64)
    scores = kappa[None, :, None, None] * a[:, None, :, None] * a[:, None, None, :]
    scores = scores + torch.randn(N, H, T, 1, generator=gen, dtype=torch.float64) * 3
    w = AttentionWeights(
        *(torch.randn(H, d, dh, generator=gen, dtype=torch.float64) for _ in range(3)),
        torch.randn(H, dh, d, generator=gen, dtype=torch.float64),
        *(torch.zeros(H, dh, dtype=torch.float64) for _ in range(3)),
        torch.zeros(d, dtype=torch.float64),
        1.0,
        causal=True,
    )
    pad = torch.ones(N, T, dtype=torch.bool)
    pad[1, 6:] = False
    out = torch.randn(N, T, d, generator=gen, dtype=torch.float64)
    rep = measure_layer(w, c, x, out, pad, scores=scores, kappa="fit")
    got = torch.tensor(rep.heads["kappa_fit"], dtype=torch.float64)
    torch.testing.assert_close(got, kappa, atol=1e-10, rtol=0)
    assert max(rep.heads["delta_median"]) < 1e-10
    assert rep.kappa_source == "fit"


def _brute_vbar(a: torch.Tensor, kappa: float, n: int = 20001) -> float:
    """``int_0^1 Var_{p(kappa (lo + t (hi - lo)))}[a] dt`` by the trapezoid rule."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    s = kappa * (a.min() + t * (a.max() - a.min()))
    p = torch.softmax(s[:, None] * a[None], -1)
    var = attention_moments(p, a[None])[1]
    return float(torch.trapezoid(var, t))


def test_theorem_d7_regime_on_an_aligned_head_and_under_noise():
    """Noise-free aligned head: every sequence is in D.7's regime. Logit noise of
    half-range ~5 on the same head: none is, and d7_ratio is |kappa| Vbar / tanh(delta)."""
    model, c = aligned_native_model(alpha=2.0, beta=0.5, seed=3)
    w = tl_attention_weights(model, 0)
    tokens = torch.randint(0, 50, (6, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    x = cache["blocks.0.hook_resid_pre"]
    out = cache["blocks.0.hook_resid_post"] - x
    clean = measure_layer(w, c, x, out)
    assert clean.heads["d7_fraction"][0] == 1.0 and clean.heads["snr"][0] > 1e6
    gen = torch.Generator().manual_seed(1)
    a = (x.double() @ c).detach()
    kappa = clean.heads["kappa"][0]
    noise = (torch.rand(6, 2, 12, 12, generator=gen, dtype=torch.float64) - 0.5) * 10
    scores = kappa * a[:, None, :, None] * a[:, None, None, :] + noise
    noisy = measure_layer(w, c, x, out, scores=scores)
    assert noisy.heads["d7_fraction"][0] == 0.0
    # the median ratio equals |kappa| Vbar / tanh(delta_n) computed independently
    block = _blocked(torch.ones(6, 12, dtype=torch.bool), True)
    eps = (noise[:, 0]).masked_fill(block, float("nan"))
    half = (eps.nan_to_num(-math.inf).amax(-1) - eps.nan_to_num(math.inf).amin(-1)) / 2
    ratios = [abs(kappa) * _brute_vbar(a[n], kappa) / math.tanh(half[n].max()) for n in range(6)]
    assert noisy.heads["d7_ratio"][0] == pytest.approx(
        float(torch.tensor(ratios).median()), rel=1e-5
    )
    assert noisy.heads["d7_ratio"][0] < 1


def test_unknown_architecture_names_the_model_type():
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8))
    with pytest.raises(ValueError, match="'gpt2'"):
        spec_for(model)
    with pytest.raises(ValueError, match="model_type None"):
        spec_for(torch.nn.Linear(2, 2))


@pytest.mark.slow
@pytest.mark.models
@needs_extra("gemma-270m")
def test_gemma_report():
    from superact_lens.adapters.loading import load_model
    from theory.minilm import dataset_concept_data

    model, tok = load_model("gemma-270m", dtype=torch.float32)
    learn = dataset_concept_data("noun.animal", split="train", limit=60)
    texts, _ = dataset_concept_data("noun.animal", split="cal", limit=24)
    rep = head_report(model, tok, data=learn, texts=texts)
    assert rep["model_type"] == "gemma3_text" and rep["kappa_source"] == "fit"
    assert len(rep["layers"]) == 18
    for layer in rep["layers"]:
        assert all(len(v) == 4 for v in layer["heads"].values())
        # our logits (q/k norms, RoPE, scaling, sliding mask) give the model's own attention,
        # and the per-head weights with that attention give o_proj's output
        assert layer["pattern_err"] < 1e-4, layer["layer"]
        assert layer["exact_err"] < 1e-3 * max(layer["std_update"], 1.0), layer["layer"]
        assert math.isfinite(layer["corr_scalar"]) and math.isfinite(layer["corr_scalar_stream"])
    s = summarise(rep)
    assert len(s["top_heads"]) == 5
