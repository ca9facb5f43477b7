"""AST, VideoViT and WaveformViT on tiny configs: exact shapes, gradients, consistency, position-table resizing."""

from __future__ import annotations

import pytest
import torch

from avformer.models.base import EncoderOutput
from avformer.models.registry import create_model
from avformer.models.vit import (
    ASTConfig,
    AudioSpectrogramTransformer,
    VideoViT,
    VideoViTConfig,
    WaveformViT,
    WaveformViTConfig,
    _resize_pos_table,
)

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def _ast(**kw: object) -> AudioSpectrogramTransformer:
    cfg = {**TINY, "num_mel_bins": 16, "num_frames": 32, **kw}
    return create_model("ast_tiny", **cfg)  # type: ignore[return-value]


def _video(**kw: object) -> VideoViT:
    cfg = {**TINY, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 8, 8), **kw}
    return create_model("vit_video_tiny_t4p16", **cfg)  # type: ignore[return-value]


def _wave(**kw: object) -> WaveformViT:
    cfg = {**TINY, "num_samples": 256, "patch_size": 16, **kw}
    return create_model("vit_wave_tiny_p128", **cfg)  # type: ignore[return-value]


# (builder, input, grid, number of prefix tokens), worked out by hand
CASES = {
    # AST stride 10 on 16 × 32: F' = (16-16)//10+1 = 1, T' = (32-16)//10+1 = 2; cls + dist
    "ast": (_ast, (3, 1, 16, 32), (1, 2), 2),
    # video 4 × 32², tubelets 2×8×8: (4/2, 32/8, 32/8) = (2, 4, 4) = 32 tokens; cls
    "video": (_video, (3, 3, 4, 32, 32), (2, 4, 4), 1),
    # waveform 256 samples / 16 = 16 patches; cls
    "wave": (_wave, (3, 1, 256), (16,), 1),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> tuple:
    return CASES[request.param]


def test_shapes_and_token_counts(case: tuple) -> None:
    build, shape, grid, n_prefix = case
    model = build().eval()
    x = torch.randn(shape)
    feats = model.forward_features(x)
    n = 1
    for g in grid:
        n *= g
    assert isinstance(feats, EncoderOutput)
    assert feats.grid == grid
    assert feats.tokens.shape == (3, n, 32)
    assert feats.pooled.shape == (3, 32)
    seq, _ = model.forward_sequence(x)
    assert seq.shape == (3, n_prefix + n, 32)
    assert model.num_prefix_tokens == n_prefix
    assert model.num_features == 32
    assert tuple(model.default_input) == shape[1:]
    # no head: forward returns pooled
    torch.testing.assert_close(model(x), feats.pooled)
    logits = build(num_classes=5).eval()(x)
    assert logits.shape == (3, 5)


def test_ast_overlapping_strides_grid() -> None:
    # 32 mel × 48 frames, 16×16 patches, strides (6, 8): F' = (32-16)//6+1 = 3, T' = (48-16)//8+1 = 5
    model = _ast(num_mel_bins=32, num_frames=48, freq_stride=6, time_stride=8).eval()
    feats = model.forward_features(torch.randn(2, 1, 32, 48))
    assert feats.grid == (3, 5) and feats.tokens.shape == (2, 15, 32)
    assert model.pos_embed.shape == (1, 2 + 15, 32)


def test_ast_pooled_is_mean_of_cls_and_dist() -> None:
    model = _ast().eval()
    x = torch.randn(2, 1, 16, 32)
    seq, _ = model.forward_sequence(x)
    torch.testing.assert_close(model.forward_features(x).pooled, (seq[:, 0] + seq[:, 1]) / 2)
    # head = LayerNorm + Linear over pooled (transformers' ASTMLPHead)
    m5 = _ast(num_classes=5).eval()
    f = m5.forward_features(x)
    ref = torch.nn.functional.linear(
        torch.nn.functional.layer_norm(f.pooled, (32,), m5.head_norm.weight, m5.head_norm.bias, 1e-6),
        m5.head.weight,
        m5.head.bias,
    )
    torch.testing.assert_close(m5.forward_head(f), ref)


def test_mean_pool_and_no_prefix_tokens() -> None:
    x = torch.randn(2, 1, 16, 32)
    m = _ast(class_token=False, dist_token=False, pool="mean").eval()
    f = m.forward_features(x)
    assert m.num_prefix_tokens == 0 and m.pos_embed.shape == (1, 2, 32)
    torch.testing.assert_close(f.pooled, f.tokens.mean(1))
    v = _video(class_token=False, pool="mean").eval()
    fv = v.forward_features(torch.randn(2, 3, 4, 32, 32))
    assert fv.tokens.shape == (2, 32, 32)
    torch.testing.assert_close(fv.pooled, fv.tokens.mean(1))


def test_every_param_gets_finite_grad(case: tuple) -> None:
    build, shape, _, _ = case
    model = build(num_classes=3).train()
    model(torch.randn(shape)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_ast_separable_pos_grads_and_no_weight_decay() -> None:
    model = _ast(pos_embed="separable", num_classes=2)
    assert not hasattr(model, "pos_embed")
    assert model.no_weight_decay() == {"pos_embed_freq", "pos_embed_time", "cls_token", "dist_token"}
    model(torch.randn(2, 1, 16, 32)).sum().backward()
    assert model.pos_embed_freq.grad is not None and model.pos_embed_time.grad is not None


def test_no_weight_decay_names() -> None:
    assert _ast().no_weight_decay() == {"pos_embed", "cls_token", "dist_token"}
    assert _video().no_weight_decay() == {"pos_embed_t", "pos_embed_h", "pos_embed_w", "cls_token"}
    assert _wave(class_token=False, pool="mean").no_weight_decay() == {"pos_embed"}


def test_init_weights_trunc_normal() -> None:
    model = create_model("ast_small")  # full size, so the statistics mean something
    w = model.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.004 and w.abs().max() <= 0.04 + 1e-6
    assert model.pos_embed.abs().sum() > 0 and model.cls_token.abs().sum() > 0
    assert torch.equal(model.blocks[0].mlp.fc1.bias, torch.zeros_like(model.blocks[0].mlp.fc1.bias))


def test_fused_equals_eager(case: tuple) -> None:
    build, shape, _, _ = case
    fused = build(num_classes=4).eval()
    eager = build(num_classes=4, fused=False).eval()
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(shape)
    y = fused(x)
    torch.testing.assert_close(y, eager(x), atol=1e-5, rtol=1e-5)
    fused.set_fused(False)
    assert not any(b.attn.fused for b in fused.blocks)
    torch.testing.assert_close(fused(x), eager(x), atol=0, rtol=0)


def test_grad_checkpointing_matches(case: tuple) -> None:
    build, shape, _, _ = case
    a = build(num_classes=4).train()
    b = build(num_classes=4, grad_checkpointing=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(shape)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_eval_batch_independence(case: tuple) -> None:
    build, shape, _, _ = case
    model = build(num_classes=4, drop_path_rate=0.2).eval()
    x = torch.randn(shape)
    full = model(x)
    for i in range(shape[0]):
        torch.testing.assert_close(model(x[i : i + 1])[0], full[i], atol=1e-5, rtol=1e-5)


# ---- position-table resizing --------------------------------------------------------------------------------------
def test_resize_is_identity_for_unchanged_grid() -> None:
    table = torch.randn(1, 6, 4)
    assert _resize_pos_table(table, (2, 3), (2, 3), "interpolate") is table
    assert _resize_pos_table(table, (2, 3), (2, 3), "crop") is table


def test_resize_bilinear_over_time_axis_by_hand() -> None:
    # joint table over (F', T') = (2, 2), freq-major rows; doubling T' interpolates each freq row independently.
    a, b, c, d = 0.0, 4.0, 10.0, 30.0
    table = torch.tensor([a, b, c, d]).reshape(1, 4, 1)  # rows (f0,t0) (f0,t1) (f1,t0) (f1,t1)
    out = _resize_pos_table(table, (2, 2), (2, 4), "interpolate").flatten().tolist()
    # align_corners=False, scale 2: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped)
    row = lambda p, q: [p, 0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q, q]  # noqa: E731
    assert out == pytest.approx(row(a, b) + row(c, d))
    # crop keeps the first positions of a shrinking axis; interpolation would blend them
    table3 = torch.arange(6.0).reshape(1, 6, 1)  # (2, 3)
    assert _resize_pos_table(table3, (2, 3), (2, 2), "crop").flatten().tolist() == [0, 1, 3, 4]


@pytest.mark.parametrize("mode", ["interpolate", "crop"])
@pytest.mark.parametrize("pos", ["joint", "separable"])
def test_ast_other_input_length(mode: str, pos: str) -> None:
    model = _ast(pos_embed=pos, pos_embed_resize=mode).eval()  # table for (1, 2)
    # 16 × 48 frames: T' = (48-16)//10+1 = 4 ; 16 × 26 frames: T' = 2 (unchanged grid)
    longer = model.forward_features(torch.randn(2, 1, 16, 48))
    assert longer.grid == (1, 4) and longer.tokens.shape == (2, 4, 32)
    shorter = model.forward_features(torch.randn(2, 1, 16, 16))
    assert shorter.grid == (1, 1)
    x = torch.randn(2, 1, 16, 32)
    pos_same = model._patch_pos((1, 2))
    if pos == "joint":
        base = model.pos_embed[:, 2:]
    else:
        base = model.pos_embed_freq[:, :, None] + model.pos_embed_time[:, None]  # (1, F', T', D)
    torch.testing.assert_close(pos_same, base.reshape(1, 2, 32), atol=0, rtol=0)
    torch.testing.assert_close(model(x), model(x))


def test_ast_crop_keeps_first_time_positions() -> None:
    model = _ast(num_frames=48, pos_embed_resize="crop").eval()  # table (1, 4)
    torch.testing.assert_close(model._patch_pos((1, 2)), model.pos_embed[:, 2:4], atol=0, rtol=0)


def test_video_separable_pos_layout_and_resize() -> None:
    model = _video().eval()
    pos = model._patch_pos((2, 4, 4))[0]  # (32, D), index t·16 + h·4 + w
    t, h, w = 1, 2, 3
    ref = model.pos_embed_t[0, t] + model.pos_embed_h[0, h] + model.pos_embed_w[0, w]
    torch.testing.assert_close(pos[t * 16 + h * 4 + w], ref)
    # other clip length and resolution: 8 frames × 48² -> (4, 6, 6)
    feats = model.forward_features(torch.randn(1, 3, 8, 48, 48))
    assert feats.grid == (4, 6, 6) and feats.tokens.shape == (1, 144, 32)


def test_wave_other_length_and_trailing_samples() -> None:
    model = _wave().eval()
    assert model.forward_features(torch.randn(1, 1, 260)).grid == (16,)  # 4 trailing samples dropped
    assert model.forward_features(torch.randn(1, 1, 512)).tokens.shape == (1, 32, 32)


# ---- validation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"embed_dim": 30, "num_heads": 4},
        {"dist_token": True, "class_token": False},
        {"pool": "max"},
        {"pos_embed": "sincos"},
        {"num_frames": 8},
        {"freq_stride": 0},
    ],
)
def test_ast_config_validation(bad: dict) -> None:
    with pytest.raises(ValueError):
        ASTConfig(**{**TINY, "num_mel_bins": 16, "num_frames": 32, **bad})


def test_other_config_validation() -> None:
    with pytest.raises(ValueError):
        VideoViTConfig(tubelet_size=(2, 16))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VideoViTConfig(class_token=False)  # pool="cls" without a cls token
    with pytest.raises(ValueError):
        WaveformViTConfig(num_samples=64, patch_size=128)
    assert VideoViTConfig(tubelet_size=[2, 16, 16]).tubelet_size == (2, 16, 16)  # type: ignore[arg-type]


def test_bad_inputs_and_runtime_args() -> None:
    model = _ast()
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(2, 16, 32))  # missing channel dim
    with pytest.raises(ValueError, match="shorter"):
        model(torch.randn(2, 1, 16, 8))  # fewer frames than one patch
    with pytest.raises(ValueError):
        _ast(num_classes=-1)
    with pytest.raises(TypeError):
        AudioSpectrogramTransformer(VideoViTConfig())  # type: ignore[arg-type]


