"""AVModel: composition by name, outputs, gradients, missing modalities, consistency and the registered variants.

Tiny encoders (spectrogram 1 x 16 x 32, video 3 x 4 x 32 x 32, widths 16-32, 2 heads), as in
tests/fusion/test_bottleneck.py: audio MAT 3 blocks (16, 16->32, 32), final grid 4 x 8; video MViTv2 3 blocks at 32,
final grid 2 x 4 x 4.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avformer.fusion import BottleneckFusion, BottleneckFusionConfig, HeadConfig, LateFusion, LateFusionConfig
from avformer.models.av_model import AVModel, AVModelConfig, AVOutput
from avformer.models.registry import create_model

B, K, E = 3, 5, 8
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


def _model(fusion: str = "bottleneck", fusion_config: Any = None, **kw: Any) -> AVModel:
    if fusion == "bottleneck" and fusion_config is None:
        fusion_config = {"fusion_layers": 2}
    model = AVModel.from_names(
        "mat_tiny",
        "mvit_v2_s_16x4",
        fusion=fusion,
        fusion_config=fusion_config,
        num_classes=K,
        proj_dim=E,
        audio_overrides=AUDIO,
        video_overrides=VIDEO,
        **kw,
    )
    return model.eval()


def _inputs(batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 1, 16, 32), torch.randn(batch, 3, 4, 32, 32)


def _fields(out: AVOutput) -> dict[str, torch.Tensor]:
    return {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if getattr(out, f.name) is not None}


@pytest.mark.parametrize(
    ("fusion", "fusion_config", "per_modality"),
    [
        ("bottleneck", {"fusion_layers": 2}, True),
        ("bottleneck", {"fusion_layers": 2, "mode": "sequential", "head": "concat"}, False),
        ("late", {"mode": "logits"}, True),
        ("late", {"mode": "mean"}, False),
        ("late", {"mode": "concat"}, False),
    ],
)
def test_output_shapes(fusion: str, fusion_config: dict[str, Any], per_modality: bool) -> None:
    model = _model(fusion, fusion_config)
    with torch.no_grad():
        out = model(*_inputs())
    assert isinstance(out, AVOutput)
    assert out.logits.shape == (B, K)
    assert (out.audio_logits is not None) == per_modality and (out.video_logits is not None) == per_modality
    if per_modality:
        assert out.audio_logits is not None and out.video_logits is not None
        assert out.audio_logits.shape == out.video_logits.shape == (B, K)
    assert out.audio_emb.shape == out.video_emb.shape == (B, E)
    assert out.audio_pooled.shape == (B, 32) and out.video_pooled.shape == (B, 32)
    assert out.has_audio.tolist() == [True] * B and out.has_video.tolist() == [True] * B
    assert model.num_features == E


@pytest.mark.parametrize("fusion", ["bottleneck", "late"])
def test_every_parameter_gets_a_finite_grad(fusion: str) -> None:
    model = _model(fusion, {"mode": "sequential", "fusion_layers": 2} if fusion == "bottleneck" else None).train()
    out = model(*_inputs())
    y = torch.tensor([0, 1, 2])
    assert out.audio_logits is not None and out.video_logits is not None
    loss = F.cross_entropy(out.logits, y) + F.cross_entropy(out.audio_logits, y) + F.cross_entropy(out.video_logits, y)
    loss = loss + (out.audio_emb * out.video_emb).sum()  # stands in for AVC
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_zero_fused_layers_equals_two_independent_encoders() -> None:
    model = _model("bottleneck", {"fusion_layers": 0})
    a, v = _inputs()
    with torch.no_grad():
        out = model(a, v)
        torch.testing.assert_close(out.audio_pooled, model.audio_encoder.forward_features(a).pooled, rtol=0, atol=0)
        torch.testing.assert_close(out.video_pooled, model.video_encoder.forward_features(v).pooled, rtol=0, atol=0)
    late = _model("late")
    # the same parameters (every fusion shares the head): without fused layers it is late fusion
    late.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(late(a, v).logits, out.logits, rtol=0, atol=0)


@pytest.mark.parametrize("fusion", ["bottleneck", "late"])
def test_sample_without_audio_is_invariant_to_its_audio_input(fusion: str) -> None:
    model = _model(fusion)
    a, v = _inputs()
    has_audio = torch.tensor([True, False, True])
    a2 = a.clone()
    a2[1] = torch.randn_like(a[1]) * 5
    with torch.no_grad():
        out, out2 = model(a, v, has_audio), model(a2, v, has_audio)
    for name in ("logits", "video_logits", "video_emb", "video_pooled"):
        torch.testing.assert_close(getattr(out2, name)[1], getattr(out, name)[1], rtol=0, atol=0, msg=name)
    assert out.video_logits is not None
    torch.testing.assert_close(out.logits[1], out.video_logits[1])
    assert out.has_audio.tolist() == [True, False, True]


def test_masking_a_whole_modality_gives_single_modality_predictions() -> None:
    model = _model()
    a, v = _inputs()
    off = torch.zeros(B, dtype=torch.bool)
    with torch.no_grad():
        video_only = model(a, v, has_audio=off)
        audio_only = model(a, v, has_video=off)
        video_only_other_audio = model(torch.zeros_like(a), v, has_audio=off)
    assert video_only.video_logits is not None and audio_only.audio_logits is not None
    torch.testing.assert_close(video_only.logits, video_only.video_logits)
    torch.testing.assert_close(audio_only.logits, audio_only.audio_logits)
    torch.testing.assert_close(video_only_other_audio.logits, video_only.logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("fusion", "fusion_config"),
    [
        ("bottleneck", {"fusion_layers": 2}),
        ("bottleneck", {"fusion_layers": 2, "mode": "sequential", "head": "concat"}),
        ("bottleneck", {"fusion_layers": 0}),
        ("late", {"mode": "logits"}),
        ("late", {"mode": "mean"}),
    ],
)
def test_alone_logits_are_the_masked_single_modality_predictions(fusion: str, fusion_config: dict[str, Any]) -> None:
    """forward(alone=True): the fused pass is unchanged, and each *_alone_logits equals what masking the other
    modality for the whole batch gives (audio-only / video-only evaluation)."""
    model = _model(fusion, fusion_config)
    a, v = _inputs()
    on, off = torch.ones(B, dtype=torch.bool), torch.zeros(B, dtype=torch.bool)
    has_audio = torch.tensor([True, False, True])
    with torch.no_grad():
        plain = model(a, v, has_audio)
        out = model(a, v, has_audio, alone=True)
        audio_only = model(a, v, on, off)
        video_only = model(a, v, off, on)
    assert plain.audio_alone_logits is None and plain.video_alone_logits is None
    for name, value in _fields(plain).items():
        torch.testing.assert_close(getattr(out, name), value, rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(out.audio_alone_logits, audio_only.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.video_alone_logits, video_only.logits, rtol=1e-5, atol=1e-5)


def test_video_alone_logits_carry_no_audio_gradient() -> None:
    """Under bottleneck fusion the fused pass's video logits depend on the audio; the video-alone ones do not."""
    model = _model().train()
    a, v = _inputs()
    a.requires_grad_(True)
    out = model(a, v, alone=True)
    assert out.video_logits is not None and out.video_alone_logits is not None
    (g_fused,) = torch.autograd.grad(out.video_logits.sum(), a, retain_graph=True)
    assert g_fused.abs().sum() > 0
    (g_alone,) = torch.autograd.grad(out.video_alone_logits.sum(), a, allow_unused=True)
    assert g_alone is None or g_alone.abs().sum() == 0


