"""Bottleneck fusion (MBT / AVBottleneck) and the staged-encoder hooks it relies on.

Tiny encoders, widths worked out by hand:
    audio: MAT on (1, F=16, T=32); patch (3, 3) / (2, 2) / pad 1 -> 8 x 16 tokens; stage 2 pools (2, 2) -> 4 x 8.
        3 blocks, (D_in, D_out) = (16, 16), (16, 32), (32, 32); 2 heads.
    video: MViTv2 on (3, T=4, 32, 32); patch (3, 7, 7) / (2, 4, 4) -> 2 x 8 x 8; stage 2 pools (1, 2, 2) -> 2 x 4 x 4.
        3 blocks, all 32 wide; 2 heads.
With ``fusion_layers=2`` the fused blocks are audio 1-2 and video 1-2; the bottleneck is 32 wide (the widest fused
width) and only the audio read map of the first fused layer (32 -> 16) is a Linear, every other map the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from avformer.fusion.bottleneck import BottleneckFusion, BottleneckFusionConfig, check_staged_encoder
from avformer.fusion.head import FusionHead, HeadConfig
from avformer.models.multiscale import MultiScaleBlock
from avformer.models.registry import create_model

B = 3
AUDIO: dict[str, Any] = {
    "input_size": (16, 32),
    "patch_kernel": (3, 3),
    "patch_stride": (2, 2),
    "patch_padding": (1, 1),
    "embed_dim": 16,
    "num_heads": 2,
    "stages": ((1, (1, 1), 1, 1), (2, (2, 2), 2, 1)),
    "kv_stride": (2, 4),
}
VIDEO: dict[str, Any] = {
    "input_size": (4, 32, 32),
    "embed_dim": 32,
    "num_heads": 2,
    "stages": ((1, (1, 1, 1), 1, 1), (2, (1, 2, 2), 1, 1)),
    "kv_stride": (1, 4, 4),
}


def _encoders() -> tuple[nn.Module, nn.Module]:
    return create_model("mat_tiny", **AUDIO).eval(), create_model("mvit_v2_s_16x4", **VIDEO).eval()


def _inputs(batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 1, 16, 32), torch.randn(batch, 3, 4, 32, 32)


class _WithHead(nn.Module):
    """The bottleneck interaction and a classifier head, as ``AVModel`` pairs them (head built first, then the
    fusion's init), with the two-call interface these tests use."""

    def __init__(self, audio: nn.Module, video: nn.Module, cfg: BottleneckFusionConfig) -> None:
        super().__init__()
        self.fusion = BottleneckFusion.for_encoders(audio, video, cfg)
        self.head = FusionHead(int(audio.num_features), int(video.num_features), 5)
        self.fusion.init_weights()

    def __getattr__(self, name: str) -> Any:  # the fusion's attributes (bottleneck, audio_in, ...) as its own
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["fusion"], name)

    def encode(self, *args: Any, **kw: Any) -> tuple[Any, ...]:
        res = self.fusion(*args, **kw)
        return (res.audio, res.video, res.audio_alone, res.video_alone) if kw.get("alone") else (res.audio, res.video)

    def forward(self, *args: Any) -> Any:
        return self.head(*args)


def _fusion(audio: nn.Module, video: nn.Module, **cfg: Any) -> _WithHead:
    return _WithHead(audio, video, BottleneckFusionConfig(**cfg)).eval()


def _run(fusion: _WithHead, enc: tuple[nn.Module, nn.Module], a: torch.Tensor, v: torch.Tensor, **kw: Any):
    with torch.no_grad():
        fa, fv = fusion.encode(enc[0], enc[1], a, v, **kw)
        return fa, fv, fusion(fa.pooled, fv.pooled, kw.get("has_audio"), kw.get("has_video"))


# ---- staged-encoder hooks (multiscale.py / vit.py / pooling_attention.py) -----------------------------------------

