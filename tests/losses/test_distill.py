"""Self-distillation parts: centring, sharpening, soft cross-entropy, the momentum update, MMD, refinement."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from avformer.losses.distill import (
    XKD_MMD_GAMMAS,
    Centre,
    ProjectionHead,
    cosine_momentum,
    distill_cross_entropy,
    entropy,
    gaussian_kernel,
    mmd,
    momentum_update_,
    refine_by_attention,
    teacher_distribution,
    warmup_value,
)


# ---- centring ------------------------------------------------------------------------------------------------------
def test_centre_follows_its_momentum_exactly() -> None:
    c = Centre(4, momentum=0.9)
    assert torch.equal(c.value, torch.zeros(4))
    a, b = torch.randn(6, 4), torch.randn(3, 4)
    c.update(a)
    expected = 0.1 * a.mean(0)
    torch.testing.assert_close(c.value, expected)
    c.update(b)
    torch.testing.assert_close(c.value, 0.9 * expected + 0.1 * b.mean(0))


def test_centre_update_reads_masked_rows_only_and_skips_an_empty_mask() -> None:
    c = Centre(3, momentum=0.5)
    t = torch.randn(4, 3)
    mask = torch.tensor([True, False, True, False])
    c.update(t, mask)
    torch.testing.assert_close(c.value, 0.5 * t[mask].mean(0))
    before = c.value.clone()
    c.update(torch.full((4, 3), math.nan), torch.zeros(4, dtype=torch.bool))
    assert torch.equal(c.value, before)


def test_centre_tracks_the_running_mean() -> None:
    c = Centre(5, momentum=0.9)
    mean = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0])
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        c.update(mean + 0.1 * torch.randn(64, 5, generator=g))
    torch.testing.assert_close(c.value, mean, atol=0.02, rtol=0)


# ---- targets and the loss ------------------------------------------------------------------------------------------
def test_teacher_distribution_centres_sharpens_and_has_no_gradient() -> None:
    t = torch.randn(8, 16, requires_grad=True)
    centre = torch.randn(16)
    q = teacher_distribution(t, centre, 0.05)
    assert not q.requires_grad
    torch.testing.assert_close(q.sum(-1), torch.ones(8))
    torch.testing.assert_close(q, torch.softmax((t.detach() - centre) / 0.05, dim=-1))
    sharper, softer = teacher_distribution(t, centre, 0.02), teacher_distribution(t, centre, 0.5)
    assert entropy(sharper).mean() < entropy(q).mean() < entropy(softer).mean()


def test_cross_entropy_is_the_formula_and_only_the_student_gets_gradient() -> None:
    s = torch.randn(5, 7, requires_grad=True)
    t = torch.randn(5, 7, requires_grad=True)
    q = teacher_distribution(t, torch.zeros(7), 0.04)
    loss = distill_cross_entropy(s, q, 0.1)
    expected = -(q * torch.log_softmax(s / 0.1, dim=-1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_uniform_student_is_at_ln_k_whatever_the_teacher() -> None:
    k = 32
    q = teacher_distribution(torch.randn(4, k), torch.zeros(k), 0.04)
    loss = distill_cross_entropy(torch.zeros(4, k), q, 0.1)
    assert float(loss) == pytest.approx(math.log(k), rel=1e-6)


def test_cross_entropy_mask_equals_dropping_rows() -> None:
    s, q = torch.randn(6, 5), torch.softmax(torch.randn(6, 5), -1)
    mask = torch.tensor([True, False, True, True, False, True])
    torch.testing.assert_close(distill_cross_entropy(s, q, 0.1, mask), distill_cross_entropy(s[mask], q[mask], 0.1))
    s.requires_grad_(True)
    zero = distill_cross_entropy(s, q, 0.1, torch.zeros(6, dtype=torch.bool))
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_centring_removes_the_reward_for_a_collapsed_teacher() -> None:
    # a teacher that gives every clip the same output, peaked on one dimension: without centring its targets are
    # one-hot, and a student that copies the collapse is rewarded with a CE near 0; once the centre has tracked
    # that constant output the targets are uniform and the same student pays at least ln K
    k, b = 16, 32
    collapsed = torch.zeros(b, k)
    collapsed[:, 3] = 5.0
    student = collapsed.clone() * 4  # copies the collapse
    no_centre = distill_cross_entropy(student, teacher_distribution(collapsed, torch.zeros(k), 0.04), 0.1)
    centre = Centre(k, momentum=0.9)
    for _ in range(100):
        centre.update(collapsed)
    targets = teacher_distribution(collapsed, centre.value, 0.04)
    with_centre = distill_cross_entropy(student, targets, 0.1)
    assert float(no_centre) < 0.01
    assert float(entropy(targets).mean()) == pytest.approx(math.log(k), rel=1e-3)
    assert float(with_centre) >= math.log(k) - 1e-3


# ---- projection head -----------------------------------------------------------------------------------------------
def test_projection_head_output_is_layer_normed_and_last_layer_rows_have_unit_norm() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(12, 40, hidden_dim=24, bottleneck_dim=8, nlayers=3)
    x = torch.randn(5, 12)
    y = head(x)
    assert y.shape == (5, 40)
    torch.testing.assert_close(y.mean(-1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)
    with torch.no_grad():  # the last layer's row norms are fixed at 1: scaling its weight changes nothing
        head.last_layer.weight.mul_(3.0)
    torch.testing.assert_close(head(x), y)
    assert [type(m).__name__ for m in head.mlp] == ["Linear", "LayerNorm", "GELU", "Linear", "LayerNorm", "GELU",
                                                    "Linear"]  # fmt: skip
    assert not any(p.requires_grad for p in head.last_norm.parameters())


def test_projection_head_every_parameter_gets_gradient() -> None:
    head = ProjectionHead(6, 10, hidden_dim=8, bottleneck_dim=4, nlayers=2, norm_last_layer=False)
    head(torch.randn(3, 6)).pow(2).sum().backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---- momentum teacher ----------------------------------------------------------------------------------------------
def test_momentum_update_is_the_formula() -> None:
    student = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p))
    before = {n: p.clone() for n, p in teacher.named_parameters()}
    momentum_update_(teacher, student, 0.75)
    for n, p in teacher.named_parameters():
        torch.testing.assert_close(p, 0.75 * before[n] + 0.25 * dict(student.named_parameters())[n])
    momentum_update_(teacher, student, 0.0)  # m = 0: a copy
    for (_, p), (_, q) in zip(teacher.named_parameters(), student.named_parameters(), strict=True):
        assert torch.equal(p, q)


def test_momentum_update_moves_a_shared_parameter_once() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = self.a  # one module under two names

    student = Shared()
    teacher = copy.deepcopy(student)
    assert teacher.a is teacher.b
    with torch.no_grad():
        teacher.a.weight.fill_(1.0)
        student.a.weight.fill_(0.0)
    momentum_update_(teacher, student, 0.5)
    torch.testing.assert_close(teacher.a.weight, torch.full((2, 2), 0.5))  # not 0.25 (updated twice)


def test_momentum_update_refuses_another_structure() -> None:
    with pytest.raises(ValueError, match="different parameters"):
        momentum_update_(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2)), 0.9)


def test_schedules() -> None:
    assert cosine_momentum(0.997, 1.0, 0.0) == pytest.approx(0.997)
    assert cosine_momentum(0.997, 1.0, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.99, 1.0, 0.5) == pytest.approx(0.995)
    for w in (1, 2, 5):
        ref = np.linspace(0.04, 0.07, w)
        for e in range(w):
            assert warmup_value(0.04, 0.07, w, e) == pytest.approx(float(ref[e]))
        assert warmup_value(0.04, 0.07, w, w + 3) == 0.07
    assert warmup_value(0.04, 0.07, 0, 0) == 0.07


# ---- MMD -----------------------------------------------------------------------------------------------------------
def test_mmd_is_zero_for_identical_samples_small_for_one_distribution_and_grows_with_a_shift() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = torch.randn(256, 4, generator=g)
    assert float(mmd(x, x)) == pytest.approx(0.0, abs=1e-5)
    same = float(mmd(x, y))
    shifts = [float(mmd(x, y + s)) for s in (0.5, 1.0, 2.0, 4.0)]
    assert same < 0.3 * shifts[0]
    # the biased estimator's diagonal costs O(1/N) for two samples of one distribution
    assert float(mmd(x[:32], y[:32])) > same > 0
    assert all(a < b for a, b in itertools.pairwise(shifts))
    assert shifts[-1] <= 2 * len(XKD_MMD_GAMMAS)
    assert float(mmd(y + 1.0, x)) == pytest.approx(float(mmd(x, y + 1.0)), rel=1e-5)


def test_mmd_kernel_is_the_multi_bandwidth_gaussian() -> None:
    x, y = torch.randn(3, 5), torch.randn(4, 5)
    d = torch.cdist(x, y).pow(2)
    expected = sum(torch.exp(-g * d) for g in XKD_MMD_GAMMAS)
    torch.testing.assert_close(gaussian_kernel(x, y), expected, atol=1e-4, rtol=1e-4)


def test_kernel_self_distance_is_exactly_zero_for_large_vectors() -> None:
    # the expanded square |x|² + |x|² - 2 x·x leaves rounding noise on the diagonal, which γ = 1e3 would amplify
    x = 30 * torch.randn(16, 256)
    torch.testing.assert_close(gaussian_kernel(x, x).diagonal(), torch.full((16,), float(len(XKD_MMD_GAMMAS))))


def test_mmd_gradient_pulls_the_distributions_together() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, generator=g)
    y = (torch.randn(64, 3, generator=g) + 1.5).requires_grad_(True)
    opt = torch.optim.Adam([y], lr=0.05)
    first = float(mmd(x, y.detach()))
    for _ in range(100):
        opt.zero_grad()
        mmd(x, y).backward()
        opt.step()
    assert float(mmd(x, y.detach())) < 0.2 * first
    assert float((y.detach().mean(0) - x.mean(0)).norm()) < 0.5  # the 1.5 · √3 mean shift is mostly gone


# ---- refinement ----------------------------------------------------------------------------------------------------
def test_refinement_mean_mode_weights_tokens_by_their_attention_and_keeps_the_energy() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 5, 8, generator=g)
    a = torch.softmax(torch.randn(2, 3, 5, generator=g), -1)
    other = torch.softmax(torch.randn(2, 3, 7, generator=g), -1)
    out = refine_by_attention(x, a, other, "mean")
    torch.testing.assert_close(out.mean(1).pow(2).sum(-1), x.mean(1).pow(2).sum(-1))  # energy of the mean kept
    # "mean" mode: when every head of the other modality spreads the same total attention (rows summing to 1, as
    # the attention received without a CLS token), its factor cancels in the rescaling ...
    other2 = torch.softmax(torch.randn(2, 3, 4, generator=g), -1)
    torch.testing.assert_close(out, refine_by_attention(x, a, other2, "mean"))
    own = (a / a.mean(-1, keepdim=True)).mean(1).unsqueeze(-1)  # the teacher's own attention, mean over heads
    direction = (own * x).mean(1)
    torch.testing.assert_close(
        torch.nn.functional.normalize(out.mean(1), dim=-1), torch.nn.functional.normalize(direction, dim=-1)
    )
    # ... while heads with different totals (a CLS row without the CLS column) weigh the heads differently
    uneven = other2 * torch.tensor([0.2, 1.0, 5.0])[None, :, None]
    assert not torch.allclose(refine_by_attention(x, a, uneven, "mean"), out, atol=1e-4)
    uniform = torch.full((2, 3, 5), 0.2)  # equal attention: the tokens are unchanged
    torch.testing.assert_close(refine_by_attention(x, uniform, other, "mean"), x)
    soft = refine_by_attention(x, a, other, "softmax")
    torch.testing.assert_close(soft.mean(1).pow(2).sum(-1), x.mean(1).pow(2).sum(-1))
    with pytest.raises(ValueError, match="mode"):
        refine_by_attention(x, a, other, "max")