def test_published_sizes_on_meta() -> None:
    with torch.device("meta"):
        ast = create_model("ast_base", num_classes=527)
        video = create_model("vit_video_base_t4p16")
        wave = create_model("vit_wave_base_p128")
    # AST-Base: 1212 patches (12 × 101) + cls + dist; 86,594,063 params with the AudioSet head (= transformers)
    assert ast.cfg.grid == (12, 101) and ast.pos_embed.shape == (1, 1214, 768)
    assert sum(p.numel() for p in ast.parameters()) == 86_594_063
    assert video.cfg.grid == (8, 14, 14)  # VATT: 32 × 224², 4×16×16 tubelets -> 1568 tokens
    assert wave.cfg.grid == (1200,)  # VATT: 153,600 samples / 128


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ast", "video", "wave"])
def test_torch_compile_fullgraph_smoke(name: str) -> None:
    """Dynamo captures the whole forward (no graph breaks); aot_eager needs no C compiler."""
    build, shape, _, _ = CASES[name]
    model = build(num_classes=3).eval()
    x = torch.randn(shape)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)


def test_trunk_from_shares_the_blocks_and_leaves_their_weights_alone() -> None:
    """VATT-MA: a second encoder runs the first one's blocks and norm (the same modules) and its own init does not
    redraw them."""
    torch.manual_seed(0)
    video = _video()
    before = {k: v.clone() for k, v in video.state_dict().items()}
    audio = WaveformViT(WaveformViTConfig(**TINY, num_samples=256, patch_size=16), trunk_from=video)
    assert audio.blocks is video.blocks and audio.norm is video.norm
    assert all(torch.equal(before[k], v) for k, v in video.state_dict().items())
    own = [p for n, p in audio.named_parameters() if not n.startswith(("blocks.", "norm."))]  # tokenizer, positions
    both = torch.nn.ModuleList([video, audio])
    assert len(list(both.parameters())) == len(list(video.parameters())) + len(own)  # the trunk counted once
    with pytest.raises(ValueError, match="another width or depth"):
        WaveformViT(WaveformViTConfig(**{**TINY, "depth": 1}, num_samples=256, patch_size=16), trunk_from=video)