_VIT_VIDEO = {"embed_dim": 16, "depth": 2, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16)}
_STAGED: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "mat": ("mat_tiny", AUDIO, (1, 16, 32)),
    "mvit": ("mvit_v2_s_16x4", VIDEO, (3, 4, 32, 32)),
    "mvit_no_cls": ("mvit_v2_s_16x4", {**VIDEO, "cls_token": False}, (3, 4, 32, 32)),
    "ast": (
        "ast_tiny",
        {"embed_dim": 16, "depth": 2, "num_heads": 2, "num_mel_bins": 16, "num_frames": 32},
        (1, 16, 32),
    ),
    "vit_video": ("vit_video_tiny_t4p16", _VIT_VIDEO, (3, 4, 32, 32)),
}


@pytest.mark.parametrize("key", sorted(_STAGED))
def test_staged_forward_equals_forward_features(key: str) -> None:
    name, overrides, shape = _STAGED[key]
    model = create_model(name, **overrides).eval()
    check_staged_encoder(model, "test")
    x = torch.randn(2, *shape)
    with torch.no_grad():
        ref = model.forward_features(x)
        seq, grid = model.embed(x)
        assert seq.shape[1] == model.num_prefix_tokens + torch.Size(grid).numel()
        for i in range(len(model.blocks)):
            seq, grid = model.forward_block(i, seq, grid)
        out = model.finalize(seq, grid)
    assert len(model.block_dims()) == len(model.blocks)
    assert model.block_dims()[-1][1] == model.num_features
    torch.testing.assert_close(out.tokens, ref.tokens, rtol=0, atol=0)
    torch.testing.assert_close(out.pooled, ref.pooled, rtol=0, atol=0)
    assert out.grid == ref.grid


@pytest.mark.parametrize("fused", [True, False])
def test_extra_prefix_tokens_are_treated_exactly_like_the_class_token(fused: bool) -> None:
    """A pooling block (q stride 2, kv stride 2, rel-pos, residual pooling) on [p0, p1, p2 ; 4 x 4 grid] with
    ``num_prefix_tokens=3``: permuting the prefix tokens permutes their outputs and leaves the grid outputs
    unchanged, so the extra ones (bottleneck tokens) get the class token's treatment: not pooled, no relative
    position, no pooled residual. The grid shrinks to 2 x 2 and the prefix keeps its 3 tokens."""
    blk = MultiScaleBlock(
        8, 16, 2, q_stride=(2, 2), kv_stride=(2, 2), pool_kernel=(3, 3), rel_pos_grid=(4, 4), fused=fused
    ).eval()
    x = torch.randn(2, 3 + 16, 8)
    perm = [2, 0, 1]
    x_perm = torch.cat((x[:, perm], x[:, 3:]), dim=1)
    with torch.no_grad():
        y, grid = blk(x, (4, 4), 3)
        y_perm, _ = blk(x_perm, (4, 4), 3)
        y_default, _ = blk(x[:, 2:], (4, 4))  # default: one prefix (class) token, the old behaviour
        y_one, _ = blk(x[:, 2:], (4, 4), 1)
    assert grid == (2, 2) and y.shape == (2, 3 + 4, 16)
    torch.testing.assert_close(y_perm[:, :3], y[:, perm])
    torch.testing.assert_close(y_perm[:, 3:], y[:, 3:])
    torch.testing.assert_close(y_default, y_one, rtol=0, atol=0)


# ---- fusion --------------------------------------------------------------------------------------------------------


def test_widths_projections_and_fusion_start() -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=2)
    assert (fusion.audio_fusion_start, fusion.video_fusion_start) == (1, 1)
    assert fusion.bottleneck_dim == 32 and fusion.bottleneck is not None
    assert fusion.bottleneck.shape == (1, 4, 32)
    assert isinstance(fusion.audio_in[0], nn.Linear) and fusion.audio_in[0].out_features == 16
    linears = [n for n, m in fusion.fusion.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["audio_in.0"]
    assert fusion.no_weight_decay() == {"bottleneck"}


def test_zero_fused_layers_equals_two_independent_encoders() -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=0)
    assert fusion.bottleneck is None
    a, v = _inputs()
    fa, fv, _ = _run(fusion, (audio, video), a, v)
    with torch.no_grad():
        torch.testing.assert_close(fa.tokens, audio.forward_features(a).tokens, rtol=0, atol=0)
        torch.testing.assert_close(fv.pooled, video.forward_features(v).pooled, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_one_fused_layer_sends_nothing_from_audio_to_video(mode: str) -> None:
    """The bottleneck written by the last fused layer is dropped, so with one fused layer video reads only the learned
    z_0: its output does not depend on audio in either mode. Audio depends on video only in sequential mode (the
    audio block reads the bottleneck the video block just wrote)."""
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=1, mode=mode)
    a, v = _inputs()
    a2, v2 = torch.randn_like(a), torch.randn_like(v)
    fa, fv, _ = _run(fusion, (audio, video), a, v)
    _, fv_a2, _ = _run(fusion, (audio, video), a2, v)
    fa_v2, _, _ = _run(fusion, (audio, video), a, v2)
    torch.testing.assert_close(fv_a2.tokens, fv.tokens, rtol=0, atol=0)
    if mode == "parallel":
        torch.testing.assert_close(fa_v2.tokens, fa.tokens, rtol=0, atol=0)
    else:
        assert not torch.allclose(fa_v2.pooled, fa.pooled)
    # the fused block still sees the bottleneck tokens: fusion differs from running the encoders alone
    with torch.no_grad():
        assert not torch.allclose(fv.pooled, video.forward_features(v).pooled)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_audio_reaches_video_only_through_the_fused_blocks(mode: str) -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=2, mode=mode)
    a, v = _inputs()
    outputs: list[list[torch.Tensor]] = [[], []]

    def record(k: int) -> Callable[..., None]:
        return lambda m, args, out: outputs[k].append(out[0])

    for k, audio_input in enumerate((a, torch.randn_like(a))):
        hooks = [blk.register_forward_hook(record(k)) for blk in video.blocks]
        _, fv, _ = _run(fusion, (audio, video), audio_input, v)
        outputs[k].append(fv.pooled)
        for h in hooks:
            h.remove()
    (before, fused_first, fused_last, pooled), (before2, fused_first2, fused_last2, pooled2) = outputs
    torch.testing.assert_close(before2, before, rtol=0, atol=0)  # block 0 runs before fusion starts
    torch.testing.assert_close(fused_first2, fused_first, rtol=0, atol=0)  # reads z_0 (no audio yet)
    assert not torch.allclose(fused_last2, fused_last)  # reads z_1, which audio wrote
    assert not torch.allclose(pooled2, pooled)


