"""Clustering helpers against scikit-learn: k-means inertia, NMI, and what whitening does to the features."""

from __future__ import annotations

import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from avformer.metrics.clustering import _lloyd, assign, fit_whitening, kmeans, normalized_mutual_info


def _blobs(
    n_per: int = 60, k: int = 5, dim: int = 8, spread: float = 0.3, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 4
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + spread * torch.randn(k * n_per, dim, generator=g), labels


def test_kmeans_recovers_separated_blobs_and_matches_sklearn_inertia() -> None:
    x, y = _blobs()
    res = kmeans(x, 5, n_init=3, seed=0)
    assert normalized_mutual_info(res.labels, y) == pytest.approx(1.0)
    ref = KMeans(5, n_init=3, random_state=0).fit(x.numpy())
    assert res.inertia == pytest.approx(float(ref.inertia_), rel=1e-3)
    assert torch.equal(assign(x, res.centroids), res.labels)


def test_kmeans_on_overlapping_data_is_as_good_as_sklearn_and_deterministic() -> None:
    x, _ = _blobs(n_per=80, k=8, dim=6, spread=2.5, seed=1)
    ours = kmeans(x, 8, n_init=5, seed=3)
    ref = KMeans(8, n_init=5, random_state=0).fit(x.numpy())
    assert ours.inertia <= float(ref.inertia_) * 1.02  # Lloyd's local optima: within 2 % of scikit-learn's
    again = kmeans(x, 8, n_init=5, seed=3)
    assert torch.equal(ours.labels, again.labels) and ours.inertia == again.inertia


def test_lloyd_reseeds_empty_clusters() -> None:
    # 6 distinct points and 6 centroids that all start far away on one spot: without re-seeding, five clusters
    # stay empty and every point sits in one
    x = torch.cat([torch.zeros(50, 2), torch.tensor([[5.0, 0], [0, 5], [5, 5], [-5, 0], [0, -5]])])
    res = _lloyd(x, torch.full((6, 2), 100.0), max_iter=50, tol=0.0)
    assert torch.bincount(res.labels, minlength=6).min() >= 1
    assert res.inertia == pytest.approx(0.0, abs=1e-6)


def test_kmeans_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        kmeans(torch.randn(10, 2), 0)
    with pytest.raises(ValueError, match="N >= k"):
        kmeans(torch.randn(3, 2), 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nmi_matches_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 7, (300,), generator=g)
    b = torch.where(torch.rand(300, generator=g) < 0.6, a, torch.randint(0, 4, (300,), generator=g))
    assert normalized_mutual_info(a, b) == pytest.approx(normalized_mutual_info_score(a.numpy(), b.numpy()), abs=1e-9)
    assert normalized_mutual_info(a, a + 3) == pytest.approx(1.0)  # a relabeling is a perfect match


def test_nmi_edge_cases_follow_sklearn() -> None:
    const, other = torch.zeros(10, dtype=torch.long), torch.arange(10) % 3
    assert normalized_mutual_info(const, const) == normalized_mutual_info_score(const.numpy(), const.numpy()) == 1.0
    assert normalized_mutual_info(const, other) == pytest.approx(normalized_mutual_info_score(const, other))
    with pytest.raises(ValueError, match="differ in length"):
        normalized_mutual_info(const, other[:5])


def test_whitening_decorrelates_and_normalises() -> None:
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=g)
    x = torch.randn(2000, 6, generator=g) @ mix + 10.0  # correlated, off-centre
    w = fit_whitening(x)
    y = (x - w.mean) @ w.proj
    cov = y.T @ y / (len(y) - 1)
    assert torch.allclose(cov, torch.eye(6), atol=1e-2)
    assert torch.allclose(w(x).norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert fit_whitening(x, 3).proj.shape == (6, 3)