@pytest.mark.parametrize("fusion", ["bottleneck", "late"])
def test_eval_batch_independence(fusion: str) -> None:
    model = _model(fusion)
    a, v = _inputs()
    has_audio = torch.tensor([True, False, True])
    with torch.no_grad():
        full = _fields(model(a, v, has_audio))
        for i in range(B):
            one = _fields(model(a[i : i + 1], v[i : i + 1], has_audio[i : i + 1]))
            for name, value in one.items():
                torch.testing.assert_close(value[0], full[name][i], rtol=1e-5, atol=1e-5, msg=f"{name}[{i}]")


def test_sdpa_equals_eager_and_grad_checkpointing_changes_nothing() -> None:
    model = _model()
    a, v = _inputs()
    with torch.no_grad():
        ref = model(a, v).logits
        model.set_fused(False)
        eager = model(a, v).logits
        model.set_fused(True)
    torch.testing.assert_close(eager, ref, rtol=1e-5, atol=1e-5)
    model.train()
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(ckpt)
        model(a, v).logits.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_parallel_and_sequential_differ() -> None:
    par = _model("bottleneck", {"fusion_layers": 2, "mode": "parallel"})
    seq = _model("bottleneck", {"fusion_layers": 2, "mode": "sequential"})
    seq.load_state_dict(par.state_dict(), strict=False)
    a, v = _inputs()
    with torch.no_grad():
        assert not torch.allclose(par(a, v).logits, seq(a, v).logits)


