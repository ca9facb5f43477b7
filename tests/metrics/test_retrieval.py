"""Retrieval metrics: recall@K / ranks against sklearn and hand cases, class-relevance mAP at chance and at 1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avformer.metrics.retrieval import (
    class_relevance_map,
    paired_retrieval_metrics,
    ranks_of_targets,
    similarity_matrix,
)

skm = pytest.importorskip("sklearn.metrics")


def test_similarity_matrix_is_cosine() -> None:
    q, g = torch.randn(5, 16), torch.randn(7, 16)
    sim = similarity_matrix(q, g)
    ref = skm.pairwise.cosine_similarity(q.numpy(), g.numpy())
    np.testing.assert_allclose(sim.numpy(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(similarity_matrix(q, g, normalize=False), q @ g.T)
    with pytest.raises(ValueError):
        similarity_matrix(torch.randn(3, 4), torch.randn(3, 5))


def test_paired_metrics_hand_case() -> None:
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.0],  # rank 1
            [0.8, 0.5, 0.6, 0.0],  # rank 3
            [0.1, 0.2, 0.7, 0.3],  # rank 1
            [0.4, 0.4, 0.4, 0.4],  # all tied: pessimistic rank 4
        ]
    )
    assert ranks_of_targets(sim).tolist() == [1, 3, 1, 4]
    out = paired_retrieval_metrics(sim, ks=(1, 3, 10))
    assert out == {"R@1": 0.5, "R@3": 0.75, "R@10": 1.0, "median_rank": 2.0, "mean_rank": 2.25}


def test_paired_metrics_match_sklearn_topk_and_argsort_ranks() -> None:
    n = 200
    v = torch.randn(n, 32)
    a = v + 1.5 * torch.randn(n, 32)  # noisy pairs: recall between chance and 1
    sim = similarity_matrix(v, a)
    out = paired_retrieval_metrics(sim)
    for k in (1, 5, 10):
        ref = skm.top_k_accuracy_score(np.arange(n), sim.numpy(), k=k, labels=np.arange(n))
        assert out[f"R@{k}"] == pytest.approx(ref)
    order = np.argsort(-sim.numpy(), axis=1)
    ranks = np.argmax(order == np.arange(n)[:, None], axis=1) + 1
    assert out["median_rank"] == pytest.approx(float(np.median(ranks)))
    assert out["mean_rank"] == pytest.approx(float(ranks.mean()))
    assert 0.0 < out["R@1"] < 1.0


def test_paired_metrics_with_explicit_targets() -> None:
    # 6 captions for 3 videos (2 each): caption j belongs to video j // 2
    videos = torch.randn(3, 8)
    captions = videos.repeat_interleave(2, dim=0) + 0.01 * torch.randn(6, 8)
    sim = similarity_matrix(captions, videos)
    out = paired_retrieval_metrics(sim, targets=torch.arange(6) // 2)
    assert out["R@1"] == 1.0 and out["median_rank"] == 1.0
    with pytest.raises(ValueError, match="Q <= G"):
        ranks_of_targets(sim)


def test_class_relevance_map_perfect_and_chance() -> None:
    num_classes, per_class = 5, 200
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    perfect = torch.nn.functional.one_hot(labels, num_classes).float() + 0.0
    sim = similarity_matrix(perfect, perfect)
    assert class_relevance_map(sim, labels, labels) == pytest.approx(1.0)
    assert class_relevance_map(sim, labels, labels, exclude_self=True) == pytest.approx(1.0)

    rand = torch.randn(labels.shape[0], 64)
    m = class_relevance_map(similarity_matrix(rand, rand), labels, labels, exclude_self=True)
    assert m == pytest.approx(1 / num_classes, abs=0.02)


def test_class_relevance_map_matches_sklearn_per_query() -> None:
    q_labels = torch.randint(0, 4, (30,))
    g_labels = torch.randint(0, 4, (80,))
    g_labels[g_labels == 3] = 2  # queries of class 3 have no relevant item: excluded
    sim = torch.round(torch.randn(30, 80) * 3) / 3  # coarse values: many ties
    aps = [
        skm.average_precision_score((g_labels == q_labels[i]).numpy(), sim[i].numpy())
        for i in range(30)
        if (g_labels == q_labels[i]).any()
    ]
    assert class_relevance_map(sim, q_labels, g_labels) == pytest.approx(float(np.mean(aps)), abs=1e-12)


def test_class_relevance_map_exclude_self_matches_dropping_the_item() -> None:
    labels = torch.randint(0, 3, (25,))
    emb = torch.randn(25, 6)
    sim = similarity_matrix(emb, emb)
    aps = []
    for i in range(25):
        keep = torch.arange(25) != i
        rel = (labels[keep] == labels[i]).numpy()
        if rel.any():
            aps.append(skm.average_precision_score(rel, sim[i, keep].numpy()))
    assert class_relevance_map(sim, labels, labels, exclude_self=True) == pytest.approx(float(np.mean(aps)))
    assert math.isnan(class_relevance_map(sim[:1, :1], labels[:1], labels[:1], exclude_self=True))
