"""The shared machinery of the fusions on the encoders' tokens (fusion/tokens.py), checked on every such fusion:
an absent modality never leaks, the joint ones interact, time codes and key masks, every variant trains."""

from __future__ import annotations

import pytest
import torch

from avformer.fusion.tokens import key_bias, token_times
from tests.fusion._small import NEW, inputs, small_model


@pytest.mark.parametrize("name", NEW)
def test_absent_modality_never_reaches_the_other_even_as_nan(name: str) -> None:
    m = small_model(name)
    a, v = inputs()
    off = torch.tensor([False, True, False])
    with torch.no_grad():
        ref = m(a, v, has_audio=off)
        a2 = a.clone()
        a2[~off] = float("nan")
        out = m(a2, v, has_audio=off)
        alone = m(a, v, alone=True)
    keep = ~off
    torch.testing.assert_close(out.logits[keep], ref.logits[keep])  # the absent audio's values do not matter
    assert torch.isfinite(out.logits[keep]).all()
    # a sample without audio gets exactly the video-only prediction (the other one masked for every sample)
    torch.testing.assert_close(ref.logits[keep], alone.video_alone_logits[keep], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["concat_tiny", "sft_tiny", "xattn_tiny", "eao_tiny"])
def test_joint_fusions_let_audio_change_the_video_output(name: str) -> None:
    m = small_model(name)
    a, v = inputs()
    with torch.no_grad():
        f1 = m.forward_features(a, v)
        f2 = m.forward_features(a + torch.randn_like(a), v)
    assert (f1.video.tokens - f2.video.tokens).abs().max() > 1e-4  # interaction exists
    with torch.no_grad():  # ... and stops when audio is masked
        g1 = m.forward_features(a, v, has_audio=torch.zeros(3, dtype=torch.bool))
        g2 = m.forward_features(a + torch.randn_like(a), v, has_audio=torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(g1.video.tokens, g2.video.tokens)


def test_time_codes_align_audio_columns_with_video_frames() -> None:
    ta, tv = token_times((4, 10), "spectrogram"), token_times((4, 4, 4), "video")
    assert ta.shape == (40,) and tv.shape == (64,)
    assert torch.equal(ta[:10], ta[10:20])  # the same column in every frequency row
    torch.testing.assert_close(ta[:10], (torch.arange(10) + 0.5) / 10)
    torch.testing.assert_close(tv[::16], (torch.arange(4) + 0.5) / 4)  # one slot per 16 tokens (4 x 4 space)
    bias = key_bias([(2, torch.tensor([True, False])), (1, torch.tensor([False, False]))], torch.float32)
    assert bias[0, 0, 0].tolist() == [0.0, 0.0, float("-inf")]
    assert bias[1, 0, 0].tolist() == [0.0, 0.0, 0.0]  # nothing present: every key kept (no empty softmax row)


@pytest.mark.parametrize("name", [*NEW, "av_vit_tiny", "av_vit_bottleneck_tiny"])
def test_every_variant_trains_one_step_every_parameter_gets_a_gradient(name: str) -> None:
    extra = {"fusion_config": {"audio_prob": None}} if name == "uavm_tiny" else {}
    m = small_model(name, **extra).train()
    a, v = inputs(b=4)
    out = m(a, v, alone=True)
    assert out.audio_alone_logits is not None and out.video_alone_logits is not None
    loss = out.logits.sum() + out.audio_alone_logits.sum() + out.video_alone_logits.sum()
    loss = loss + out.audio_emb.sum() + out.video_emb.sum()  # type: ignore[union-attr]
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing == []
