"""Video transforms: pure functions on ``(C, T, H, W)`` tensors, thin random wrappers, and the composed transform.

Conventions
-----------
- The decoder hands over frames as ``(T, H, W, 3)`` uint8 (numpy or torch). :func:`to_tensor` turns them into
  ``(C, T, H, W)`` float32 in ``[0, 1]``, the layout video encoders (MViTv2, video ViT) take.
- Every spatial op acts on the whole clip at once, so all frames of a clip get the same crop, flip and resize
  (``F.interpolate`` sees the ``T`` frames as a batch of images).
- Random ops take an explicit ``torch.Generator``; ``None`` falls back to torch's global RNG. The same generator
  state always gives the same output.
- Temporal sampling returns *time windows in seconds* (so the decoder reads only the window it needs) or
  frame indices into an already decoded window; it lives in ``avformer.data.sampling`` and is re-exported here.

Recipes follow pytorchvideo / SlowFast / MViT: training uses a random resized crop and a horizontal flip;
evaluation resizes the short side and takes a centre crop; test-time multi-clip uses evenly spaced windows and
multi-crop (:func:`spatial_crops`, :meth:`VideoTransform.test_views`) takes crops spread along the long side
(SlowFast's 3-crop testing: left / centre / right, or top / centre / bottom for portrait video).
Differences from those references: the random resized crop takes one box for the whole clip (as pytorchvideo
does) with a default area range of ``(0.25, 1.0)`` rather than ImageNet's ``(0.08, 1.0)``, because tiny clips
(32-64 px) lose their object at 8 %; and clips shorter than requested repeat their last frame instead of
being dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avformer.data.sampling import (  # temporal sampling, re-exported; _rand is shared by the random spatial ops
    _rand,
    fps_frame_indices,
    random_clip_window,
    strided_frame_indices,
    uniform_clip_windows,
    uniform_frame_indices,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "NORMALIZATIONS",
    "VideoTransform",
    "VideoTransformConfig",
    "center_crop",
    "fps_frame_indices",
    "horizontal_flip",
    "normalize",
    "pad_or_loop_frames",
    "random_affine",
    "random_channel_shuffle",
    "random_clip_window",
    "random_horizontal_flip",
    "random_resized_crop",
    "random_resized_crop_params",
    "resized_crop",
    "short_side_resize",
    "spatial_crops",
    "strided_frame_indices",
    "to_tensor",
    "uniform_clip_windows",
    "uniform_frame_indices",
]

# Kinetics statistics used by pytorchvideo, SlowFast and MViT recipes.
KINETICS_MEAN: tuple[float, float, float] = (0.45, 0.45, 0.45)
KINETICS_STD: tuple[float, float, float] = (0.225, 0.225, 0.225)
# ImageNet statistics (image-pretrained backbones: ViT, LAVISH adapters, ...).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "kinetics": (KINETICS_MEAN, KINETICS_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}

Size = int | tuple[int, int]


def _pair(size: Size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else size
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return int(h), int(w)


def _check_video(video: torch.Tensor) -> None:
    if video.ndim != 4:
        raise ValueError(f"expected a (C, T, H, W) video, got shape {tuple(video.shape)}")


# ---- layout ------------------------------------------------------------------------------------------------


def to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Decoder frames to a float clip.

    Args:
        frames: ``(T, H, W, 3)`` uint8, numpy or torch.

    Returns:
        ``(C, T, H, W)`` float32 in ``[0, 1]``, contiguous.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {x.dtype}")
    # (T, H, W, C) -> (C, T, H, W): one pass that transposes and converts, then scale in place
    out = torch.empty((x.shape[3], *x.shape[:3]), dtype=torch.float32, device=x.device)
    out.copy_(x.permute(3, 0, 1, 2))
    return out.div_(255.0)


# ---- spatial ops (pure) ------------------------------------------------------------------------------------


def _resize(video: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear resize of every frame of ``(C, T, H, W)`` to ``(C, T, *size)``."""
    if tuple(video.shape[-2:]) == size:
        return video
    if not video.is_floating_point():
        raise TypeError(f"resize needs a float video, got {video.dtype}; call to_tensor first")
    # frames as a batch of images: (C, T, H, W) -> (T, C, H, W)
    frames = video.transpose(0, 1)
    out = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out.transpose(0, 1).contiguous()  # (C, T, h, w)


