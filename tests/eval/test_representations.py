"""Linear probe on frozen features and the retrieval summary of VATT embeddings."""

from __future__ import annotations

import pytest
import torch

from avformer.eval.representations import Embeddings, fit_linear_probe, retrieval_metrics


def test_probe_separable_vs_random_labels() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.arange(400) % 4
    x = centers[y] + torch.randn(400, 16, generator=g)
    res = fit_linear_probe(x[:300], y[:300], x[300:], y[300:], 4)
    assert res["top1"] > 0.95 and res["weight_decay"] in (1e-4, 1e-3, 1e-2, 1e-1)
    shuffled = y[torch.randperm(400, generator=g)]
    rnd = fit_linear_probe(x[:300], shuffled[:300], x[300:], shuffled[300:], 4)
    assert rnd["top1"] < 0.5
    again = fit_linear_probe(x[:300], y[:300], x[300:], y[300:], 4)
    assert again == res  # deterministic


def test_probe_drops_unlabeled_rows_and_needs_labels() -> None:
    x, y = torch.randn(10, 3), torch.tensor([0, 1] * 5)
    y_unl = y.clone()
    y_unl[:4] = -1
    assert fit_linear_probe(x, y_unl, x, y, 2, weight_decays=(1e-2,))["n_train"] == 6
    with pytest.raises(ValueError):
        fit_linear_probe(x, torch.full((10,), -1), x, y, 2)


def test_text_to_video_retrieval_hand_computed() -> None:
    eye = torch.eye(3)
    emb = Embeddings(
        index=torch.arange(3), ids=["a", "b", "c"], paths=["a", "b", "c"], labels=torch.tensor([0, 1, 1]),
        classes=["x", "y"], has_video=torch.ones(3, dtype=torch.bool), has_audio=torch.ones(3, dtype=torch.bool),
        video_pooled=eye, audio_pooled=eye, video_va=eye, audio_va=eye, video_vt=eye,
        texts=["t0", None, "t2"], text_vt=torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0.5]]),
        has_text=torch.tensor([True, False, True]),
    )  # fmt: skip
    m = retrieval_metrics(emb)
    assert m["a2v_R@1"] == 1.0 and m["a2v_median_rank"] == 1.0
    # text 0 -> video 0 at rank 1; text 2 ranks video 1 (0.89) above video 2 (0.45): rank 2
    assert m["t2v_R@1"] == 0.5 and m["t2v_R@5"] == 1.0 and m["t2v_median_rank"] == 1.5
    # class mAP: text 0 (class 0): only video 0 relevant, first -> 1; text 2 (class 1): videos 1, 2 at ranks 1, 2 -> 1
    assert m["t2v_mAP"] == 1.0
