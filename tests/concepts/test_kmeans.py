import pytest
import torch

from superact_lens.concepts import KMeansConcepts, KMeansSeparatorConcepts, elbow_k
from superact_lens.concepts._lloyd import kmeans
from superact_lens.normalization import Normalizer
from superact_lens.sinks.token_sample import TokenSample


def clustered_sample(n: int = 1200, k: int = 4, d: int = 16, seed: int = 0):
    """Tokens around ``k`` well separated centres (two layers, second scaled and shifted)."""
    g = torch.Generator().manual_seed(seed)
    centres = 6.0 * torch.linalg.qr(torch.randn(d, k, generator=g))[0].T
    assign = torch.arange(n) % k
    x = centres[assign] + 0.5 * torch.randn(n, d, generator=g)
    emb = torch.stack([x, 2 * x + 1])
    labels = torch.zeros(n, 1, dtype=torch.bool)
    sample = TokenSample([0, 3], emb, labels, labels, torch.arange(n) // 10)
    normalizer = Normalizer([0, 3], emb.mean(1), emb.std(1))
    return sample, normalizer, centres, assign


def test_elbow_rule():
    assert elbow_k([2, 4, 8, 16, 32], [100, 20, 15, 12, 10]) == 4
    assert elbow_k([2, 4, 8, 16, 32], [100, 90, 80, 20, 18]) == 16
    with pytest.raises(ValueError, match="ks"):
        elbow_k([], [])


def test_lloyd_deterministic_and_recovers_clusters():
    sample, _, centres, assign = clustered_sample()
    x = sample.embeddings[0]
    c1, lab1, inertia = kmeans(x, 4, seed=3)
    c2, lab2, _ = kmeans(x, 4, seed=3)
    assert torch.equal(c1, c2) and torch.equal(lab1, lab2)
    # Every planted cluster is one k-means cluster.
    for j in range(4):
        assert len(torch.unique(lab1[assign == j])) == 1
    assert inertia == pytest.approx(((x - c1[lab1]) ** 2).sum().item(), rel=1e-4)


def test_kmeans_concepts_elbow_and_centroids():
    sample, normalizer, centres, _ = clustered_sample()
    est = KMeansConcepts(seed=0).fit(sample, normalizer)
    bank = est.bank_
    assert est.n_clusters_ == 4
    assert bank.names == [f"cluster_{j}" for j in range(4)]
    assert (bank.kind, bank.cosine, bank.metadata["unsupervised"]) == ("kmeans", True, True)
    assert bank.vectors.shape == (2, 4, 16)
    for r, layer in enumerate(bank.layers):
        z_centres = normalizer.apply(centres if layer == 0 else 2 * centres + 1, layer)
        cos = torch.einsum("kd,jd->kj", bank.vectors[r], torch.nn.functional.normalize(z_centres))
        assert (cos.max(0).values > 0.95).all(), cos


def test_kmeans_fixed_k_seed_and_bounded_subsample():
    sample, normalizer, _, _ = clustered_sample()
    a = KMeansConcepts(n_clusters=6, seed=1, max_tokens=500).fit(sample, normalizer)
    b = KMeansConcepts(n_clusters=6, seed=1, max_tokens=500).fit(sample, normalizer)
    assert torch.equal(a.bank_.vectors, b.bank_.vectors)
    assert a.labels_.shape == (2, 500) and a.bank_.metadata["n_fit_tokens"] == 500
    with pytest.raises(ValueError, match="n_clusters"):
        KMeansConcepts(n_clusters=5000).fit(sample, normalizer)


def test_kmeans_separators_separate_clusters():
    sample, normalizer, _, assign = clustered_sample()
    est = KMeansSeparatorConcepts(n_clusters=4, seed=0).fit(sample, normalizer)
    bank = est.bank_
    assert (bank.kind, bank.cosine, bank.metadata["unsupervised"]) == ("klinsep", False, True)
    assert torch.allclose(bank.vectors.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    scores = bank.score(sample.embeddings[1], 3, normalizer)  # [n, K]
    labels = est.labels_[1]
    rows = est.indices_
    for j in range(4):
        member = labels == j
        s = scores[rows, j]
        assert s[member].min() > s[~member].max()  # well separated clusters


def test_kmeans_cls_level():
    sample, normalizer, _, _ = clustered_sample()
    labels = torch.zeros(sample.embeddings.shape[1], 2, dtype=torch.bool)
    bank = KMeansConcepts(n_clusters=4).fit_cls(sample.embeddings, labels, [0, 3], normalizer).bank_
    assert bank.level == "cls" and bank.vectors.shape == (2, 4, 16)