def test_parallel_and_sequential_differ() -> None:
    audio, video = _encoders()
    par = _fusion(audio, video, fusion_layers=2, mode="parallel")
    seq = _fusion(audio, video, fusion_layers=2, mode="sequential")
    shared = {k: v for k, v in par.state_dict().items() if k in seq.state_dict()}
    seq.load_state_dict(shared, strict=False)  # same bottleneck, read maps and head; seq has one more write map
    a, v = _inputs()
    fa_p, fv_p, _ = _run(par, (audio, video), a, v)
    fa_s, fv_s, _ = _run(seq, (audio, video), a, v)
    assert not torch.allclose(fa_p.pooled, fa_s.pooled)
    assert not torch.allclose(fv_p.pooled, fv_s.pooled)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_sample_without_audio_is_invariant_to_its_audio_input(mode: str) -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=3, mode=mode)
    a, v = _inputs()
    has_audio = torch.tensor([True, False, True])
    _, fv, out = _run(fusion, (audio, video), a, v, has_audio=has_audio)
    a2 = a.clone()
    a2[1] = torch.randn_like(a[1]) * 10
    _, fv2, out2 = _run(fusion, (audio, video), a2, v, has_audio=has_audio)
    torch.testing.assert_close(fv2.tokens[1], fv.tokens[1], rtol=0, atol=0)
    torch.testing.assert_close(out2.logits[1], out.logits[1], rtol=0, atol=0)
    assert out.video_logits is not None
    torch.testing.assert_close(out.logits[1], out.video_logits[1])  # video-only prediction
    # with its audio present the same change does reach the video side
    _, fv3, _ = _run(fusion, (audio, video), a2, v)
    _, fv4, _ = _run(fusion, (audio, video), a, v)
    assert not torch.allclose(fv3.tokens[1], fv4.tokens[1])
    # not even NaN leaks from an absent modality
    a2[1] = float("nan")
    _, fv5, out5 = _run(fusion, (audio, video), a2, v, has_audio=has_audio)
    torch.testing.assert_close(fv5.tokens[1], fv.tokens[1], rtol=0, atol=0)
    torch.testing.assert_close(out5.logits[1], out.logits[1], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_sample_without_video_is_invariant_to_its_video_input(mode: str) -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=2, mode=mode)
    a, v = _inputs()
    has_video = torch.tensor([False, True, True])
    fa, _, out = _run(fusion, (audio, video), a, v, has_video=has_video)
    v2 = v.clone()
    v2[0] = torch.randn_like(v[0])
    fa2, _, out2 = _run(fusion, (audio, video), a, v2, has_video=has_video)
    torch.testing.assert_close(fa2.tokens[0], fa.tokens[0], rtol=0, atol=0)
    torch.testing.assert_close(out2.logits[0], out.logits[0], rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_every_fusion_and_encoder_parameter_gets_a_finite_grad(mode: str) -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=2, mode=mode)
    for m in (audio, video, fusion):
        m.train()
    a, v = _inputs()
    fa, fv = fusion.encode(audio, video, a, v)
    fusion(fa.pooled, fv.pooled).logits.square().sum().backward()
    for prefix, module in (("audio.", audio), ("video.", video), ("fusion.", fusion)):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), prefix + name


def test_sdpa_equals_eager() -> None:
    audio, video = _encoders()
    fusion = _fusion(audio, video, fusion_layers=2)
    a, v = _inputs()
    _, _, ref = _run(fusion, (audio, video), a, v)
    for enc in (audio, video):
        enc.set_fused(False)
    _, _, eager = _run(fusion, (audio, video), a, v)
    torch.testing.assert_close(eager.logits, ref.logits, rtol=1e-5, atol=1e-5)


def test_vit_encoders_of_equal_width_fuse_without_projections() -> None:
    ast = create_model("ast_tiny", embed_dim=16, depth=3, num_heads=2, num_mel_bins=16, num_frames=32).eval()
    vid = create_model("vit_video_tiny_t4p16", **{**_VIT_VIDEO, "depth": 3}).eval()
    fusion = _fusion(ast, vid, fusion_layers=2)
    assert not [n for n, m in fusion.fusion.named_modules() if isinstance(m, nn.Linear)]
    a, v = _inputs()
    fa, fv, out = _run(fusion, (ast, vid), a, v)
    assert fa.tokens.shape == (B, 2, 16) and fv.tokens.shape == (B, 8, 16)  # (1 x 2) and (2 x 2 x 2) patches
    assert out.logits.shape == (B, 5)


def test_validation() -> None:
    audio, video = _encoders()
    with pytest.raises(ValueError, match="exceeds the depth"):
        _fusion(audio, video, fusion_layers=4)
    with pytest.raises(ValueError, match="mode"):
        BottleneckFusionConfig(mode="interleaved")
    with pytest.raises(ValueError, match="num_bottleneck_tokens"):
        BottleneckFusionConfig(num_bottleneck_tokens=0)
    with pytest.raises(ValueError, match=r"HeadConfig\.mode"):
        HeadConfig(mode="max")
    with pytest.raises(TypeError, match="lacks"):
        BottleneckFusion.for_encoders(nn.Linear(2, 2), video)
    fusion = _fusion(audio, video, fusion_layers=2)
    shallow = create_model("mat_tiny", **{**AUDIO, "stages": ((1, (1, 1), 1, 1), (1, (2, 2), 2, 1))})
    with pytest.raises(ValueError, match="sized for"):
        fusion.encode(shallow, video, *_inputs())
