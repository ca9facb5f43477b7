"""Multi-view aggregation: stacked views and views grouped by sample id."""

from __future__ import annotations

import pytest
import torch

from avformer.metrics.aggregate import aggregate_by_id, aggregate_views


def test_aggregate_views_hand_case() -> None:
    # one sample, two views; logits chosen so mean-of-probs and mean-of-logits disagree on the argmax
    logits = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])  # (N=1, V=2, K=3)
    probs = logits.softmax(-1)
    mean_prob = aggregate_views(logits)
    torch.testing.assert_close(mean_prob, probs.mean(1))
    assert mean_prob.argmax().item() == 0
    torch.testing.assert_close(mean_prob.sum(-1), torch.ones(1))  # still a distribution
    torch.testing.assert_close(aggregate_views(logits, space="logit"), torch.tensor([[5.0, 1.5, 0.0]]))
    torch.testing.assert_close(aggregate_views(logits, reduce="max", space="logit"), torch.tensor([[10.0, 3.0, 0.0]]))
    torch.testing.assert_close(aggregate_views(logits, reduce="max"), probs.amax(1))
    torch.testing.assert_close(aggregate_views(logits, activation="sigmoid"), logits.sigmoid().mean(1))


def test_aggregate_views_single_view_is_identity_in_logit_space() -> None:
    logits = torch.randn(5, 1, 7)
    torch.testing.assert_close(aggregate_views(logits, space="logit"), logits[:, 0])
    torch.testing.assert_close(aggregate_views(logits), logits[:, 0].softmax(-1))


def test_aggregate_views_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="N, V, K"):
        aggregate_views(torch.randn(4, 3))
    with pytest.raises(ValueError, match="reduce"):
        aggregate_views(torch.randn(2, 2, 3), reduce="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="space"):
        aggregate_views(torch.randn(2, 2, 3), space="log")  # type: ignore[arg-type]


@pytest.mark.parametrize("reduce", ["mean", "max"])
@pytest.mark.parametrize("space", ["prob", "logit"])
def test_by_id_equals_stacked_views_after_shuffling(reduce: str, space: str) -> None:
    n, v, k = 6, 4, 5
    logits = torch.randn(n, v, k)
    ids = [f"vid{i}" for i in range(n)]
    rows = logits.reshape(n * v, k)
    row_ids = [ids[i] for i in range(n) for _ in range(v)]
    perm = torch.randperm(n * v)
    shuffled_ids = [row_ids[p] for p in perm.tolist()]
    out = aggregate_by_id(rows[perm], shuffled_ids, reduce=reduce, space=space)  # type: ignore[arg-type]
    # order: first appearance in the shuffled rows
    expected_order = list(dict.fromkeys(shuffled_ids))
    assert out.ids == expected_order
    stacked = aggregate_views(logits, reduce=reduce, space=space)  # type: ignore[arg-type]
    torch.testing.assert_close(out.scores, stacked[[ids.index(i) for i in expected_order]])
    assert out.num_views.tolist() == [v] * n
    assert out.targets is None


def test_by_id_variable_views_targets_and_int_ids() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [4.0, 4.0], [0.0, 0.0]])
    ids = torch.tensor([7, 3, 7, 7, 3])
    targets = torch.tensor([0, 1, 0, 0, 1])
    out = aggregate_by_id(logits, ids, targets, space="logit")
    assert out.ids == [7, 3]
    assert out.num_views.tolist() == [3, 2]
    torch.testing.assert_close(out.scores, torch.tensor([[8 / 3, 5 / 3], [0.0, 1.0]]))
    assert out.targets is not None and out.targets.tolist() == [0, 1]
    # multi-hot targets are grouped row-wise
    multi = torch.tensor([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]])
    assert aggregate_by_id(logits, ids, multi).targets.tolist() == [[1, 0], [0, 1]]  # type: ignore[union-attr]


def test_by_id_rejects_disagreeing_targets_and_length_mismatch() -> None:
    with pytest.raises(ValueError, match="'a'"):
        aggregate_by_id(torch.randn(3, 2), ["a", "b", "a"], torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="ids"):
        aggregate_by_id(torch.randn(3, 2), ["a", "b"])
