"""Masked-autoencoder parts: masking, patch targets, decoder, reconstruction loss (avformer.models.masked)."""

from __future__ import annotations

import math

import pytest
import torch

from avformer.models import create_model
from avformer.models.masked import (
    DecoderConfig,
    MaskedDecoder,
    MaskingUnsupported,
    blanks_input,
    check_maskable,
    encode_masked,
    hide_masked,
    mask_for,
    normalize_patches,
    patch_geometry,
    patch_targets,
    random_masking,
    reconstruction_loss,
    sincos_grid,
    unpatchify,
)


def _towers():
    torch.manual_seed(0)
    m = create_model(
        "vatt_tiny", embed_dim=32, depth=1, num_heads=2, audio_input="spectrogram", spec_size=(32, 40),
        spec_patch=(8, 10), num_frames=4, img_size=32, tubelet_size=(2, 8, 8),
    )  # fmt: skip
    return m.eval().encoders["audio"], m.encoders["video"]


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 1, 32, 40, generator=g), torch.randn(2, 3, 4, 32, 32, generator=g)


def test_random_masking_counts_order_and_complement():
    m = random_masking(5, 40, 0.8, generator=torch.Generator().manual_seed(0))
    assert m.keep.shape == (5, 8) and m.mask.shape == (5, 40)
    assert bool((m.keep.diff(dim=1) > 0).all())  # sorted, distinct: the encoders' keep-mask convention
    assert m.mask.sum(1).tolist() == [32] * 5
    assert not m.mask.gather(1, m.keep).any()  # kept tokens are exactly the unmasked ones
    assert not torch.equal(m.keep[0], m.keep[1])  # per-sample masks
    again = random_masking(5, 40, 0.8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.keep, m.keep)
    assert random_masking(1, 4, 0.99).num_keep == 1 and random_masking(1, 4, 0.0).num_keep == 3  # 1 <= keep <= N-1
    with pytest.raises(ValueError):
        random_masking(1, 4, 1.0)


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_patch_targets_are_the_tokens_patches(modality):
    """The patch embedding applied to each target patch (as a Linear) gives the encoder's tokens: target n is
    exactly the input region of token n, in token order."""
    audio_enc, video_enc = _towers()
    enc, x = (audio_enc, _inputs()[0]) if modality == "audio" else (video_enc, _inputs()[1])
    target = patch_targets(enc, x)
    grid = enc.token_grid(tuple(x.shape[1:]))
    assert target.shape == (2, math.prod(grid), math.prod(enc.patch_embed.kernel_size) * x.shape[1])
    w = enc.patch_embed.proj.weight  # (D, C, *k) -> channel-last flattening, as the targets
    w = w.movedim(1, -1).reshape(w.shape[0], -1)
    tokens, _ = enc.patch_embed(x)
    torch.testing.assert_close(target @ w.T + enc.patch_embed.proj.bias, tokens, atol=1e-5, rtol=1e-5)
    back = unpatchify(target, grid, enc.patch_embed.kernel_size, x.shape[1])
    assert torch.equal(back, x)


def test_norm_pix_targets_have_mean_0_var_1_per_patch():
    t = torch.randn(3, 10, 48) * 5 + 2
    n = normalize_patches(t)
    torch.testing.assert_close(n.mean(-1), torch.zeros(3, 10), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.var(-1), torch.ones(3, 10), atol=1e-4, rtol=0)


def test_loss_ignores_visible_patches():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 20, 6, generator=g), torch.randn(2, 20, 6, generator=g)
    m = random_masking(2, 20, 0.75, generator=g)
    base = reconstruction_loss(pred, target, m.mask)
    vis = ~m.mask[..., None]
    for p2, t2 in ((pred + 10 * vis, target), (pred, target - 7 * vis)):  # visible predictions / targets changed
        torch.testing.assert_close(reconstruction_loss(p2, t2, m.mask), base)
        torch.testing.assert_close(reconstruction_loss(p2, t2, m.mask, norm_pix=True),
                                   reconstruction_loss(pred, target, m.mask, norm_pix=True))  # fmt: skip
    assert reconstruction_loss(pred + m.mask[..., None], target, m.mask) != base  # masked ones do count
    expected = ((pred - target) ** 2).mean(-1)[m.mask].mean()
    torch.testing.assert_close(base, expected)
    assert reconstruction_loss(pred + 10 * vis, target, m.mask, masked_only=False) != base  # the ablation


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_encoder_and_decoder_never_see_masked_patches(modality):
    audio_enc, video_enc = _towers()
    enc, x = (audio_enc, _inputs()[0]) if modality == "audio" else (video_enc, _inputs()[1])
    torch.manual_seed(3)
    out, m = encode_masked(enc, x, 0.75)
    target = patch_targets(enc, x)
    dec = MaskedDecoder(enc.embed_dim, target.shape[-1], DecoderConfig(embed_dim=16, depth=1, num_heads=2)).eval()
    pred = dec(out.tokens, m.keep, out.grid)
    grid, patch = out.grid, enc.patch_embed.kernel_size
    noisy = target + 100.0 * m.mask[..., None]  # change every masked patch of the input, nothing else
    x2 = unpatchify(noisy, grid, patch, x.shape[1])
    out2 = enc.forward_features(x2, keep=m.keep)
    torch.testing.assert_close(out2.tokens, out.tokens)
    torch.testing.assert_close(dec(out2.tokens, m.keep, out2.grid), pred)
    x3 = unpatchify(target + 100.0 * (~m.mask[..., None]), grid, patch, x.shape[1])  # a visible patch changed
    assert not torch.allclose(enc.forward_features(x3, keep=m.keep).tokens, out.tokens)


