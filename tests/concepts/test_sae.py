import json

import pytest
import torch
from safetensors.torch import save_file

from superact_lens.concepts import SAEConcepts, fit_concepts, load_sae, sae_layer

from .synthetic import planted_sample


def write_sae(path, w_enc, b_enc, b_dec, hook="blocks.0.hook_resid_pre", **cfg_extra):
    """A SAELens-format folder: cfg.json + sae_weights.safetensors."""
    path.mkdir(parents=True, exist_ok=True)
    d_in, d_sae = w_enc.shape
    weights = {
        "W_enc": w_enc.contiguous(),
        "b_enc": b_enc.contiguous(),
        "W_dec": w_enc.T.contiguous(),
        "b_dec": b_dec.contiguous(),
    }
    weights.update(cfg_extra.pop("extra_weights", {}))
    save_file(weights, str(path / "sae_weights.safetensors"))
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "hook_name": hook,
        "architecture": "standard",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        **cfg_extra,
    }
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


@pytest.fixture()
def planted():
    return planted_sample(n_samples=200, d=16, layers=(0,), strength=3.0)


@pytest.fixture()
def sae_dir(tmp_path, planted):
    sample, dirs, normalizer = planted
    # Units 0-2: planted directions, fire mostly on in-concept tokens.
    # Unit 3 dead, unit 4 dense (fires everywhere), unit 5 a weak copy of unit 2.
    w = torch.stack([dirs[0], dirs[1], dirs[2], dirs[0], dirs[1], 1e-3 * dirs[2]], dim=1)
    b = torch.tensor([-2.5, -2.5, -2.5, -100.0, 100.0, -2.5e-3])
    return write_sae(tmp_path / "sae", w, b, normalizer.mean[0])


def test_filters_units_and_scores_are_preactivations(planted, sae_dir):
    sample, _, normalizer = planted
    est = SAEConcepts(sae_dir).fit(sample)
    bank = est.bank_
    assert est.units_.tolist() == [0, 1, 2]
    assert bank.names == ["sae_0", "sae_1", "sae_2"] and bank.layers == [0]
    assert (bank.kind, bank.cosine, bank.metadata["unsupervised"]) == ("sae", False, True)
    f = bank.metadata["filter"]
    assert (f["dead"], f["dense"], f["weak"], f["kept"]) == (1, 1, 1, 3)
    cfg, weights = load_sae(sae_dir)
    x = sample.embeddings[0]
    pre = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    assert torch.allclose(bank.score(x, 0), pre[:, :3], atol=1e-4)
    # Fitted with the train normaliser, the bank gives the same scores when used with it.
    normed = SAEConcepts(sae_dir).fit(sample, normalizer).bank_
    assert normed.metadata["normalized"] is True
    assert torch.allclose(normed.score(x, 0, normalizer), pre[:, :3], atol=1e-3)
    w, b0 = normed.fold(normalizer)
    assert torch.allclose(x @ w[0].T + b0[0], pre[:, :3], atol=1e-3)


def test_units_detect_planted_concepts(planted, sae_dir):
    sample, _, _ = planted
    bank = SAEConcepts(sae_dir).fit(sample).bank_
    s = bank.score(sample.embeddings[0], 0)
    for c in range(3):
        assert (
            s[sample.token_concepts[:, c], c].mean() > s[~sample.sample_labels[:, c], c].mean() + 2
        )


def test_layer_from_hook_and_override(tmp_path, planted):
    assert sae_layer({"hook_name": "blocks.4.hook_resid_post"}) == 5
    assert sae_layer({"metadata": {"hook_name": "blocks.4.hook_resid_pre"}}) == 4
    with pytest.raises(ValueError, match="layer"):
        sae_layer({"hook_name": "blocks.4.attn.hook_z"})
    sample, dirs, _ = planted
    path = write_sae(
        tmp_path / "s", dirs.T, torch.zeros(3), torch.zeros(16), hook="blocks.1.hook_resid_post"
    )
    with pytest.raises(ValueError, match="layer 2"):
        SAEConcepts(path).fit(sample)
    assert SAEConcepts(path, layer=0, max_fire_frac=1.0).fit(sample).bank_.layers == [0]


def test_max_units_jumprelu_and_errors(tmp_path, planted, sae_dir):
    sample, dirs, _ = planted
    bank = SAEConcepts(sae_dir, max_units=2).fit(sample).bank_
    assert bank.n_concepts == 2
    path = write_sae(
        tmp_path / "j",
        dirs.T,
        torch.zeros(3),
        torch.zeros(16),
        architecture="jumprelu",
        extra_weights={"threshold": torch.full((3,), 1e6)},
    )
    with pytest.raises(ValueError, match="no SAE unit"):
        SAEConcepts(path).fit(sample)  # thresholds so high nothing fires
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        SAEConcepts(tmp_path / "missing").fit(sample)
    bad = write_sae(tmp_path / "b", dirs.T, torch.zeros(3), torch.zeros(16), d_in=99)
    with pytest.raises(ValueError, match="d_in"):
        load_sae(bad)
    with pytest.raises(ValueError, match="normalize_activations"):
        load_sae(
            write_sae(
                tmp_path / "n",
                dirs.T,
                torch.zeros(3),
                torch.zeros(16),
                normalize_activations="layer_norm",
            )
        )


def test_fit_concepts_dispatch(planted, sae_dir):
    sample, _, normalizer = planted
    for kind in ("mean", "linsep", "kmeans", "klinsep"):
        params = {"n_clusters": 4} if kind.startswith("k") else {}
        bank = fit_concepts(kind, sample, normalizer, ["a", "b", "c"], seed=0, **params)
        assert bank.kind == kind and bank.layers == [0]
    assert fit_concepts("sae", sample, None, path=sae_dir).kind == "sae"
    with pytest.raises(ValueError, match="kind"):
        fit_concepts("pca", sample, normalizer)
    with pytest.raises(TypeError, match="n_clusters"):
        fit_concepts("mean", sample, normalizer, n_clusters=3)
