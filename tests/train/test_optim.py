"""AdamW parameter groups and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from avformer.config import OptimConfig
from avformer.train.optim import WarmupCosine, adamw_kernel, build_optimizer, lr_at, no_weight_decay_names, param_groups


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))  # 3-D: decayed unless listed
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
        self.proj = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio = _Encoder()
        self.head = nn.Linear(8, 3)
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)
        self.bias_only = nn.Parameter(torch.zeros(2, 3))  # 2-D named like a bias: no decay by name

    def no_weight_decay(self) -> set[str]:
        return set()


def test_param_groups_exclude_norms_biases_and_listed_names() -> None:
    model = _Model()
    assert no_weight_decay_names(model) == {"audio.pos_embed", "audio.cls_token"}
    groups = param_groups(model, 0.05)
    by_wd = {g["weight_decay"]: set(g["names"]) for g in groups}
    assert by_wd[0.05] == {"audio.proj.weight", "head.weight", "bias_only"}
    assert by_wd[0.0] == {
        "audio.pos_embed",
        "audio.cls_token",
        "audio.proj.bias",
        "audio.norm.weight",
        "audio.norm.bias",
        "head.bias",
        "logit_scale",
    }
    assert not any(n.startswith("frozen") for g in groups for n in g["names"])
    # every trainable parameter is in exactly one group
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters() if p.requires_grad)


def test_build_optimizer_uses_config() -> None:
    cfg = OptimConfig(lr=3e-4, weight_decay=0.1, betas=(0.8, 0.95), eps=1e-6)
    opt = build_optimizer(_Model(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert all(g["lr"] == 3e-4 and g["betas"] == (0.8, 0.95) and g["eps"] == 1e-6 for g in opt.param_groups)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), cfg)


def test_lr_at_known_values() -> None:
    kw = {"base_lr": 1.0, "min_lr": 0.1, "warmup_steps": 4, "total_steps": 14}
    assert [lr_at(s, **kw) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warmup, reaching base at step 3
    assert lr_at(4, **kw) == 1.0  # cosine starts at base
    assert lr_at(9, **kw) == pytest.approx(0.55)  # halfway: (base + min) / 2
    assert lr_at(14, **kw) == pytest.approx(0.1) and lr_at(100, **kw) == pytest.approx(0.1)
    assert lr_at(6, **kw) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.2)))
    assert lr_at(0, base_lr=2.0, min_lr=0.0, warmup_steps=0, total_steps=10) == 2.0  # no warmup


def test_warmup_cosine_drives_all_groups_and_resumes() -> None:
    model = _Model()
    opt = torch.optim.AdamW([{"params": [model.head.weight]}, {"params": [model.head.bias], "lr": 0.5}], lr=1.0)
    sched = WarmupCosine(opt, base_lr=1.0, min_lr=0.0, warmup_steps=2, total_steps=10)
    assert sched.get_last_lr() == [0.5, 0.25]  # step 0 of warmup; the second group keeps its 1/2 ratio
    for _ in range(6):
        opt.step()
        sched.step()
    expected = lr_at(6, base_lr=1.0, min_lr=0.0, warmup_steps=2, total_steps=10)
    assert sched.get_last_lr() == pytest.approx([expected, expected / 2])
    opt2 = torch.optim.AdamW([{"params": [model.head.weight]}, {"params": [model.head.bias], "lr": 0.5}], lr=1.0)
    sched2 = WarmupCosine(opt2, base_lr=1.0, min_lr=0.0, warmup_steps=2, total_steps=10)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_adamw_kernel_auto_is_fused_on_cpu_and_foreach_when_sharded() -> None:
    params = list(_Model().parameters())
    assert adamw_kernel(params) == "fused"
    assert adamw_kernel(params, sharded=True) == "foreach"
    assert adamw_kernel(params, "for_loop") == "for_loop"
    opt = build_optimizer(_Model(), OptimConfig())
    assert all(g["fused"] for g in opt.param_groups)
    loop = build_optimizer(_Model(), OptimConfig(implementation="for_loop"))
    assert not any(g["fused"] or g["foreach"] for g in loop.param_groups)
    with pytest.raises(ValueError, match="implementation must be one of"):
        OptimConfig(implementation="apex")


def test_fused_adamw_follows_the_for_loop_kernel_up_to_rounding() -> None:
    """The kernels are the same AdamW: 20 steps with weight decay and both groups end within rounding."""
    weights = {}
    for kernel in ("fused", "for_loop"):
        torch.manual_seed(0)
        model = _Model()
        opt = build_optimizer(model, OptimConfig(lr=1e-2, weight_decay=0.1, implementation=kernel))
        for step in range(20):
            torch.manual_seed(100 + step)
            loss = sum((p * torch.randn_like(p)).sum() for p in model.parameters() if p.requires_grad)
            opt.zero_grad()
            loss.backward()
            opt.step()
        weights[kernel] = _trained(model)
    moved = (weights["for_loop"] - _trained(_fresh_model())).abs()
    assert moved.min() > 1e-4  # every weight moved: the comparison below is not vacuous
    torch.testing.assert_close(weights["fused"], weights["for_loop"], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_keeps_the_kernel_it_was_trained_with() -> None:
    old = build_optimizer(_Model(), OptimConfig(implementation="for_loop"))
    new = build_optimizer(_Model(), OptimConfig())  # auto: fused
    new.load_state_dict(old.state_dict())
    assert not any(g["fused"] for g in new.param_groups)


def _trained(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])


def _fresh_model() -> nn.Module:
    torch.manual_seed(0)
    return _Model()