def test_unsupported_encoders_are_a_clear_error():
    for name, kw, what in (
        ("mat_tiny", {}, "pools tokens"),
        ("mvit_v2_s_16x4", {}, "pools tokens"),
    ):
        with pytest.raises(MaskingUnsupported, match=what) as e:
            check_maskable(create_model(name, **kw))
        assert "supported: ViT-family" in str(e.value) and "\n" not in str(e.value)
    conv = create_model("vatt_tiny", video_stem="conv")
    with pytest.raises(MaskingUnsupported, match="conv stem"):
        mask_for(conv.encoders["video"], torch.zeros(1, 3, 32, 224, 224), 0.5, what="video encoder")
    with pytest.raises(MaskingUnsupported, match="overlapping"):
        check_maskable(create_model("ast_tiny", depth=1, num_mel_bins=32, num_frames=32))  # stride 10 < patch 16


def _cnn_towers():
    torch.manual_seed(0)
    m = create_model(
        "vatt_tiny", embed_dim=32, depth=1, num_heads=2, num_frames=4, img_size=32, video_stem="frame_cnn",
        audio_input="spectrogram", audio_stem="cnn", spec_size=(32, 40), stem_width=16,
    )  # fmt: skip
    return m.encoders["audio"], m.encoders["video"]


@pytest.mark.parametrize("modality", ["audio", "video"])
@pytest.mark.parametrize("train", [False, True])
def test_cnn_tokens_never_see_masked_frames_or_bands(modality, train):
    """Per-frame CNN tokens (a masked frame never enters the CNN) and per-band CNN tokens (masked bands are blanked
    before the CNN, whose receptive field crosses bands): a masked region of the input changes nothing the encoder
    computes, in eval mode and in training mode (BatchNorm statistics of the kept input only)."""
    audio_enc, video_enc = _cnn_towers()
    enc, x = (audio_enc, _inputs()[0]) if modality == "audio" else (video_enc, _inputs()[1])
    enc.train(train)
    grid, patch = patch_geometry(enc, tuple(x.shape[1:]))
    assert grid == ((4, 1) if modality == "audio" else (4, 1, 1))  # 4 bands of 8 mel bins x 40 frames | 4 frames
    target = patch_targets(enc, x)
    torch.manual_seed(3)
    out, m = encode_masked(enc, x, 0.5)
    assert m.num_keep == 2
    x2 = unpatchify(target + 100.0 * m.mask[..., None], grid, patch, x.shape[1])
    out2 = enc.forward_features(hide_masked(enc, x2, m.mask), keep=m.keep)
    torch.testing.assert_close(out2.tokens, out.tokens)
    if modality == "audio":  # without the blanking, the CNN's receptive field would carry masked bands over
        assert blanks_input(enc)
        leaky = enc.forward_features(x2, keep=m.keep).tokens
        assert not torch.allclose(leaky, out.tokens)


def test_sincos_positions_distinct_and_sized():
    p = sincos_grid((3, 4, 5), 30)
    assert p.shape == (1, 60, 30)
    assert torch.cdist(p[0], p[0]).add(torch.eye(60) * 9).min() > 1e-3  # every grid position differs
    assert sincos_grid((7,), 9).shape == (1, 7, 9)
    with pytest.raises(ValueError):
        sincos_grid((2, 2, 2), 4)


def test_a_few_steps_reduce_reconstruction_loss():
    audio_enc, _ = _towers()
    audio_enc.train()
    x = _inputs()[0]
    target = patch_targets(audio_enc, x)
    dec = MaskedDecoder(audio_enc.embed_dim, target.shape[-1], DecoderConfig(embed_dim=32, depth=1, num_heads=2))
    opt = torch.optim.AdamW([*audio_enc.parameters(), *dec.parameters()], lr=3e-3)
    m = random_masking(2, target.shape[1], 0.5, generator=torch.Generator().manual_seed(0))  # one fixed mask

    def loss_now():
        out = audio_enc.forward_features(x, keep=m.keep)
        return reconstruction_loss(dec(out.tokens, m.keep, out.grid), target, m.mask, norm_pix=True)

    first = float(loss_now().detach())
    for _ in range(30):
        opt.zero_grad()
        loss = loss_now()
        loss.backward()
        opt.step()
    assert float(loss_now().detach()) < 0.7 * first