def short_side_resize(video: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """Resize so the shorter spatial side equals ``size``, keeping the aspect ratio.

    The long side becomes ``floor(long * size / short)`` (torchvision's rule). Bilinear, over all frames at once.

    Args:
        video: ``(C, T, H, W)`` float.
        size: target length of the shorter side, in pixels.
        antialias: low-pass filter when downscaling (matches PIL / torchvision ``antialias=True``).

    Returns:
        ``(C, T, H', W')`` float with ``min(H', W') == size``.
    """
    _check_video(video)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    h, w = video.shape[-2:]
    new_hw = (size, max(size, int(w * size / h))) if h <= w else (max(size, int(h * size / w)), size)
    return _resize(video, new_hw, antialias)


def center_crop(video: torch.Tensor, size: Size) -> torch.Tensor:
    """Crop the central ``size`` region of every frame.

    When ``H - h`` is odd the extra pixel goes below (top offset is ``(H - h) // 2``); likewise on the right.

    Args:
        video: ``(C, T, H, W)``, any dtype.
        size: ``s`` or ``(h, w)``; must not exceed the frame.

    Returns:
        ``(C, T, h, w)`` view of ``video``.
    """
    _check_video(video)
    h, w = _pair(size)
    height, width = video.shape[-2:]
    if h > height or w > width:
        raise ValueError(f"crop {h}x{w} larger than frame {height}x{width}; resize first")
    top, left = (height - h) // 2, (width - w) // 2
    return video[..., top : top + h, left : left + w]


def spatial_crops(video: torch.Tensor, size: Size, num_crops: int) -> list[torch.Tensor]:
    """``num_crops`` crops of ``size`` spread evenly along the long side, centred on the short side.

    One crop is the centre crop. Three crops on a landscape frame are left / centre / right (top / centre / bottom
    on a portrait one, left / centre / right on a square one), the first and last touching the frame edges, as in
    SlowFast / MViT multi-crop testing. On an axis the crop fills exactly, the crops coincide.

    Args:
        video: ``(C, T, H, W)``, any dtype.
        size: ``s`` or ``(h, w)``; must not exceed the frame.
        num_crops: number of crops (>= 1).

    Returns:
        ``num_crops`` views ``(C, T, h, w)`` of ``video``.
    """
    _check_video(video)
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    if num_crops == 1:
        return [center_crop(video, size)]
    h, w = _pair(size)
    height, width = video.shape[-2:]
    if h > height or w > width:
        raise ValueError(f"crop {h}x{w} larger than frame {height}x{width}; resize first")
    crops = []
    for i in range(num_crops):
        frac = i / (num_crops - 1)
        if height > width:  # portrait: spread along the height
            top, left = round((height - h) * frac), (width - w) // 2
        else:
            top, left = (height - h) // 2, round((width - w) * frac)
        crops.append(video[..., top : top + h, left : left + w])
    return crops


def resized_crop(
    video: torch.Tensor, top: int, left: int, height: int, width: int, size: Size, antialias: bool = True
) -> torch.Tensor:
    """Crop the box ``(top, left, height, width)`` from every frame and resize it to ``size``.

    Args:
        video: ``(C, T, H, W)`` float.
        top, left, height, width: the box in pixels, inside the frame.
        size: output ``s`` or ``(h, w)``.
        antialias: low-pass filter when downscaling.

    Returns:
        ``(C, T, h, w)`` float.
    """
    _check_video(video)
    box = video[..., top : top + height, left : left + width]
    if tuple(box.shape[-2:]) != (height, width):
        raise ValueError(f"box {(top, left, height, width)} outside frame {tuple(video.shape[-2:])}")
    return _resize(box, _pair(size), antialias)


def horizontal_flip(video: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right: ``torch.flip(video, dims=(-1,))``. ``(C, T, H, W) -> (C, T, H, W)``."""
    _check_video(video)
    return torch.flip(video, dims=(-1,))


def normalize(
    video: torch.Tensor,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    inplace: bool = False,
) -> torch.Tensor:
    """Per-channel ``(video - mean[c]) / std[c]``.

    Defaults are the Kinetics statistics of pytorchvideo/MViT; pass ``*NORMALIZATIONS["imagenet"]`` for
    ImageNet-pretrained backbones.

    Args:
        video: ``(C, T, H, W)`` float in ``[0, 1]``.
        mean: ``C`` channel means.
        std: ``C`` channel standard deviations (non-zero).
        inplace: overwrite ``video`` instead of allocating.

    Returns:
        ``(C, T, H, W)`` float.
    """
    _check_video(video)
    c = video.shape[0]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std need {c} values, got {len(mean)} and {len(std)}")
    if any(s == 0 for s in std):
        raise ValueError(f"std must be non-zero, got {tuple(std)}")
    m = torch.as_tensor(mean, dtype=video.dtype, device=video.device).view(c, 1, 1, 1)
    s = torch.as_tensor(std, dtype=video.dtype, device=video.device).view(c, 1, 1, 1)
    out = video if inplace else video.clone()
    return out.sub_(m).div_(s)


def pad_or_loop_frames(video: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Give a clip exactly ``num_frames`` frames.

    Short clips are padded by **repeating their last frame** (a frozen ending, not a loop: looping would
    put a jump cut in the clip and desynchronise it from its audio). Long clips keep their first
    ``num_frames`` frames.

    Args:
        video: ``(C, T, H, W)`` with ``T >= 1``.
        num_frames: wanted ``T``.

    Returns:
        ``(C, num_frames, H, W)``.
    """
    _check_video(video)
    t = video.shape[1]
    if t == 0:
        raise ValueError("cannot pad a clip with no frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if t >= num_frames:
        return video[:, :num_frames]
    pad = video[:, -1:].expand(-1, num_frames - t, -1, -1)
    return torch.cat([video, pad], dim=1)


# ---- spatial ops (random) ----------------------------------------------------------------------------------


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    max_tries: int = 10,
) -> tuple[int, int, int, int]:
    """Sample an Inception-style crop box: area fraction uniform in ``scale``, aspect log-uniform in ``ratio``.

    Up to ``max_tries`` boxes are drawn; if none fits, fall back to the largest centred box whose aspect
    lies in ``ratio``.

    Returns:
        ``(top, left, h, w)`` in pixels.
    """
    if not (0 < scale[0] <= scale[1] <= 1):
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    if not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(max_tries):
        target = area * (scale[0] + (scale[1] - scale[0]) * _rand(generator))
        aspect = math.exp(log_lo + (log_hi - log_lo) * _rand(generator))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(_rand(generator) * (height - h + 1))
            left = int(_rand(generator) * (width - w + 1))
            return top, left, h, w
    # fallback: whole frame, trimmed to the allowed aspect range
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(
    video: torch.Tensor,
    size: Size,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    antialias: bool = True,
) -> torch.Tensor:
    """Random resized crop with one box for all frames of the clip.

    Args:
        video: ``(C, T, H, W)`` float.
        size: output ``s`` or ``(h, w)``.
        scale: range of the box area as a fraction of the frame area.
        ratio: range of the box aspect ratio ``w / h`` (sampled log-uniformly).
        generator: RNG; ``None`` uses torch's global RNG.
        antialias: low-pass filter when downscaling.

    Returns:
        ``(C, T, h, w)`` float.
    """
    _check_video(video)
    top, left, h, w = random_resized_crop_params(video.shape[-2], video.shape[-1], scale, ratio, generator)
    return resized_crop(video, top, left, h, w, size, antialias)


def random_horizontal_flip(
    video: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Flip the whole clip left-right with probability ``p``. ``(C, T, H, W) -> (C, T, H, W)``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    # always draw, so the generator advances the same way whatever p is
    return horizontal_flip(video) if _rand(generator) < p else video


def random_affine(
    video: torch.Tensor,
    zoom: tuple[float, float] = (1.0, 1.0),
    shift: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scale the picture about its centre by a factor drawn from ``zoom`` and move it by up to ``shift`` of the frame
    on each axis; one transform for the whole clip, bilinear, the border pixels repeated outside the frame.

    ``zoom < 1`` shrinks the content (zooms out), ``> 1`` enlarges it. A random resized crop only ever zooms in;
    this adds the other direction and moves objects without cutting them. ``(C, T, H, W) -> (C, T, H, W)``.
    """
    _check_video(video)
    if not 0 < zoom[0] <= zoom[1]:
        raise ValueError(f"zoom must satisfy 0 < lo <= hi, got {zoom}")
    if not 0.0 <= shift < 1.0:
        raise ValueError(f"shift must be in [0, 1), got {shift}")
    u = torch.rand(3, generator=generator)  # always draw, so the generator advances the same way
    if zoom == (1.0, 1.0) and shift == 0.0:
        return video
    z = zoom[0] * (zoom[1] / zoom[0]) ** float(u[0])  # log-uniform
    dx, dy = (2 * u[1:] - 1) * 2 * shift  # normalised coordinates span 2 per axis
    theta = torch.tensor([[1 / z, 0.0, -dx / z], [0.0, 1 / z, -dy / z]], dtype=video.dtype, device=video.device)
    frames = video.transpose(0, 1)  # (T, C, H, W)
    grid = F.affine_grid(theta.expand(frames.shape[0], 2, 3), list(frames.shape), align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.transpose(0, 1)


def random_channel_shuffle(video: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p``, permute the colour channels of the whole clip (a random one of the 6 orders, the
    identity included): colour augmentation for data where hue carries no label. ``(C, T, H, W)``."""
    _check_video(video)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    coin, order = _rand(generator), torch.randperm(video.shape[0], generator=generator)
    return video[order] if coin < p else video


# ---- composed transform ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoTransformConfig:
    """Video preprocessing for one clip; the window length is ``clip_seconds = num_frames / fps``."""

    num_frames: int = 16  # frames per clip fed to the model
    fps: float = 8.0  # sampling rate of those frames (16 frames at 8 fps = 2 s)
    size: int = 224  # output height = width
    short_side: int = 256  # eval: resize the short side to this, then centre-crop `size`
    train_scale: tuple[float, float] = (0.25, 1.0)  # random-resized-crop area range (ImageNet uses 0.08)
    train_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random-resized-crop aspect range
    hflip: float = 0.5  # train flip probability
    # extra train-time augmentations, off by default (none of the MViT / MMT recipes uses them): after the crop,
    # scale the picture by a factor in `train_zoom` (< 1 zooms out) and move it by up to `train_shift` of the frame
    # (`random_affine`); permute the RGB channels with probability `train_channel_shuffle`
    train_zoom: tuple[float, float] = (1.0, 1.0)
    train_shift: float = 0.0
    train_channel_shuffle: float = 0.0
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    def __post_init__(self) -> None:
        if self.num_frames <= 0 or self.fps <= 0:
            raise ValueError(f"num_frames and fps must be positive, got {self.num_frames}, {self.fps}")
        if self.size <= 0 or self.short_side < self.size:
            raise ValueError(f"need 0 < size <= short_side, got size={self.size}, short_side={self.short_side}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"hflip must be in [0, 1], got {self.hflip}")
        if not (0 < self.train_scale[0] <= self.train_scale[1] <= 1):
            raise ValueError(f"train_scale must satisfy 0 < lo <= hi <= 1, got {self.train_scale}")
        if not 0 < self.train_zoom[0] <= self.train_zoom[1]:
            raise ValueError(f"train_zoom must satisfy 0 < lo <= hi, got {self.train_zoom}")
        if not 0.0 <= self.train_shift < 1.0 or not 0.0 <= self.train_channel_shuffle <= 1.0:
            raise ValueError(
                f"need 0 <= train_shift < 1 and 0 <= train_channel_shuffle <= 1, got {self.train_shift}, "
                f"{self.train_channel_shuffle}"
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need 3 values")

    @property
    def clip_seconds(self) -> float:
        """Length of the time window one clip covers."""
        return self.num_frames / self.fps


class VideoTransform:
    """Decoded frames to a normalised model clip.

    Train: random resized crop (one box per clip) + random horizontal flip (+ the optional zoom/shift and channel
    shuffle). Eval: short-side resize + centre crop.
    Both then normalise. Deterministic given the generator; eval draws no random numbers.

    Work order keeps it cheap: pick frames and crop in uint8, convert to float once, resize the whole clip in one
    ``F.interpolate`` call, normalise in place.
    """

    def __init__(self, cfg: VideoTransformConfig, train: bool) -> None:
        self.cfg = cfg
        self.train = train

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train={self.train}, cfg={self.cfg})"

    def select_frames(self, num_available: int, src_fps: float | None = None) -> list[int]:
        """Indices of the ``cfg.num_frames`` frames to keep from a decoded window of ``num_available`` frames.

        With ``src_fps``, frames are taken at ``cfg.fps`` from the window start. Without it, a window with enough
        frames is spread uniformly over ``cfg.num_frames`` (:func:`uniform_frame_indices`), and a shorter one is
        taken as a window cut short by the end of the file (the decoder delivers ``cfg.fps``), so it keeps its
        timing and repeats its last frame, in step with audio that is padded at the end.
        """
        if src_fps is not None:
            return fps_frame_indices(num_available, self.cfg.num_frames, src_fps, self.cfg.fps)
        if num_available >= self.cfg.num_frames:
            return uniform_frame_indices(num_available, self.cfg.num_frames)
        return strided_frame_indices(num_available, self.cfg.num_frames, stride=1)

    def _selected(self, frames: np.ndarray | torch.Tensor, src_fps: float | None) -> torch.Tensor:
        """The decoded window ``(T, H, W, 3)`` uint8 (checked) cut to the frames to keep: ``(num_frames, H, W, 3)``."""
        x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if x.ndim != 4 or x.shape[-1] != 3 or x.shape[0] == 0:
            raise ValueError(f"expected (T, H, W, 3) frames with T >= 1, got shape {tuple(x.shape)}")
        idx = self.select_frames(x.shape[0], src_fps)
        return x if idx == list(range(x.shape[0])) else x[idx]

    def __call__(
        self,
        frames: np.ndarray | torch.Tensor,
        generator: torch.Generator | None = None,
        src_fps: float | None = None,
    ) -> torch.Tensor:
        """Transform one decoded window.

        Args:
            frames: ``(T, H, W, 3)`` uint8, the decoded window (any ``T >= 1``).
            generator: RNG for the train-time augmentations; ``None`` uses torch's global RNG.
            src_fps: frame rate of ``frames`` when it is not ``cfg.fps``; see :meth:`select_frames`.

        Returns:
            ``(3, cfg.num_frames, cfg.size, cfg.size)`` float32, normalised.
        """
        cfg = self.cfg
        x = self._selected(frames, src_fps)
        height, width = x.shape[1:3]
        if self.train:
            top, left, h, w = random_resized_crop_params(height, width, cfg.train_scale, cfg.train_ratio, generator)
            video = to_tensor(x[:, top : top + h, left : left + w])  # crop in uint8, then float once
            video = _resize(video, (cfg.size, cfg.size), antialias=True)
            video = random_horizontal_flip(video, cfg.hflip, generator)
            if cfg.train_zoom != (1.0, 1.0) or cfg.train_shift > 0:
                video = random_affine(video, cfg.train_zoom, cfg.train_shift, generator)
            if cfg.train_channel_shuffle > 0:
                video = random_channel_shuffle(video, cfg.train_channel_shuffle, generator)
        else:
            video = short_side_resize(to_tensor(x), cfg.short_side)
            video = center_crop(video, cfg.size).contiguous()
        return normalize(video, cfg.mean, cfg.std, inplace=True)

    def test_views(
        self, frames: np.ndarray | torch.Tensor, num_crops: int = 1, src_fps: float | None = None
    ) -> list[torch.Tensor]:
        """Evaluation views of one decoded window: short-side resize once, then ``num_crops`` spatial crops.

        ``num_crops=1`` gives ``[self(frames)]`` exactly (the centre crop); see :func:`spatial_crops` for the
        positions of several.

        Args:
            frames: ``(T, H, W, 3)`` uint8, the decoded window.
            num_crops: crops per window.
            src_fps: as in :meth:`__call__`.

        Returns:
            ``num_crops`` tensors ``(3, cfg.num_frames, cfg.size, cfg.size)`` float32, normalised.
        """
        if self.train:
            raise RuntimeError("test_views is for evaluation; build the transform with train=False")
        cfg = self.cfg
        video = short_side_resize(to_tensor(self._selected(frames, src_fps)), cfg.short_side)
        # not in place: crops that fill the frame share its memory
        return [normalize(c, cfg.mean, cfg.std).contiguous() for c in spatial_crops(video, cfg.size, num_crops)]
