"""Cross-entropy, BCE and mixup against torch / scikit-learn references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from avformer.losses import binary_cross_entropy, cross_entropy, mixup

B, K = 10, 5


def _logits(seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return 3 * torch.randn(B, K, generator=torch.Generator().manual_seed(seed), dtype=dtype)


TARGET = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
MASK = torch.tensor([True, False, True, True, False, True, True, True, True, False])


# ---- cross-entropy ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_cross_entropy_matches_torch(smoothing: float) -> None:
    logits = _logits()
    expected = F.cross_entropy(logits, TARGET, label_smoothing=smoothing)
    torch.testing.assert_close(cross_entropy(logits, TARGET, label_smoothing=smoothing), expected, rtol=0, atol=1e-12)
    # torch also accepts probability targets with smoothing
    probs = torch.softmax(_logits(1), dim=-1)
    torch.testing.assert_close(
        cross_entropy(logits, probs, label_smoothing=smoothing),
        F.cross_entropy(logits, probs, label_smoothing=smoothing),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_int_target_equals_one_hot_target(smoothing: float) -> None:
    logits = _logits(2)
    one_hot = F.one_hot(TARGET, K).double()
    hard = cross_entropy(logits, TARGET, label_smoothing=smoothing, mask=MASK)
    soft = cross_entropy(logits, one_hot, label_smoothing=smoothing, mask=MASK)
    torch.testing.assert_close(hard, soft, rtol=0, atol=1e-12)


def test_cross_entropy_mask_equals_removal_and_ignores_targets_of_dropped() -> None:
    logits = _logits(3)
    target = TARGET.clone()
    target[~MASK] = -1  # e.g. unlabeled clips: never used as an index
    got = cross_entropy(logits, target, label_smoothing=0.1, mask=MASK)
    expected = F.cross_entropy(logits[MASK], TARGET[MASK], label_smoothing=0.1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    probs = torch.softmax(_logits(4), dim=-1)
    torch.testing.assert_close(cross_entropy(logits, probs, mask=MASK), cross_entropy(logits[MASK], probs[MASK]))


@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_nothing_kept_is_zero_with_finite_grad(soft: bool) -> None:
    logits = _logits(5).requires_grad_()
    target = F.one_hot(TARGET, K).double() if soft else TARGET
    loss = cross_entropy(logits, target, mask=torch.zeros(B, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_cross_entropy_half_precision_is_computed_in_float32() -> None:
    logits = _logits(6, torch.float32)
    loss = cross_entropy(logits.bfloat16(), TARGET)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits, TARGET), rtol=0, atol=0.05)


def test_cross_entropy_shape_errors() -> None:
    with pytest.raises(ValueError):
        cross_entropy(_logits(), torch.zeros(B, K + 1))
    with pytest.raises(ValueError):
        cross_entropy(_logits(), TARGET[:3])
    with pytest.raises(ValueError):
        cross_entropy(_logits(), TARGET, label_smoothing=1.5)


# ---- binary cross-entropy -----------------------------------------------------------------------------------------


def _multi_hot(seed: int = 0) -> torch.Tensor:
    return (torch.rand(B, K, generator=torch.Generator().manual_seed(seed)) < 0.3).double()


def test_bce_matches_sklearn_and_torch() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    logits, target = _logits(7), _multi_hot(1)
    got = binary_cross_entropy(logits, target)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(logits, target), rtol=0, atol=1e-12)
    probs = torch.sigmoid(logits).numpy().ravel()
    expected = metrics.log_loss(target.numpy().ravel(), probs, labels=[0, 1])
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_bce_mask_equals_removal_and_empty_is_zero() -> None:
    logits, target = _logits(8).requires_grad_(), _multi_hot(2)
    torch.testing.assert_close(
        binary_cross_entropy(logits, target, mask=MASK), binary_cross_entropy(logits[MASK], target[MASK])
    )
    loss = binary_cross_entropy(logits, target, mask=torch.zeros(B, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


# ---- mixup --------------------------------------------------------------------------------------------------------


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(9)
    return {"video": torch.randn(B, 3, 2, 4, 4, generator=g), "audio": torch.randn(B, 1, 8, 6, generator=g)}


def test_mixup_is_reproducible_with_a_generator() -> None:
    batch = _batch()
    first = mixup(batch, TARGET, alpha=0.4, num_classes=K, generator=torch.Generator().manual_seed(1))
    again = mixup(batch, TARGET, alpha=0.4, num_classes=K, generator=torch.Generator().manual_seed(1))
    other = mixup(batch, TARGET, alpha=0.4, num_classes=K, generator=torch.Generator().manual_seed(2))
    assert first.lam == again.lam and torch.equal(first.index, again.index)
    for key in batch:
        assert torch.equal(first.inputs[key], again.inputs[key])
    assert torch.equal(first.targets, again.targets)
    assert (first.lam, first.index.tolist()) != (other.lam, other.index.tolist())


def test_mixup_uses_one_lambda_and_permutation_for_all_modalities() -> None:
    batch = _batch()
    out = mixup(batch, TARGET, alpha=1.0, num_classes=K, generator=torch.Generator().manual_seed(3))
    assert 0.0 < out.lam < 1.0
    assert sorted(out.index.tolist()) == list(range(B))
    for key, x in batch.items():
        torch.testing.assert_close(out.inputs[key], out.lam * x + (1 - out.lam) * x[out.index])
    one_hot = F.one_hot(TARGET, K).float()
    torch.testing.assert_close(out.targets, out.lam * one_hot + (1 - out.lam) * one_hot[out.index])
    torch.testing.assert_close(out.targets.sum(dim=-1), torch.ones(B))
    # soft targets feed cross_entropy directly
    assert torch.isfinite(cross_entropy(torch.randn(B, K), out.targets))


def test_mixup_lambda_follows_beta() -> None:
    g = torch.Generator().manual_seed(4)
    lams = torch.tensor([mixup({}, TARGET, alpha=0.5, num_classes=K, generator=g).lam for _ in range(2000)])
    assert lams.mean().item() == pytest.approx(0.5, abs=0.03)  # Beta(a, a) mean
    assert lams.var().item() == pytest.approx(1 / (4 * 2.0), abs=0.02)  # a²/((2a)²(2a+1)) = 1/8 for a = 0.5


def test_mixup_multi_hot_and_alpha_zero() -> None:
    batch, multi_hot = _batch(), _multi_hot(5).float()
    out = mixup(batch, multi_hot, alpha=0.0)
    assert out.lam == 1.0 and torch.equal(out.index, torch.arange(B))
    assert torch.equal(out.targets, multi_hot) and torch.equal(out.inputs["audio"], batch["audio"])
    mixed = mixup(batch, multi_hot, alpha=0.3, generator=torch.Generator().manual_seed(0))
    assert mixed.targets.min() >= 0 and mixed.targets.max() <= 1


def test_mixup_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        mixup(_batch(), TARGET, alpha=0.2)
    with pytest.raises(TypeError):
        mixup({"video": torch.zeros(B, 3, dtype=torch.uint8)}, TARGET, alpha=0.2, num_classes=K)
    with pytest.raises(ValueError):
        mixup({"video": torch.zeros(B + 1, 3)}, TARGET, alpha=0.2, num_classes=K)
    with pytest.raises(ValueError):
        mixup(_batch(), TARGET, alpha=-1.0, num_classes=K)