def test_vit_encoders_compose_too() -> None:
    model = AVModel.from_names(
        "ast_tiny",
        "vit_video_tiny_t4p16",
        fusion="bottleneck",
        fusion_config={"fusion_layers": 1, "num_bottleneck_tokens": 2},
        num_classes=K,
        proj_dim=E,
        proj_mlp=False,
        audio_overrides={"embed_dim": 16, "depth": 2, "num_heads": 2, "num_mel_bins": 16, "num_frames": 32},
        video_overrides={
            "embed_dim": 24,
            "depth": 2,
            "num_heads": 2,
            "num_frames": 4,
            "img_size": 32,
            "tubelet_size": (2, 16, 16),
        },
    ).eval()
    assert isinstance(model.audio_proj, nn.Linear)
    with torch.no_grad():
        out = model(*_inputs(2))
    assert out.logits.shape == (2, K) and out.audio_pooled.shape == (2, 16) and out.video_pooled.shape == (2, 24)


def test_no_weight_decay_merges_encoders_and_fusion() -> None:
    model = _model()
    names = model.no_weight_decay()
    params = dict(model.named_parameters())
    assert names <= set(params)
    assert {"audio_encoder.cls_token", "video_encoder.cls_token", "fusion.bottleneck"} <= names
    assert any(n.startswith("audio_encoder.") and ".rel_pos." in n for n in names)
    late = _model("late", {"mode": "concat"})
    assert {"head.missing_audio", "head.missing_video"} <= late.no_weight_decay()


def test_config_normalisation_and_errors() -> None:
    cfg = AVModelConfig(fusion="late", head={"mode": "mean"})
    assert cfg.fusion_config == LateFusionConfig() and cfg.head == HeadConfig(mode="mean")
    # configs written when the fusion owned the head kept its settings in fusion_config: they move to head
    old = AVModelConfig(fusion="late", fusion_config={"mode": "mean", "drop_rate": 0.1})
    assert old.fusion_config == LateFusionConfig() and old.head == HeadConfig(mode="mean", drop_rate=0.1)
    old = AVModelConfig(fusion_config={"fusion_layers": 2, "head": "concat", "mode": "sequential"})
    assert old.fusion_config == BottleneckFusionConfig(fusion_layers=2, mode="sequential")
    assert old.head == HeadConfig(mode="concat")
    assert AVModelConfig().fusion_config == BottleneckFusionConfig()
    with pytest.raises(TypeError, match="unknown BottleneckFusionConfig field"):
        AVModelConfig(fusion_config={"n_tokens": 2})
    with pytest.raises(TypeError, match="takes a LateFusionConfig"):
        AVModelConfig(fusion="late", fusion_config=BottleneckFusionConfig())
    with pytest.raises(
        ValueError,
        match="unknown fusion 'early'; registered: agnostic, bottleneck, concat, cross_attention, late, sparse, uavm",
    ):
        AVModelConfig(fusion="early")
    with pytest.raises(ValueError, match="owns the heads"):
        AVModelConfig(audio_overrides={"num_classes": 3})
    with pytest.raises(ValueError, match="has a classifier"):
        AVModel(
            create_model("mat_tiny", **AUDIO, num_classes=2),
            create_model("mvit_v2_s_16x4", **VIDEO),
            LateFusionConfig(),
            K,
        )
    with pytest.raises(TypeError, match="audio_overrides"):
        create_model("mmt_tiny", embed_dim=8)