def test_frame_cnn_stem_drops_frames_before_the_cnn_with_any_keep_mask() -> None:
    m = _video(stem="frame_cnn", stem_width=8, stem_stride=4, num_frames=6).eval()
    x = torch.randn(2, 3, 6, 32, 32)
    assert m.token_grid(tuple(x.shape[1:])) == (6,)
    full = m.forward_features(x)
    assert full.grid == (6,) and full.tokens.shape == (2, 6, 32)
    mask = torch.tensor([[True, False, True, False, False, True], [False, True, True, True, False, False]])
    idx = mask.nonzero()[:, 1].view(2, 3)
    by_mask, by_idx = m.embed(x, mask)[0], m.embed(x, idx)[0]
    torch.testing.assert_close(by_mask, by_idx)
    every = m.embed(x)[0]  # (B, 1 + 6, D): cls first; the kept frames' tokens are those of the full pass
    torch.testing.assert_close(by_idx[:, 1:], every[:, 1:].gather(1, idx[:, :, None].expand(-1, -1, 32)))


def test_text_transformer_masks_padding_and_refuses_long_texts() -> None:
    from avformer.models.text_encoder import TextTransformer, TextTransformerConfig

    torch.manual_seed(0)
    m = TextTransformer(TextTransformerConfig(**TINY, vocab_size=50, max_tokens=6, word_dim=8)).eval()
    assert torch.equal(m.patch_embed.word_embed.weight[0], torch.zeros(8))  # padding row
    ids = torch.tensor([[5, 9, 0, 0], [7, 3, 2, 0]])
    a = m.forward_features(ids).pooled
    b = m.forward_features(torch.cat([ids, torch.zeros(2, 2, dtype=torch.long)], 1)).pooled
    torch.testing.assert_close(a, b)  # more padding: the same [AGG] output
    m.attn_bias = lambda x: None  # type: ignore[method-assign]  # without the mask, padding changes it
    assert not torch.allclose(m.forward_features(ids).pooled, a, atol=1e-4)
    with pytest.raises(ValueError, match="max_tokens=6"):
        m.forward_features(torch.ones(1, 7, dtype=torch.long))
