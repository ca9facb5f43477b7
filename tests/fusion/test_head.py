"""The classifier head (three modes, per-sample missing modalities, gradients) and the late-fusion interaction."""

from __future__ import annotations

import pytest
import torch

from avformer.fusion.base import FusionResult, masked_pair_mean, presence_mask
from avformer.fusion.head import FusionHead, HeadConfig
from avformer.fusion.late import LateFusion
from avformer.models.registry import create_model

B, DA, DV, K = 4, 16, 24, 5


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(B, DA), torch.randn(B, DV)


def _fusion(mode: str) -> FusionHead:
    return FusionHead(DA, DV, K, HeadConfig(mode=mode)).eval()


@pytest.mark.parametrize("mode", ["logits", "mean", "concat"])
def test_shapes_and_per_modality_logits(mode: str) -> None:
    a, v = _inputs()
    out = _fusion(mode)(a, v)
    assert out.logits.shape == (B, K)
    if mode == "logits":
        assert out.audio_logits is not None and out.video_logits is not None
        assert out.audio_logits.shape == out.video_logits.shape == (B, K)
        torch.testing.assert_close(out.logits, (out.audio_logits + out.video_logits) / 2)
    else:
        assert out.audio_logits is None and out.video_logits is None


def test_logits_mode_uses_only_present_modalities() -> None:
    fusion = _fusion("logits")
    a, v = _inputs()
    has_a = torch.tensor([True, False, True, False])
    has_v = torch.tensor([True, True, False, False])
    out = fusion(a, v, has_a, has_v)
    assert out.audio_logits is not None and out.video_logits is not None
    torch.testing.assert_close(out.logits[0], (out.audio_logits[0] + out.video_logits[0]) / 2)
    torch.testing.assert_close(out.logits[1], out.video_logits[1])
    torch.testing.assert_close(out.logits[2], out.audio_logits[2])
    torch.testing.assert_close(out.logits[3], torch.zeros(K))  # neither: uniform prediction


@pytest.mark.parametrize("mode", ["logits", "mean", "concat"])
def test_absent_input_never_reaches_the_fused_logits(mode: str) -> None:
    fusion = _fusion(mode)
    a, v = _inputs()
    has_a = torch.tensor([True, False, True, False])
    ref = fusion(a, v, has_a).logits
    a2 = a.clone()
    a2[~has_a] = torch.randn(2, DA) * 100
    torch.testing.assert_close(fusion(a2, v, has_a).logits, ref)
    a2[~has_a] = float("nan")  # not even NaN leaks (selection, not multiplication by the mask)
    torch.testing.assert_close(fusion(a2, v, has_a).logits, ref)


def test_mean_mode_projects_the_narrower_modality_and_uses_video_alone_without_audio() -> None:
    fusion = _fusion("mean")
    assert isinstance(fusion.audio_proj, torch.nn.Linear) and isinstance(fusion.video_proj, torch.nn.Identity)
    assert fusion.head is not None
    a, v = _inputs()
    out = fusion(a, v, torch.zeros(B, dtype=torch.bool))
    torch.testing.assert_close(out.logits, fusion.head(v))
    both = fusion(a, v)
    torch.testing.assert_close(both.logits, fusion.head((fusion.audio_proj(a) + v) / 2))


def test_concat_mode_puts_the_learned_absent_vector_in_the_slot() -> None:
    fusion = _fusion("concat")
    assert fusion.head is not None and fusion.missing_audio is not None
    a, v = _inputs()
    has_a = torch.tensor([False, True, False, True])
    out = fusion(a, v, has_a)
    a_used = torch.where(has_a[:, None], a, fusion.missing_audio)
    torch.testing.assert_close(out.logits, fusion.head(torch.cat((a_used, v), dim=-1)))
    zeros_in_slot = fusion.head(torch.cat((torch.where(has_a[:, None], a, 0.0), v), dim=-1))
    assert not torch.allclose(out.logits[0], zeros_in_slot[0])  # not "zeros treated as a real feature"
    assert fusion.no_weight_decay() == {"missing_audio", "missing_video"}


@pytest.mark.parametrize("mode", ["logits", "mean", "concat"])
def test_every_parameter_gets_a_finite_grad_with_both_present(mode: str) -> None:
    fusion = FusionHead(DA, DV, K, HeadConfig(mode=mode, drop_rate=0.1)).train()
    a, v = _inputs()
    fusion(a, v).logits.square().sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_masked_pair_mean_and_presence_mask() -> None:
    a, b = torch.full((4, 2), 2.0), torch.full((4, 2), 4.0)
    has_a = torch.tensor([True, True, False, False])
    has_b = torch.tensor([True, False, True, False])
    out = masked_pair_mean(a, b, has_a, has_b, torch.tensor(-1.0))
    torch.testing.assert_close(out[:, 0], torch.tensor([3.0, 2.0, 4.0, -1.0]))
    assert presence_mask(None, 3, torch.device("cpu")).tolist() == [True] * 3
    assert presence_mask(torch.tensor([1, 0]), 2, torch.device("cpu")).dtype == torch.bool
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        presence_mask(torch.ones(2, dtype=torch.bool), 3, torch.device("cpu"))


def test_encode_runs_the_encoders_independently() -> None:
    audio = create_model("ast_tiny", embed_dim=16, depth=1, num_heads=2, num_mel_bins=16, num_frames=32).eval()
    video = create_model(
        "vit_video_tiny_t4p16", embed_dim=16, depth=1, num_heads=2, num_frames=4, img_size=32, tubelet_size=(2, 16, 16)
    ).eval()
    a, v = torch.randn(2, 1, 16, 32), torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        res = LateFusion()(audio, video, a, v, alone=True)
        assert isinstance(res, FusionResult) and res.fused is None
        torch.testing.assert_close(res.audio.pooled, audio.forward_features(a).pooled)
        torch.testing.assert_close(res.video.tokens, video.forward_features(v).tokens)
        assert res.audio_alone is res.audio and res.video_alone is res.video  # nothing crosses: alone = together


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="mode"):
        HeadConfig(mode="sum")
    with pytest.raises(ValueError, match="drop_rate"):
        HeadConfig(drop_rate=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        FusionHead(DA, DV, 0)
