"""Classification metrics against scikit-learn (random data, ties, empty classes) and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avformer.metrics.classification import (
    ClassificationMetrics,
    average_precision,
    confusion_matrix,
    d_prime,
    mean_average_precision,
    mean_per_class_accuracy,
    per_class_accuracy,
    roc_auc,
    roc_auc_per_class,
    topk_accuracy,
)

skm = pytest.importorskip("sklearn.metrics")


# ---- single-label ------------------------------------------------------------------------------


def test_topk_hand_case() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 2, 1, 2])
    # ranks of the target: 1, 3, 2, 3
    acc = topk_accuracy(logits, target, ks=(1, 2, 3, 5))
    assert acc == {"top1": 0.25, "top2": 0.5, "top3": 1.0, "top5": 1.0}  # k=5 clipped to K=3


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_matches_sklearn(k: int) -> None:
    logits = torch.randn(300, 12)
    target = torch.randint(0, 12, (300,))
    ours = topk_accuracy(logits, target, ks=(k,))[f"top{k}"]
    ref = skm.top_k_accuracy_score(target.numpy(), logits.numpy(), k=k, labels=np.arange(12))
    assert ours == pytest.approx(ref, abs=1e-12)


def test_topk_accepts_one_hot_target_and_empty() -> None:
    logits = torch.randn(20, 4)
    target = torch.randint(0, 4, (20,))
    one_hot = torch.nn.functional.one_hot(target, 4).float()
    assert topk_accuracy(logits, one_hot) == topk_accuracy(logits, target)
    assert all(math.isnan(v) for v in topk_accuracy(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).values())


def test_confusion_matrix_matches_sklearn_and_orientation() -> None:
    pred = torch.randint(0, 6, (500,))
    target = torch.randint(0, 6, (500,))
    cm = confusion_matrix(pred, target, 6)
    np.testing.assert_array_equal(cm.numpy(), skm.confusion_matrix(target.numpy(), pred.numpy(), labels=range(6)))
    # rows are the truth: one sample of class 0 predicted as 2
    assert confusion_matrix(torch.tensor([2]), torch.tensor([0]), 3)[0, 2] == 1
    # (N, K) scores are argmaxed
    logits = torch.randn(50, 6)
    assert torch.equal(confusion_matrix(logits, target[:50], 6), confusion_matrix(logits.argmax(1), target[:50], 6))
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)


def test_per_class_and_mean_class_accuracy_hand_case() -> None:
    target = torch.tensor([0, 0, 0, 0, 1, 1, 3])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 3])
    acc = per_class_accuracy(pred, target, num_classes=4)
    expected = torch.tensor([0.75, 0.5, math.nan, 1.0], dtype=torch.float64)
    torch.testing.assert_close(acc, expected, equal_nan=True)
    assert mean_per_class_accuracy(pred, target, num_classes=4) == pytest.approx(0.75)  # (0.75 + 0.5 + 1) / 3


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_mean_class_accuracy_matches_balanced_accuracy() -> None:
    target = torch.randint(0, 9, (400,))
    target[target == 4] = 5  # class 4 absent: excluded from the mean, as in sklearn
    pred = torch.where(torch.rand(400) < 0.5, target, torch.randint(0, 9, (400,)))
    ref = skm.balanced_accuracy_score(target.numpy(), pred.numpy())
    assert mean_per_class_accuracy(pred, target, 9) == pytest.approx(ref, abs=1e-12)


# ---- multi-label -------------------------------------------------------------------------------


def _sk_map(scores: np.ndarray, target: np.ndarray) -> tuple[float, int]:
    aps = [
        skm.average_precision_score(target[:, k], scores[:, k]) for k in range(target.shape[1]) if target[:, k].any()
    ]
    return float(np.mean(aps)), target.shape[1] - len(aps)


def _sk_auc(scores: np.ndarray, target: np.ndarray) -> float:
    n = target.shape[0]
    aucs = [skm.roc_auc_score(target[:, k], scores[:, k]) for k in range(target.shape[1]) if 0 < target[:, k].sum() < n]
    return float(np.mean(aucs))


def test_average_precision_hand_cases() -> None:
    # ranking: pos (0.9), neg (0.8), pos (0.7) -> AP = (1/2)·1 + (1/2)·(2/3)
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    target = torch.tensor([[1], [0], [1]])
    assert average_precision(scores, target).item() == pytest.approx(0.5 + 1 / 3)
    # all tied: one threshold, AP = precision over everything = 2/4
    assert average_precision(torch.zeros(4, 1), torch.tensor([[1], [0], [1], [0]])).item() == pytest.approx(0.5)
    # tie of a positive and a negative at the top, then a positive: (1/2)·(1/2) + (1/2)·(2/3)
    scores = torch.tensor([[0.9], [0.9], [0.1]])
    target = torch.tensor([[1], [0], [1]])
    assert average_precision(scores, target).item() == pytest.approx(0.25 + 1 / 3)


def test_map_excludes_and_counts_classes_without_positives() -> None:
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.6, 0.3, 0.2]])
    target = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    result = mean_average_precision(scores, target)
    assert result.num_excluded == 1 and result.num_used == 2
    assert math.isnan(result.per_class[2])
    assert float(result) == pytest.approx(1.0)
    # no class with a positive at all
    assert math.isnan(mean_average_precision(scores, torch.zeros_like(target)).value)


@pytest.mark.parametrize("levels", [None, 5, 2])  # continuous scores, heavy ties, binary scores
def test_map_and_auc_match_sklearn_random(levels: int | None) -> None:
    n, k = 400, 30
    scores = torch.rand(n, k)
    if levels is not None:
        scores = torch.floor(scores * levels) / levels
    target = (torch.rand(n, k) < torch.linspace(0.01, 0.5, k)).long()
    target[:, 3] = 0  # no positive
    target[:, 7] = 1  # no negative: AP defined (= 1 for any ranking), AUC excluded
    target[:, 11] = 0
    target[5, 11] = 1  # exactly one positive

    ours = mean_average_precision(scores, target)
    ref, ref_excluded = _sk_map(scores.numpy(), target.numpy())
    assert ours.value == pytest.approx(ref, abs=1e-12)
    assert ours.num_excluded == ref_excluded == 1
    for c in (0, 7, 11, 29):
        assert ours.per_class[c].item() == pytest.approx(skm.average_precision_score(target[:, c], scores[:, c]))

    auc = roc_auc(scores, target)
    assert auc.value == pytest.approx(_sk_auc(scores.numpy(), target.numpy()), abs=1e-12)
    assert auc.num_excluded == 2
    assert math.isnan(roc_auc_per_class(scores, target)[3]) and math.isnan(roc_auc_per_class(scores, target)[7])


def test_map_chunked_over_many_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    import avformer.metrics.classification as metrics

    scores = torch.randn(64, 50)
    target = (torch.rand(64, 50) < 0.2).long()
    full_ap, full_auc = average_precision(scores, target), roc_auc_per_class(scores, target)
    monkeypatch.setattr(metrics, "_CLASS_CHUNK", 7)
    torch.testing.assert_close(average_precision(scores, target), full_ap, equal_nan=True)
    torch.testing.assert_close(roc_auc_per_class(scores, target), full_auc, equal_nan=True)


def test_auc_hand_case_with_tie() -> None:
    # positives 0.9 and 0.5, negatives 0.5 and 0.1: pairs won 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    scores = torch.tensor([0.9, 0.5, 0.5, 0.1])
    target = torch.tensor([1, 1, 0, 0])
    assert roc_auc(scores, target).value == pytest.approx(0.875)


def test_d_prime() -> None:
    assert d_prime(0.5) == 0.0
    assert math.isinf(d_prime(1.0))
    # sqrt(2) · Φ⁻¹(0.8413447) = sqrt(2) · 1
    assert d_prime(0.8413447460685429) == pytest.approx(math.sqrt(2), abs=1e-9)
    scipy_stats = pytest.importorskip("scipy.stats")
    aucs = torch.tensor([0.6, 0.75, 0.93, 0.99], dtype=torch.float64)
    expected = math.sqrt(2) * scipy_stats.norm.ppf(aucs.numpy())
    np.testing.assert_allclose(d_prime(aucs).numpy(), expected, rtol=1e-12)


# ---- accumulator -------------------------------------------------------------------------------


def test_accumulator_single_label_matches_one_shot() -> None:
    logits = torch.randn(257, 10)
    target = torch.randint(0, 10, (257,))
    acc = ClassificationMetrics(10)
    for chunk in range(0, 257, 64):
        acc.update(logits[chunk : chunk + 64], target[chunk : chunk + 64])
    out = acc.compute()
    one_shot = topk_accuracy(logits, target)
    assert out["top1"] == pytest.approx(one_shot["top1"]) and out["top5"] == pytest.approx(one_shot["top5"])
    assert out["mean_class_acc"] == pytest.approx(skm.balanced_accuracy_score(target, logits.argmax(1)))
    assert out["num_samples"] == 257
    assert torch.equal(acc.confusion, confusion_matrix(logits, target, 10))
    acc.reset()
    assert acc.num_samples == 0 and math.isnan(acc.compute()["top1"])


def test_accumulator_multi_label_and_merge() -> None:
    logits = torch.randn(120, 8)
    target = (torch.rand(120, 8) < 0.3).long()
    target[:, 2] = 0
    a = ClassificationMetrics(8, multi_label=True)
    b = ClassificationMetrics(8, multi_label=True)
    a.update(logits[:50], target[:50])
    b.update(logits[50:], target[50:])
    a.merge(b)
    out = a.compute()
    ref_map, _ = _sk_map(logits.numpy(), target.numpy())
    ref_auc = _sk_auc(logits.numpy(), target.numpy())
    assert out["mAP"] == pytest.approx(ref_map, abs=1e-9)
    assert out["AUC"] == pytest.approx(ref_auc, abs=1e-9)
    assert out["d_prime"] == pytest.approx(d_prime(ref_auc), abs=1e-8)
    assert out["mAP_excluded_classes"] == 1 and out["AUC_excluded_classes"] == 1
    assert out["num_samples"] == 120
    with pytest.raises(ValueError):
        a.merge(ClassificationMetrics(8))
    with pytest.raises(ValueError):
        a.update(torch.randn(4, 7), torch.zeros(4, 7))
