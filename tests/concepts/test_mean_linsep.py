import pytest
import torch

from superact_lens.concepts import ConceptBank, LinearSeparatorConcepts, MeanConcepts
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample

from .synthetic import planted_sample, split_samples, token_auc_f1


@pytest.fixture(scope="module")
def planted():
    return planted_sample(n_samples=300, d=32, strength=3.0)


def _cos(bank: ConceptBank, dirs: torch.Tensor) -> torch.Tensor:
    return torch.einsum("lcd,cd->lc", bank.vectors, dirs)


def _normalised_dirs(dirs, normalizer, layer):
    # A planted raw direction u appears in normalised space as u / scale.
    return torch.nn.functional.normalize(dirs / normalizer.scale[normalizer.row(layer)], dim=-1)


@pytest.mark.parametrize("estimator", [MeanConcepts(), LinearSeparatorConcepts()])
def test_recovers_planted_directions(planted, estimator):
    sample, dirs, normalizer = planted
    bank = estimator.fit(sample, normalizer, names=["a", "b", "c"]).bank_
    assert bank.vectors.shape == (2, 3, 32)
    assert bank.names == ["a", "b", "c"] and bank.layers == [0, 2]
    for r, layer in enumerate(bank.layers):
        target = _normalised_dirs(dirs, normalizer, layer)
        cos = torch.einsum("cd,cd->c", bank.vectors[r], target)
        assert (cos > 0.9).all(), cos
    assert torch.allclose(bank.vectors.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    assert bank.metadata["normalized"] is True


def test_bank_flags_and_separation(planted):
    sample, _, normalizer = planted
    mean = MeanConcepts().fit(sample, normalizer).bank_
    lin = LinearSeparatorConcepts().fit(sample, normalizer).bank_
    assert (mean.kind, mean.cosine, mean.level) == ("mean", True, "token")
    assert (lin.kind, lin.cosine, lin.level) == ("linsep", False, "token")
    for bank in (mean, lin):
        s = bank.score(sample.embeddings[1], 2, normalizer)
        for c in range(3):
            pos = s[sample.token_concepts[:, c], c]
            neg = s[~sample.sample_labels[:, c], c]
            assert pos.mean() > neg.mean() + 2 * neg.std()


def test_fold_matches_score(planted):
    sample, _, normalizer = planted
    bank = LinearSeparatorConcepts().fit(sample, normalizer).bank_
    w, b = bank.fold(normalizer)
    folded = sample.embeddings[1] @ w[1].T + b[1]
    assert torch.allclose(folded, bank.score(sample.embeddings[1], 2, normalizer), atol=1e-3)


def test_fast_solver_at_least_as_good_as_recipe():
    sample, dirs, normalizer = planted_sample(n_samples=1500, d=64, strength=1.0, layers=(0,))
    train, held_out = split_samples(sample, 0.2)
    fast = LinearSeparatorConcepts(solver="lbfgs").fit(train, normalizer).bank_
    recipe = LinearSeparatorConcepts(solver="adam", seed=0).fit(train, normalizer).bank_
    auc_fast, f1_fast = token_auc_f1(held_out, fast, normalizer)
    auc_recipe, f1_recipe = token_auc_f1(held_out, recipe, normalizer)
    assert auc_fast >= auc_recipe - 0.005, (auc_fast, auc_recipe)
    assert f1_fast >= f1_recipe - 0.01, (f1_fast, f1_recipe)


def test_determinism_by_seed(planted):
    sample, _, normalizer = planted
    small = split_samples(sample, 0.3)[0]
    for make in (
        lambda s: LinearSeparatorConcepts(seed=s),
        lambda s: LinearSeparatorConcepts(solver="adam", epochs=3, seed=s),
    ):
        a = make(0).fit(small, normalizer).bank_.vectors
        b = make(0).fit(small, normalizer).bank_.vectors
        assert torch.equal(a, b)
    c = (
        LinearSeparatorConcepts(solver="adam", epochs=3, seed=1)
        .fit(small, normalizer)
        .bank_.vectors
    )
    assert not torch.equal(a, c)


def test_save_load_round_trip(planted, tmp_path):
    sample, _, normalizer = planted
    bank = LinearSeparatorConcepts().fit(sample, normalizer, names=["a", "b", "c"]).bank_
    bank.save(tmp_path / "bank")
    loaded = ConceptBank.load(tmp_path / "bank")
    assert torch.equal(loaded.vectors, bank.vectors)
    assert loaded.to_dict() == bank.to_dict()


def test_cls_level(planted):
    sample, dirs, normalizer = planted
    n = int(sample.sample_ids.max()) + 1
    # Sample embedding = mean of its tokens.
    cls = torch.zeros(2, n, 32).index_add_(1, sample.sample_ids, sample.embeddings)
    cls = cls / torch.bincount(sample.sample_ids).float()[None, :, None]
    labels = torch.zeros(n, 3, dtype=torch.bool)
    labels[sample.sample_ids] = sample.sample_labels
    cls_norm = Normalizer([0, 2], cls.mean(1), cls.std(1))
    for est in (MeanConcepts(), LinearSeparatorConcepts()):
        bank = est.fit_cls(cls, labels, [0, 2], cls_norm, names=["a", "b", "c"]).bank_
        assert bank.level == "cls" and bank.vectors.shape == (2, 3, 32)
        cos = torch.einsum("cd,cd->c", bank.vectors[1], _normalised_dirs(dirs, cls_norm, 2))
        assert (cos > 0.8).all(), cos


def test_empty_concept_raises_or_zero(planted):
    sample, _, normalizer = planted
    tc = sample.token_concepts.clone()
    tc[:, 1] = False
    empty = TokenSample(
        sample.layers, sample.embeddings, tc, sample.sample_labels, sample.sample_ids
    )
    for est in (MeanConcepts, LinearSeparatorConcepts):
        with pytest.raises(ValueError, match="'b'"):
            est().fit(empty, normalizer, names=["a", "b", "c"])
        bank = est(on_empty="zero").fit(empty, normalizer, names=["a", "b", "c"]).bank_
        assert (bank.vectors[:, 1] == 0).all() and "b" in bank.metadata["empty"]
        assert (bank.vectors[:, 0].norm(dim=-1) > 0.99).all()


def test_bad_input(planted):
    sample, _, normalizer = planted
    with pytest.raises(ValueError, match="names"):
        MeanConcepts().fit(sample, normalizer, names=["a"])
    with pytest.raises(TypeError, match="sample"):
        MeanConcepts().fit(sample.embeddings, normalizer)
    with pytest.raises(TypeError, match="normalizer"):
        MeanConcepts().fit(sample, "nope")
    with pytest.raises(ValueError, match="solver"):
        LinearSeparatorConcepts(solver="sgd").fit(sample, normalizer)
    with pytest.raises(ValueError, match="labels"):
        MeanConcepts().fit_cls(torch.zeros(2, 5, 32), torch.zeros(4, 3, dtype=torch.bool), [0, 2])
    with pytest.raises(ValueError, match="layers"):
        MeanConcepts().fit_cls(torch.zeros(2, 5, 32), torch.zeros(5, 3, dtype=torch.bool), [0])


def test_auc_helper_sane(planted):
    sample, _, normalizer = planted
    bank = MeanConcepts().fit(sample, normalizer).bank_
    auc, _ = token_auc_f1(sample, bank, normalizer)
    assert auc > 0.95
