"""Tests of the multiscale transformer (MAT / MViTv2) and its pooling-attention layers.

Grids are worked out by hand in the comments: the patch embedding and every pooling use ``(n + 2p - k) // s + 1``,
which with odd kernels padded by ``k // 2`` is ``ceil(n / s)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from avformer.layers.pooling_attention import PoolingAttention
from avformer.layers.rel_pos import decomposed_rel_pos_bias, resize_rel_pos_table
from avformer.models.base import EncoderOutput
from avformer.models.multiscale import (
    MultiscaleConfig,
    MultiscaleTransformer,
    StageSpec,
)
from avformer.models.registry import create_model

# ---- tiny configs --------------------------------------------------------------------------------------------------

# Spectrogram (1, F=16, T=32): patch (3, 3) / (2, 2) / pad 1 -> 8 x 16; stage 2 pools time -> 8 x 8; stage 3 pools
# both -> 4 x 4. Widths 16, 32, 32; heads 2, 2, 4.
AUDIO = MultiscaleConfig(
    input_size=(16, 32),
    in_chans=1,
    patch_kernel=(3, 3),
    patch_stride=(2, 2),
    patch_padding=(1, 1),
    embed_dim=16,
    num_heads=2,
    stages=(StageSpec(1, (1, 1)), StageSpec(1, (1, 2), 2, 1), StageSpec(2, (2, 2), 2, 2)),
    pool_kernel=(3, 3),
    kv_stride=(2, 4),
)
# Video (3, T=4, 32, 32): patch (3, 7, 7) / (2, 4, 4) / (1, 3, 3) -> 2 x 8 x 8; stage 2 -> 2 x 4 x 4;
# stage 3 -> 2 x 2 x 2.
VIDEO = MultiscaleConfig(
    input_size=(4, 32, 32),
    embed_dim=16,
    num_heads=2,
    stages=(StageSpec(1, (1, 1, 1)), StageSpec(1, (1, 2, 2), 2, 1), StageSpec(1, (1, 2, 2), 2, 2)),
    kv_stride=(1, 4, 4),
)


def _block_token_counts(model: MultiscaleTransformer, x: torch.Tensor) -> list[int]:
    counts: list[int] = []
    hooks = [b.register_forward_hook(lambda m, a, out: counts.append(out[0].shape[1])) for b in model.blocks]
    with torch.no_grad():
        model.forward_features(x)
    for h in hooks:
        h.remove()
    return counts


# ---- shapes --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "grids"),
    [
        ((16, 32), [(8, 16), (8, 8), (4, 4), (4, 4)]),
        # non-divisible: F 13 -> 7 -> 7 -> 4; T 25 -> 13 -> 7 -> 4 (ceil at every pooling)
        ((13, 25), [(7, 13), (7, 7), (4, 4), (4, 4)]),
    ],
)
def test_token_grid_2d_spectrogram(size: tuple[int, int], grids: list[tuple[int, int]]) -> None:
    model = MultiscaleTransformer(AUDIO).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        out = model.forward_features(x)
    assert isinstance(out, EncoderOutput)
    assert out.grid == grids[-1]
    assert out.tokens.shape == (2, math.prod(grids[-1]), 32)
    assert out.pooled.shape == (2, 32)
    assert model.num_features == 32
    assert _block_token_counts(model, x) == [1 + math.prod(g) for g in grids]  # + class token


@pytest.mark.parametrize(
    ("size", "grids"),
    [
        ((4, 32, 32), [(2, 8, 8), (2, 4, 4), (2, 2, 2)]),
        # non-divisible: T 5 -> 3; H 30 -> 8 -> 4 -> 2; W 26 -> 7 -> 4 -> 2
        ((5, 30, 26), [(3, 8, 7), (3, 4, 4), (3, 2, 2)]),
    ],
)
def test_token_grid_3d_video(size: tuple[int, int, int], grids: list[tuple[int, int, int]]) -> None:
    model = MultiscaleTransformer(VIDEO, num_classes=7).eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = model.forward_features(x)
        logits = model(x)
    assert out.grid == grids[-1]
    assert out.tokens.shape == (2, math.prod(grids[-1]), 32)
    assert logits.shape == (2, 7)
    assert _block_token_counts(model, x) == [1 + math.prod(g) for g in grids]


def test_mean_pooling_without_class_token() -> None:
    model = MultiscaleTransformer(dataclasses.replace(AUDIO, cls_token=False)).eval()
    x = torch.randn(2, 1, 16, 32)
    with torch.no_grad():
        out = model.forward_features(x)
    assert out.tokens.shape == (2, 16, 32)
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    assert _block_token_counts(model, x) == [128, 64, 16, 16]  # no class token
    assert "cls_token" not in dict(model.named_parameters())


def test_wrong_input_rank_or_channels_raises() -> None:
    model = MultiscaleTransformer(AUDIO)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 1, 1, 16, 32))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.randn(2, 3, 16, 32))


# ---- gradients -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "shape"),
    [
        (AUDIO, (2, 1, 16, 32)),
        (dataclasses.replace(AUDIO, dim_mul_in_att=False, cls_token=False), (2, 1, 13, 25)),
        (VIDEO, (2, 3, 4, 32, 32)),
    ],
    ids=["audio", "audio-widen-in-mlp-mean-pool", "video"],
)
def test_every_parameter_gets_a_finite_grad(cfg: MultiscaleConfig, shape: tuple[int, ...]) -> None:
    model = MultiscaleTransformer(cfg, num_classes=3).train()
    params = dict(model.named_parameters())
    if cfg.cls_token:
        assert "cls_token" in params
    assert any(".attn.rel_pos." in n for n in params)
    feats = model.forward_features(torch.randn(shape))
    # logits alone would leave the last block's query pooling without gradient: the class token reads only keys
    (model.forward_head(feats).square().mean() + feats.tokens.square().mean()).backward()
    bad = [n for n, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert bad == []


def test_widen_in_mlp_places_width_change_at_stage_end() -> None:
    in_att = MultiscaleTransformer(AUDIO)
    in_mlp = MultiscaleTransformer(dataclasses.replace(AUDIO, dim_mul_in_att=False))
    # stage 2 (block 1) doubles 16 -> 32: in its attention, or in the MLP of block 0 (the last of stage 1)
    assert in_att.blocks[1].attn.qkv.weight.shape == (3 * 32, 16)
    assert in_att.blocks[0].mlp.fc2.out_features == 16
    assert in_mlp.blocks[0].mlp.fc2.out_features == 32
    assert in_mlp.blocks[1].attn.qkv.weight.shape == (3 * 32, 32)


def test_drop_path_rises_linearly() -> None:
    model = MultiscaleTransformer(AUDIO, drop_path_rate=0.3)
    assert [b.drop_path.p for b in model.blocks] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_adaptive_kv_stride_follows_query_pooling() -> None:
    model = MultiscaleTransformer(AUDIO)
    # kv (2, 4) / q strides (1,1), (1,2), (2,2), (1,1) -> (2, 4), (2, 2), (1, 1), (1, 1): the last has no kv pooling
    strides = [b.attn.pool_k.pool.stride if b.attn.pool_k is not None else None for b in model.blocks]
    assert strides == [(2, 4), (2, 2), (1, 1), (1, 1)]
    fixed = MultiscaleTransformer(dataclasses.replace(AUDIO, adaptive_kv_stride=False))
    assert {b.attn.pool_k.pool.stride for b in fixed.blocks} == {(2, 4)}


# ---- consistency ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "shape"), [(AUDIO, (2, 1, 13, 25)), (VIDEO, (2, 3, 4, 32, 32))], ids=["audio", "video"]
)
def test_fused_matches_eager(cfg: MultiscaleConfig, shape: tuple[int, ...]) -> None:
    model = MultiscaleTransformer(cfg, num_classes=5).eval()
    x = torch.randn(shape, requires_grad=True)
    model.set_fused(True)
    assert model.fused
    out_f = model(x)
    (gx_f,) = torch.autograd.grad(out_f.square().sum(), x)
    model.set_fused(False)
    assert not model.fused
    out_e = model(x)
    (gx_e,) = torch.autograd.grad(out_e.square().sum(), x)
    torch.testing.assert_close(out_f, out_e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_f, gx_e, atol=1e-5, rtol=1e-4)


def test_grad_checkpointing_matches_plain_forward_and_grads() -> None:
    model = MultiscaleTransformer(AUDIO, num_classes=4, drop_path_rate=0.2).train()
    x = torch.randn(3, 1, 16, 32)

    def run(ckpt: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.set_grad_checkpointing(ckpt)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # same drop-path masks in both runs
        out = model(x)
        out.square().mean().backward()
        return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    out_plain, g_plain = run(False)
    out_ckpt, g_ckpt = run(True)
    torch.testing.assert_close(out_ckpt, out_plain)
    assert g_ckpt.keys() == g_plain.keys()
    for name in g_plain:
        torch.testing.assert_close(g_ckpt[name], g_plain[name], msg=name)


@pytest.mark.parametrize(
    ("cfg", "shape"), [(AUDIO, (3, 1, 16, 32)), (VIDEO, (3, 3, 4, 32, 32))], ids=["audio", "video"]
)
def test_eval_batch_independence(cfg: MultiscaleConfig, shape: tuple[int, ...]) -> None:
    model = MultiscaleTransformer(cfg, num_classes=5, drop_rate=0.5, drop_path_rate=0.5).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        full = model(x)
        for i in range(shape[0]):
            torch.testing.assert_close(full[i : i + 1], model(x[i : i + 1]), atol=1e-5, rtol=1e-5)


def test_other_input_sizes_reuse_the_weights() -> None:
    # rel-pos tables are sized for (16, 32); 1/2 and 2x the time extent resample them (same parameters)
    model = MultiscaleTransformer(AUDIO).eval()
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        short = model.forward_features(torch.randn(1, 1, 16, 12))  # T 12 -> 6 -> 3 -> 2
        long = model.forward_features(torch.randn(1, 1, 16, 64))  # T 64 -> 32 -> 16 -> 8
    assert short.grid == (4, 2) and long.grid == (4, 8)
    assert torch.isfinite(short.tokens).all() and torch.isfinite(long.tokens).all()
    assert sum(p.numel() for p in model.parameters()) == n_params


# ---- pooling attention vs a naive reference ------------------------------------------------------------------------


def _naive_token_pool(
    t: torch.Tensor, grid: tuple[int, int], weight: torch.Tensor, stride: tuple[int, int], ln: torch.nn.LayerNorm
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Depthwise conv by explicit windows over a 2-D grid; class token kept; LayerNorm after. t: (B, h, 1 + N, d)."""
    B, h, _, d = t.shape
    cls, rest = t[:, :, :1], t[:, :, 1:].reshape(B, h, grid[0], grid[1], d)
    kf, kt = weight.shape[-2:]
    padded = F.pad(rest, (0, 0, kt // 2, kt // 2, kf // 2, kf // 2))  # pad T then F with zeros
    out_f = (grid[0] + 2 * (kf // 2) - kf) // stride[0] + 1
    out_t = (grid[1] + 2 * (kt // 2) - kt) // stride[1] + 1
    w = weight[:, 0].permute(1, 2, 0)  # (kf, kt, d): one filter per channel, shared by the heads
    rows = []
    for i in range(out_f):
        for j in range(out_t):
            window = padded[:, :, i * stride[0] : i * stride[0] + kf, j * stride[1] : j * stride[1] + kt]
            rows.append((window * w).sum(dim=(2, 3)))  # (B, h, d)
    pooled = torch.stack(rows, dim=2)
    x = torch.cat((cls, pooled), dim=2)
    return F.layer_norm(x, (d,), ln.weight, ln.bias, ln.eps), (out_f, out_t)


def _naive_rel_pos(
    q: torch.Tensor, q_grid: tuple[int, int], k_grid: tuple[int, int], tables: list[torch.Tensor]
) -> torch.Tensor:
    """bias[b, h, (qi, qj), (ki, kj)] = q · (R_F[offset_F] + R_T[offset_T]); offsets measured on the finer grid."""

    def offset(qa: int, ka: int, nq: int, nk: int) -> int:
        step_q, step_k = max(nk / nq, 1.0), max(nq / nk, 1.0)  # positions scaled to the finer grid
        return int(qa * step_q - ka * step_k + (nk - 1) * step_k)

    rows = []
    for qi in range(q_grid[0]):
        for qj in range(q_grid[1]):
            qv = q[:, :, qi * q_grid[1] + qj]  # (B, h, d)
            cols = []
            for ki in range(k_grid[0]):
                for kj in range(k_grid[1]):
                    r = (
                        tables[0][offset(qi, ki, q_grid[0], k_grid[0])]
                        + tables[1][offset(qj, kj, q_grid[1], k_grid[1])]
                    )
                    cols.append((qv * r).sum(-1))
            rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=2)  # (B, h, Nq, Nk)


def _naive_pooling_attention(attn: PoolingAttention, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    B, n, _ = x.shape
    h, d = attn.num_heads, attn.head_dim
    qkv = x @ attn.qkv.weight.t() + attn.qkv.bias  # (B, 1 + N, 3 h d), laid out [q | k | v], heads inside
    q, k, v = (qkv[..., i * h * d : (i + 1) * h * d].reshape(B, n, h, d).transpose(1, 2) for i in range(3))
    assert attn.pool_q is not None and attn.pool_k is not None and attn.pool_v is not None
    q, q_grid = _naive_token_pool(q, grid, attn.pool_q.pool.weight, attn.pool_q.pool.stride, attn.pool_q.norm)
    k, k_grid = _naive_token_pool(k, grid, attn.pool_k.pool.weight, attn.pool_k.pool.stride, attn.pool_k.norm)
    v, _ = _naive_token_pool(v, grid, attn.pool_v.pool.weight, attn.pool_v.pool.stride, attn.pool_v.norm)
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    assert attn.rel_pos is not None
    bias = _naive_rel_pos(q[:, :, 1:], q_grid, k_grid, list(attn.rel_pos))
    logits = torch.cat((logits[:, :, :, :1], torch.cat((logits[:, :, :1, 1:], logits[:, :, 1:, 1:] + bias), 2)), 3)
    out = logits.softmax(-1) @ v
    out = torch.cat((out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]), dim=2)  # residual pooling, not on the class token
    out = out.transpose(1, 2).reshape(B, -1, h * d)
    return out @ attn.proj.weight.t() + attn.proj.bias


@pytest.mark.parametrize("fused", [True, False])
def test_pooling_attention_matches_naive_reference_forward_and_backward(fused: bool) -> None:
    # grid 4 x 6; q pooled (1, 2) -> 4 x 3; kv pooled (2, 2) -> 2 x 3; width 8 -> 16 inside attention, 2 heads
    attn = PoolingAttention(
        8, 16, 2, q_stride=(1, 2), kv_stride=(2, 2), pool_kernel=(3, 3), rel_pos_grid=(4, 6), fused=fused
    )
    with torch.no_grad():  # non-trivial norms so a mix-up of the three pools would show
        for p in (attn.pool_q, attn.pool_k, attn.pool_v):
            assert p is not None and p.norm is not None
            p.norm.weight.normal_(1.0, 0.2)
            p.norm.bias.normal_(0.0, 0.2)
        for table in attn.rel_pos or []:
            table.normal_(0.0, 0.5)  # large enough to matter
    assert [tuple(t.shape) for t in attn.rel_pos or []] == [
        (7, 8),
        (5, 8),
    ]  # 2 max(q 4, kv 2) - 1, 2 max(q 3, kv 3) - 1
    x = torch.randn(2, 1 + 24, 8, requires_grad=True)
    out, q_grid = attn(x, (4, 6))
    ref = _naive_pooling_attention(attn, x, (4, 6))
    assert q_grid == (4, 3) and out.shape == (2, 1 + 12, 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)

    g = torch.randn_like(out)
    params = [x, *attn.parameters()]
    grads = torch.autograd.grad(out, params, g)
    grads_ref = torch.autograd.grad(ref, params, g)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_pooling_attention_gradcheck_float64(fused: bool) -> None:
    # grid 3 x 4 (odd, non-divisible): q pooled (2, 2) -> 2 x 2; kv (2, 1) -> 2 x 4; 2 heads of width 2
    attn = PoolingAttention(
        4, 4, 2, q_stride=(2, 2), kv_stride=(2, 1), pool_kernel=(3, 3), rel_pos_grid=(3, 4), fused=fused
    ).double()
    assert attn.rel_pos is not None
    x = torch.randn(1, 1 + 12, 4, dtype=torch.float64, requires_grad=True)
    t0 = attn.rel_pos[0].detach().clone().requires_grad_(True)
    t1 = attn.rel_pos[1].detach().clone().requires_grad_(True)

    def f(x: torch.Tensor, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        return functional_call(attn, {"rel_pos.0": t0, "rel_pos.1": t1}, (x, (3, 4)))[0]

    assert torch.autograd.gradcheck(f, (x, t0, t1), eps=1e-6, atol=1e-5)


def test_rel_pos_bias_gradcheck_with_table_resampling() -> None:
    # tables sized for other grids (5 and 9 rows) are interpolated to 2 max(q, k) - 1 = 5 and 7 rows
    q = torch.randn(1, 2, 3 * 4, 3, dtype=torch.float64, requires_grad=True)
    t0 = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t1 = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, a, b: decomposed_rel_pos_bias(q, (3, 4), (2, 2), [a, b]), (q, t0, t1))


def test_rel_pos_equal_grids_is_plain_offset_lookup() -> None:
    # same q and k grid: the bias of (i, j) is q_i · (R_F[i_F - j_F + F - 1] + R_T[i_T - j_T + T - 1])
    q = torch.randn(1, 1, 2 * 3, 4)
    tf, tt = torch.randn(3, 4), torch.randn(5, 4)
    bias = decomposed_rel_pos_bias(q, (2, 3), (2, 3), [tf, tt])
    i, j = (1, 0), (0, 2)  # flat 3 and 2
    expected = q[0, 0, 3] @ (tf[i[0] - j[0] + 1] + tt[i[1] - j[1] + 2])
    torch.testing.assert_close(bias[0, 0, 3, 2], expected)


def test_resize_rel_pos_table_is_identity_at_size_and_linear_otherwise() -> None:
    table = torch.arange(5.0).unsqueeze(1).repeat(1, 2)  # rows 0..4
    assert resize_rel_pos_table(table, 5) is table
    up = resize_rel_pos_table(table, 9)
    assert up.shape == (9, 2)
    assert torch.all(up[1:, 0] >= up[:-1, 0])  # a ramp stays a ramp
    torch.testing.assert_close(up[0], table[0])
    torch.testing.assert_close(up[-1], table[-1])


# ---- registry, variants, config ------------------------------------------------------------------------------------

MY_VARIANTS = ["mat_tiny", "mat_small", "mat_base", "mvit_v2_s_16x4", "mvit_v2_b_32x3"]


def _tiny_overrides(name: str) -> tuple[dict[str, Any], tuple[int, ...], tuple[int, ...], int]:
    """Keep each variant's patch embedding and stride schedule, one block per stage, width 16, 1 head at stage 1."""
    with torch.device("meta"):  # the variant's own config, without init cost
        n_axes = len(create_model(name).cfg.input_size)
    if n_axes == 2:
        # (1, 16, 32): patch (15, 7)/(8, 4)/(7, 3) -> 2 x 8; (1, 2) -> 2 x 4; (2, 2) -> 1 x 2; (2, 2) -> 1 x 1
        stages = ((1, (1, 1), 1, 1), (1, (1, 2), 2, 2), (1, (2, 2), 4, 4), (1, (2, 2), 8, 8))
        return {"input_size": (16, 32), "stages": stages}, (1, 16, 32), (1, 1), 16 * 8
    # (3, 4, 32, 32): patch (3, 7, 7)/(2, 4, 4)/(1, 3, 3) -> 2 x 8 x 8 -> 2 x 4 x 4 -> 2 x 2 x 2 -> 2 x 1 x 1
    stages = ((1, (1, 1, 1), 1, 1), (1, (1, 2, 2), 2, 2), (1, (1, 2, 2), 4, 4), (1, (1, 2, 2), 8, 8))
    return {"input_size": (4, 32, 32), "stages": stages}, (3, 4, 32, 32), (2, 1, 1), 16 * 8


@pytest.mark.parametrize("name", MY_VARIANTS)
def test_variant_builds_tiny_with_hand_computed_shape(name: str) -> None:
    overrides, sample, grid, dim = _tiny_overrides(name)
    model = create_model(name, embed_dim=16, num_heads=1, num_classes=3, **overrides).eval()
    assert isinstance(model, MultiscaleTransformer)
    assert model.default_input == sample
    x = torch.randn(2, *sample)
    with torch.no_grad():
        out = model.forward_features(x)
        logits = model.forward_head(out)
    assert out.grid == grid
    assert out.tokens.shape == (2, math.prod(grid), dim)
    assert logits.shape == (2, 3)


@pytest.mark.parametrize(
    ("name", "num_classes", "expected"),
    [
        ("mvit_v2_s_16x4", 400, 34_537_744),  # torchvision MViT_V2_S_Weights meta["num_params"]
        ("mvit_v2_b_32x3", 400, 51_230_128),  # paper Table 4: 51.2M
        ("mat_base", 0, 50_958_624),
        ("mat_small", 0, 34_262_016),
        ("mat_tiny", 0, 1_680_256),
    ],
)
def test_full_size_parameter_counts(name: str, num_classes: int, expected: int) -> None:
    with torch.device("meta"):  # shapes only: no init cost
        model = create_model(name, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_mvit_v2_s_stage_schedule_matches_torchvision_table() -> None:
    with torch.device("meta"):
        model = create_model("mvit_v2_s_16x4")
    heads = [b.attn.num_heads for b in model.blocks]
    widths = [b.mlp.fc2.out_features for b in model.blocks]
    kv = [b.attn.pool_k.pool.stride for b in model.blocks]
    assert heads == [1, 2, 2] + [4] * 11 + [8, 8]
    assert widths == [96, 192, 192] + [384] * 11 + [768, 768]
    assert kv == [(1, 8, 8)] + [(1, 4, 4)] * 2 + [(1, 2, 2)] * 11 + [(1, 1, 1)] * 2
    assert [i for i, b in enumerate(model.blocks) if b.pool_skip is not None] == [1, 3, 14]
    assert [
        tuple(t.shape[0] for t in b.attn.rel_pos) for b in (model.blocks[0], model.blocks[1], model.blocks[15])
    ] == [
        (15, 111, 111),  # q 8 x 56 x 56, kv 8 x 7 x 7
        (15, 55, 55),  # q 8 x 28 x 28, kv 8 x 14 x 14
        (15, 13, 13),  # 8 x 7 x 7
    ]


def test_unknown_override_raises_type_error_listing_fields() -> None:
    with pytest.raises(TypeError, match=r"embed_dimm.*valid config fields.*embed_dim"):
        create_model("mat_tiny", embed_dimm=3)


def test_no_weight_decay_lists_class_token_and_rel_pos_tables() -> None:
    model = MultiscaleTransformer(AUDIO)
    nwd = model.no_weight_decay()
    assert "cls_token" in nwd
    assert sum(".rel_pos." in n for n in nwd) == 2 * len(model.blocks)  # two axes per block
    assert nwd <= dict(model.named_parameters()).keys()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"stages": (StageSpec(1, (1, 1)), StageSpec(1, (1, 1, 2)))}, "q_stride"),
        ({"kv_stride": (1, 2, 2)}, "kv_stride"),
        ({"pool_kernel": (2, 3)}, "odd"),
        ({"embed_dim": 15}, "divisible"),
        ({"input_size": (2, 2), "patch_padding": (0, 0)}, "too small"),
        ({"input_size": (1, 1, 1, 1)}, "grid axes"),
        ({"conv_stem": True, "patch_stride": (3, 4)}, "power-of-2"),
    ],
)
def test_config_validation(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(AUDIO, **changes)


def test_conv_stem_option_keeps_the_token_grid_and_trains() -> None:
    """``conv_stem`` swaps the patch convolution for early convolutions; blocks, rel-pos tables and output stay."""
    plain = MultiscaleTransformer(VIDEO, num_classes=3)
    stem = MultiscaleTransformer(dataclasses.replace(VIDEO, conv_stem=True), num_classes=3)
    assert stem.cfg.patch_grid == plain.cfg.patch_grid
    x = torch.randn(2, *VIDEO.default_input)
    assert plain.embed(x)[1] == stem.embed(x)[1]
    out = stem(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert stem.patch_embed.proj[0].weight.grad is not None


def test_odd_query_stride_is_rejected() -> None:
    with pytest.raises(ValueError, match="1 or even"):
        StageSpec(1, (1, 3))


def test_stage_table_accepts_yaml_style_rows() -> None:
    cfg = dataclasses.replace(AUDIO, stages=[[1, [1, 1]], {"depth": 2, "q_stride": [2, 2], "dim_mult": 2}])
    assert cfg.stages == (StageSpec(1, (1, 1)), StageSpec(2, (2, 2), 2, 1))
    assert cfg.depth == 3


# ---- full size (slow) ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("frames", "grid"), [(1024, (4, 32)), (100, (4, 4))])
def test_mat_base_full_size_forward_at_10s_and_1s(frames: int, grid: tuple[int, int]) -> None:
    model = create_model("mat_base").eval()
    with torch.no_grad():
        out = model.forward_features(torch.randn(1, 1, 128, frames))
    assert out.grid == grid
    assert out.tokens.shape == (1, math.prod(grid), 768)