def test_built_fusion_module_is_accepted() -> None:
    audio, video = create_model("mat_tiny", **AUDIO), create_model("mvit_v2_s_16x4", **VIDEO)
    fusion = BottleneckFusion.for_encoders(audio, video, BottleneckFusionConfig(fusion_layers=1))
    model = AVModel(audio, video, fusion, K, proj_dim=E)
    assert model.fusion is fusion and model.cfg is None
    with pytest.raises(TypeError, match="registered fusion's config or a module"):
        AVModel(audio, video, "late", K)


def test_checkpoints_from_when_the_fusion_owned_the_head_still_load() -> None:
    """Before the head was separate its weights were ``fusion.head.*`` (bottleneck) or ``fusion.*`` (late)."""
    for fusion, old_prefix, overrides in (
        ("bottleneck", "fusion.head.", None),
        ("late", "fusion.", {"mode": "concat"}),
    ):
        model = _model(fusion, overrides)
        state = {(old_prefix + k.removeprefix("head.") if k.startswith("head.") else k): t
                 for k, t in model.state_dict().items()}  # fmt: skip
        assert not any(k.startswith("head.") for k in state)
        torch.manual_seed(1)
        fresh = _model(fusion, overrides)
        fresh.load_state_dict(state)
        for k, t in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], t), k


def test_registry_overrides_merge_into_the_variant() -> None:
    with torch.device("meta"):
        model = create_model(
            "mmt_tiny", num_classes=7, fusion_config={"mode": "sequential"}, video_overrides={"drop_path_rate": 0.1}
        )
    assert model.cfg is not None
    fc = model.cfg.fusion_config
    assert isinstance(fc, BottleneckFusionConfig) and (fc.mode, fc.fusion_layers) == ("sequential", 2)
    assert model.cfg.video_overrides["embed_dim"] == 32 and model.cfg.video_overrides["drop_path_rate"] == 0.1
    assert model.num_classes == 7


# Parameter counts at 309 classes, proj_dim 128 (printed with -s); bounds catch an accidental change of size.
_EXPECTED_PARAMS = {
    "mmt_tiny": (3.0e6, 4.0e6),
    "av_late_tiny": (3.0e6, 4.0e6),
    "mmt_small": (65e6, 80e6),
    "mmt_base": (95e6, 115e6),
}


@pytest.mark.parametrize("name", sorted(_EXPECTED_PARAMS))
def test_registered_variants_build_on_meta(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert isinstance(model, AVModel)
    total = sum(p.numel() for p in model.parameters())
    parts = {
        k: sum(p.numel() for p in getattr(model, k).parameters()) for k in ("audio_encoder", "video_encoder", "fusion")
    }
    print(f"{name}: {total:,} parameters ({', '.join(f'{k} {v:,}' for k, v in parts.items())})")
    lo, hi = _EXPECTED_PARAMS[name]
    assert lo <= total <= hi
    assert model.no_weight_decay() <= {n for n, _ in model.named_parameters()}
    assert isinstance(model.fusion, BottleneckFusion if name.startswith("mmt") else LateFusion)


def test_mmt_tiny_runs_at_its_default_input_size() -> None:
    """mat_tiny on 1 x 128 x 1024 (10 s) and the tiny MViTv2 on 3 x 8 x 64 x 64."""
    model = create_model("mmt_tiny", num_classes=K).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 128, 1024), torch.randn(1, 3, 8, 64, 64))
    assert out.logits.shape == (1, K) and out.audio_pooled.shape == (1, 256) and out.video_pooled.shape == (1, 256)
