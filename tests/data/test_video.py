"""Video transforms: exact shapes, pixel-level checks on ramps, reproducibility under an explicit generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avformer.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    NORMALIZATIONS,
    VideoTransform,
    VideoTransformConfig,
    center_crop,
    fps_frame_indices,
    horizontal_flip,
    normalize,
    pad_or_loop_frames,
    random_affine,
    random_channel_shuffle,
    random_clip_window,
    random_horizontal_flip,
    random_resized_crop,
    random_resized_crop_params,
    resized_crop,
    short_side_resize,
    spatial_crops,
    strided_frame_indices,
    to_tensor,
    uniform_clip_windows,
    uniform_frame_indices,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ramp(c: int = 3, t: int = 4, h: int = 8, w: int = 10) -> torch.Tensor:
    """(C, T, H, W) where pixel (y, x) holds 100 * y + x, plus 1000 * channel and 10000 * frame."""
    y = torch.arange(h).view(h, 1) * 100.0
    x = torch.arange(w).view(1, w).float()
    base = (y + x).expand(c, t, h, w)
    return base + 1000.0 * torch.arange(c).view(c, 1, 1, 1) + 10000.0 * torch.arange(t).view(1, t, 1, 1)


def _frames(t: int = 6, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# ---- layout --------------------------------------------------------------------------------------------------


def test_to_tensor_layout_and_range() -> None:
    frames = _frames(5, 6, 7)
    video = to_tensor(frames)
    assert video.shape == (3, 5, 6, 7)
    assert video.dtype == torch.float32
    assert video.is_contiguous()
    assert video.min() >= 0.0 and video.max() <= 1.0
    # channel c of frame t at (y, x) is frames[t, y, x, c] / 255
    assert video[2, 4, 5, 6] == pytest.approx(frames[4, 5, 6, 2] / 255.0)
    assert torch.equal(to_tensor(torch.from_numpy(frames)), video)


def test_to_tensor_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        to_tensor(np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        to_tensor(np.zeros((4, 4, 3), dtype=np.uint8))


# ---- spatial -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hw", "expected"), [((48, 64), (32, 42)), ((64, 48), (42, 32)), ((40, 40), (32, 32))])
def test_short_side_resize_shape(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    video = torch.rand(3, 2, *hw)
    assert short_side_resize(video, 32).shape == (3, 2, *expected)


def test_short_side_resize_keeps_constants_and_is_identity_at_size() -> None:
    video = torch.full((3, 2, 30, 50), 0.25)
    assert torch.allclose(short_side_resize(video, 17), torch.full((3, 2, 17, 28), 0.25))
    video = torch.rand(3, 2, 20, 30)
    assert torch.equal(short_side_resize(video, 20), video)


def test_center_crop_picks_centre_pixels() -> None:
    video = _ramp(h=8, w=10)
    out = center_crop(video, 4)
    assert out.shape == (3, 4, 4, 4)
    # top = (8 - 4) // 2 = 2, left = (10 - 4) // 2 = 3
    assert torch.equal(out, video[..., 2:6, 3:7])
    assert out[0, 0, 0, 0] == 203.0
    rect = center_crop(video, (3, 5))  # odd margins: top = 2, left = 2
    assert torch.equal(rect, video[..., 2:5, 2:7])
    with pytest.raises(ValueError):
        center_crop(video, 9)


def test_center_crop_checkerboard() -> None:
    board = ((torch.arange(6).view(6, 1) + torch.arange(6).view(1, 6)) % 2).float().expand(1, 1, 6, 6)
    out = center_crop(board, 2)
    assert out[0, 0].tolist() == [[0.0, 1.0], [1.0, 0.0]]  # rows 2-3, cols 2-3 of the board


def test_horizontal_flip_equals_torch_flip() -> None:
    video = torch.rand(3, 4, 5, 6)
    assert torch.equal(horizontal_flip(video), torch.flip(video, dims=(-1,)))
    assert torch.equal(horizontal_flip(horizontal_flip(video)), video)


def test_random_horizontal_flip() -> None:
    video = torch.rand(3, 2, 4, 5)
    assert torch.equal(random_horizontal_flip(video, 0.0, _gen(0)), video)
    assert torch.equal(random_horizontal_flip(video, 1.0, _gen(0)), horizontal_flip(video))
    draws = [bool(torch.equal(random_horizontal_flip(video, 0.5, _gen(s)), video)) for s in range(40)]
    assert 5 < sum(draws) < 35  # both outcomes occur
    assert draws == [bool(torch.equal(random_horizontal_flip(video, 0.5, _gen(s)), video)) for s in range(40)]


def test_normalize_formula() -> None:
    video = torch.rand(3, 2, 4, 4)
    out = normalize(video, IMAGENET_MEAN, IMAGENET_STD)
    for c in range(3):
        assert torch.allclose(out[c], (video[c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    default = normalize(video)
    assert torch.allclose(default, (video - 0.45) / 0.225)
    assert NORMALIZATIONS["kinetics"] == (KINETICS_MEAN, KINETICS_STD)
    assert not torch.equal(video, default)  # not in place by default
    copy = video.clone()
    assert normalize(copy, inplace=True) is copy
    with pytest.raises(ValueError):
        normalize(video, (0.5, 0.5), (0.2, 0.2))


def test_pad_or_loop_frames_repeats_last_frame() -> None:
    video = _ramp(t=3)
    out = pad_or_loop_frames(video, 5)
    assert out.shape == (3, 5, 8, 10)
    assert torch.equal(out[:, :3], video)
    assert torch.equal(out[:, 3], video[:, 2]) and torch.equal(out[:, 4], video[:, 2])
    assert torch.equal(pad_or_loop_frames(video, 2), video[:, :2])
    assert torch.equal(pad_or_loop_frames(video, 3), video)
    with pytest.raises(ValueError):
        pad_or_loop_frames(video[:, :0], 4)


def test_resized_crop_box() -> None:
    video = _ramp(h=8, w=10)
    out = resized_crop(video, 1, 2, 4, 5, (4, 5))  # same size: a plain crop
    assert torch.equal(out, video[..., 1:5, 2:7])
    assert resized_crop(video, 0, 0, 8, 10, 6).shape == (3, 4, 6, 6)
    with pytest.raises(ValueError):
        resized_crop(video, 6, 0, 4, 4, 4)


def test_random_resized_crop_params_in_bounds() -> None:
    g = _gen(0)
    for _ in range(200):
        top, left, h, w = random_resized_crop_params(48, 64, (0.25, 1.0), (3 / 4, 4 / 3), g)
        assert top >= 0 and top + h <= 48 and left >= 0 and left + w <= 64
        assert 0.2 <= h * w / (48 * 64) <= 1.0
        assert 0.7 <= w / h <= 1.4
    # impossible to satisfy (aspect 100:1 frame): falls back to a centred box in the allowed aspect range
    top, left, h, w = random_resized_crop_params(4, 400, (0.9, 1.0), (3 / 4, 4 / 3), _gen(0))
    assert (h, w) == (4, 5) and left == (400 - 5) // 2 and top == 0


def test_random_resized_crop_reproducible_and_seed_dependent() -> None:
    video = torch.rand(3, 4, 40, 50)
    a = random_resized_crop(video, 16, generator=_gen(1))
    b = random_resized_crop(video, 16, generator=_gen(1))
    c = random_resized_crop(video, 16, generator=_gen(2))
    assert a.shape == (3, 4, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    params = {random_resized_crop_params(40, 50, generator=_gen(s)) for s in range(10)}
    assert len(params) > 5


def test_random_resized_crop_same_box_for_all_frames() -> None:
    # frames differ only by a constant offset; bilinear resize preserves it iff every frame gets the same box
    base = torch.rand(3, 1, 40, 50)
    video = base + torch.arange(5.0).view(1, 5, 1, 1)
    for seed in range(5):
        out = random_resized_crop(video, 12, generator=_gen(seed))
        assert torch.allclose(out - out[:, :1], torch.arange(5.0).view(1, 5, 1, 1).expand_as(out), atol=1e-5)


# ---- temporal ------------------------------------------------------------------------------------------------


def test_random_clip_window() -> None:
    for seed in range(20):
        start, end = random_clip_window(10.0, 2.0, _gen(seed))
        assert start >= 0.0 and end <= 10.0
        assert end - start == pytest.approx(2.0)
    assert random_clip_window(10.0, 2.0, _gen(3)) == random_clip_window(10.0, 2.0, _gen(3))
    assert random_clip_window(10.0, 2.0, _gen(3)) != random_clip_window(10.0, 2.0, _gen(4))
    assert random_clip_window(1.5, 2.0, _gen(0)) == (0.0, 1.5)  # short file: all of it
    with pytest.raises(ValueError):
        random_clip_window(1.0, 0.0)


def test_uniform_clip_windows_evenly_spaced_and_covering() -> None:
    windows = uniform_clip_windows(10.0, 2.0, 5)
    assert len(windows) == 5
    starts = [s for s, _ in windows]
    assert starts[0] == 0.0 and windows[-1][1] == pytest.approx(10.0)
    assert np.allclose(np.diff(starts), 2.0)  # (10 - 2) / 4
    assert all(e - s == pytest.approx(2.0) and s >= 0 and e <= 10.0 for s, e in windows)
    assert uniform_clip_windows(10.0, 2.0, 1) == [(4.0, 6.0)]  # one clip: centred
    assert uniform_clip_windows(1.0, 2.0, 3) == [(0.0, 1.0)] * 3  # short file: whole file, N times


def test_frame_index_helpers() -> None:
    assert uniform_frame_indices(10, 5) == [1, 3, 5, 7, 9]
    assert uniform_frame_indices(16, 16) == list(range(16))
    assert uniform_frame_indices(3, 6) == [0, 0, 1, 1, 2, 2]
    assert uniform_frame_indices(100, 1) == [50]
    assert strided_frame_indices(10, 4, 2, 1) == [1, 3, 5, 7]
    assert strided_frame_indices(6, 5, 2) == [0, 2, 4, 5, 5]  # past the end: last frame repeats
    assert fps_frame_indices(32, 16, 16.0, 8.0) == list(range(1, 32, 2))
    assert fps_frame_indices(5, 4, 25.0, 25.0) == [0, 1, 2, 3]
    assert fps_frame_indices(3, 5, 8.0, 8.0) == [0, 1, 2, 2, 2]
    with pytest.raises(ValueError):
        strided_frame_indices(10, 4, 2, 10)
    with pytest.raises(ValueError):
        uniform_frame_indices(0, 4)


# ---- composed ------------------------------------------------------------------------------------------------


def _small_cfg(**kw: object) -> VideoTransformConfig:
    return VideoTransformConfig(**{"num_frames": 4, "fps": 8.0, "size": 16, "short_side": 20, **kw})  # type: ignore[arg-type]


def test_config_validation_and_clip_seconds() -> None:
    assert VideoTransformConfig().clip_seconds == 2.0
    with pytest.raises(ValueError):
        VideoTransformConfig(size=224, short_side=200)
    with pytest.raises(ValueError):
        VideoTransformConfig(hflip=1.5)


def test_eval_transform_matches_pure_pipeline() -> None:
    cfg = _small_cfg()
    frames = _frames(8, 24, 32)
    out = VideoTransform(cfg, train=False)(frames)
    assert out.shape == (3, 4, 16, 16) and out.dtype == torch.float32
    idx = uniform_frame_indices(8, 4)
    ref = normalize(center_crop(short_side_resize(to_tensor(frames[idx]), 20), 16))
    assert torch.allclose(out, ref)
    assert torch.equal(out, VideoTransform(cfg, train=False)(frames, _gen(5)))  # eval ignores the generator


def test_train_transform_reproducible_and_seed_dependent() -> None:
    tf = VideoTransform(_small_cfg(), train=True)
    frames = _frames(8, 24, 32)
    a, b, c = tf(frames, _gen(0)), tf(frames, _gen(0)), tf(frames, _gen(1))
    assert a.shape == (3, 4, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert tf(torch.from_numpy(frames), None).shape == (3, 4, 16, 16)


def test_train_transform_equals_crop_then_flip() -> None:
    cfg = _small_cfg(hflip=1.0, train_scale=(0.5, 1.0))
    frames = _frames(4, 24, 32)
    out = VideoTransform(cfg, train=True)(frames, _gen(3))
    g = _gen(3)
    top, left, h, w = random_resized_crop_params(24, 32, cfg.train_scale, cfg.train_ratio, g)
    ref = normalize(horizontal_flip(resized_crop(to_tensor(frames), top, left, h, w, 16)))
    assert torch.allclose(out, ref, atol=1e-6)


def test_transform_pads_short_windows_with_src_fps() -> None:
    cfg = _small_cfg(num_frames=6, fps=8.0)
    frames = np.stack([np.full((24, 32, 3), 40 * i, dtype=np.uint8) for i in range(3)])  # 3 flat frames
    out = VideoTransform(cfg, train=False)(frames, src_fps=8.0)
    assert out.shape == (3, 6, 16, 16)
    levels = [round(float(out[0, t].mean() * 0.225 + 0.45) * 255) for t in range(6)]
    assert levels == [0, 40, 80, 80, 80, 80]
    # without src_fps a short window is taken as cut short by the end of the file: same padding
    out = VideoTransform(cfg, train=False)(frames)
    assert [round(float(out[0, t].mean() * 0.225 + 0.45) * 255) for t in range(6)] == [0, 40, 80, 80, 80, 80]


def test_transform_spreads_long_windows_uniformly() -> None:
    cfg = _small_cfg(num_frames=3)
    frames = np.stack([np.full((24, 32, 3), 20 * i, dtype=np.uint8) for i in range(9)])
    out = VideoTransform(cfg, train=False)(frames)
    assert [round(float(out[0, t].mean() * 0.225 + 0.45) * 255) for t in range(3)] == [20, 80, 140]  # 1, 4, 7
    out = VideoTransform(cfg, train=False)(frames, src_fps=16.0)  # 16 -> 8 fps: every other frame
    assert [round(float(out[0, t].mean() * 0.225 + 0.45) * 255) for t in range(3)] == [20, 60, 100]  # 1, 3, 5


# ---- multi-crop testing ------------------------------------------------------------------------------------


def test_spatial_crops_positions() -> None:
    video = _ramp(h=8, w=10)  # pixel (y, x) = 100 y + x
    (one,) = spatial_crops(video, 6, 1)
    assert torch.equal(one, center_crop(video, 6))
    left, centre, right = spatial_crops(video, 6, 3)  # landscape: along the width, centred in height
    assert [float(c[0, 0, 0, 0]) for c in (left, centre, right)] == [100.0, 102.0, 104.0]
    assert right.shape == (3, 4, 6, 6) and float(right[0, 0, -1, -1]) == 100.0 * 6 + 9  # touches the right edge
    top, _, bottom = spatial_crops(_ramp(h=10, w=8), 6, 3)  # portrait: along the height
    assert float(top[0, 0, 0, 0]) == 1.0 and float(bottom[0, 0, 0, 0]) == 401.0
    same = spatial_crops(_ramp(h=6, w=6), 6, 3)  # the crop fills the frame: all crops coincide
    assert all(torch.equal(c, same[0]) for c in same)
    with pytest.raises(ValueError):
        spatial_crops(video, 9, 3)
    with pytest.raises(ValueError):
        spatial_crops(video, 6, 0)


def test_test_views_one_crop_is_the_eval_transform() -> None:
    cfg = _small_cfg()
    frames = _frames(6, 24, 32)
    t = VideoTransform(cfg, train=False)
    (view,) = t.test_views(frames, 1)
    assert torch.equal(view, t(frames))
    views = t.test_views(frames, 3)
    assert len(views) == 3 and all(v.shape == (3, 4, 16, 16) for v in views)
    assert torch.equal(views[1], view)  # the middle of three crops is the centre crop
    assert not torch.equal(views[0], views[2])
    fill = VideoTransform(_small_cfg(short_side=16), train=False)
    square = fill.test_views(_frames(6, 20, 20), 3)  # crops that coincide are separate tensors, normalised once
    assert torch.equal(square[0], square[2]) and square[0].data_ptr() != square[2].data_ptr()
    assert torch.equal(square[0], fill(_frames(6, 20, 20)))
    with pytest.raises(RuntimeError):
        VideoTransform(cfg, train=True).test_views(frames, 3)


# ---- zoom / shift / channel shuffle ----------------------------------------------------------------------------


def _dot_clip(row: int, col: int, size: int = 32, frames: int = 2) -> torch.Tensor:
    video = torch.zeros(3, frames, size, size)
    video[:, :, row - 1 : row + 1, col - 1 : col + 1] = 1.0  # a 2x2 bright square centred on (row - 0.5, col - 0.5)
    return video


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    w = img.clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(img.shape[0]), torch.arange(img.shape[1]), indexing="ij")
    return float((w * ys).sum() / w.sum()), float((w * xs).sum() / w.sum())


def test_random_affine_moves_and_scales_about_the_centre() -> None:
    video = _dot_clip(16, 24)  # centroid (15.5, 23.5): 8 px right of the centre (15.5, 15.5)
    # the fixed extremes: zoom 0.5 halves the offset from the centre, shift 0.25 moves by up to 8 px
    out = random_affine(video, zoom=(0.5, 0.5), generator=torch.Generator().manual_seed(0))
    r, c = _centroid(out[0, 0])
    assert abs(r - 15.5) < 0.1 and abs(c - (15.5 + 8 / 2)) < 0.1
    assert torch.equal(out[:, 0], out[:, 1])  # one transform for the whole clip
    g = torch.Generator().manual_seed(3)
    u = torch.rand(3, generator=torch.Generator().manual_seed(3))
    out = random_affine(video, shift=0.25, generator=g)
    r, c = _centroid(out[0, 0])
    dy, dx = float((2 * u[2] - 1) * 8), float((2 * u[1] - 1) * 8)
    assert abs(r - (15.5 + dy)) < 0.1 and abs(c - (15.5 + 8 + dx)) < 0.1
    # identity settings return the input; the generator advances either way
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert random_affine(video, generator=g1) is video
    random_affine(video, zoom=(0.8, 1.2), generator=g2)
    assert torch.equal(torch.rand(1, generator=g1), torch.rand(1, generator=g2))
    with pytest.raises(ValueError, match="zoom"):
        random_affine(video, zoom=(1.2, 0.8))
    with pytest.raises(ValueError, match="shift"):
        random_affine(video, shift=1.0)


def test_random_channel_shuffle_permutes_whole_channels() -> None:
    video = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 4, 4).clone()
    seen = set()
    for seed in range(30):
        out = random_channel_shuffle(video, 1.0, torch.Generator().manual_seed(seed))
        assert sorted(out[:, 0, 0, 0].tolist()) == [0.0, 1.0, 2.0]
        assert (out == out[:, :1, :1, :1]).all()  # each output channel is one whole input channel
        seen.add(tuple(out[:, 0, 0, 0].tolist()))
    assert len(seen) == 6
    assert random_channel_shuffle(video, 0.0, torch.Generator().manual_seed(0)) is video


def test_transform_applies_the_optional_augmentations_in_training_only() -> None:
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    frames[:, 10:20, 12:16, 0] = 255  # a red bar
    cfg = VideoTransformConfig(
        num_frames=4, size=32, short_side=32, train_scale=(1.0, 1.0), train_ratio=(1.0, 1.0), hflip=0.0,
        train_zoom=(0.6, 0.6), train_channel_shuffle=1.0,
    )  # fmt: skip
    plain = VideoTransform(VideoTransformConfig(num_frames=4, size=32, short_side=32), train=False)(frames)
    assert torch.equal(VideoTransform(cfg, train=False)(frames), plain)
    outs = [VideoTransform(cfg, train=True)(frames, torch.Generator().manual_seed(s)) for s in range(8)]
    bright = [int((o > 1.0).any(dim=(1, 2, 3)).nonzero()[0]) for o in outs]  # the channel the red bar went to
    assert len(set(bright)) > 1
    area = [(o > 1.0).sum().item() for o in outs]
    assert all(a < 0.6 * (plain > 1.0).sum().item() for a in area)  # zoomed out to 0.6: ~0.36 of the area
    with pytest.raises(ValueError, match="train_zoom"):
        VideoTransformConfig(train_zoom=(0.0, 1.0))
    with pytest.raises(ValueError, match="train_shift"):
        VideoTransformConfig(train_shift=-0.1)
