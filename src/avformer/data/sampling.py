"""Temporal sampling: which seconds of a file to decode, and which decoded frames to keep.

- Time windows in seconds, so the decoder reads only the window it needs: :func:`random_clip_window` (training, a
  random start) and :func:`uniform_clip_windows` (SlowFast/MViT multi-clip testing, evenly spaced starts).
- Frame indices into an already decoded window: :func:`uniform_frame_indices` (TSN-style segment centres),
  :func:`strided_frame_indices` and :func:`fps_frame_indices` (resample to another frame rate).

Random functions take an explicit ``torch.Generator``; ``None`` falls back to torch's global RNG, and the same
generator state always gives the same output. The spatial transforms are in ``avformer.data.video``, which
re-exports these names.
"""

from __future__ import annotations

import torch

__all__ = [
    "fps_frame_indices",
    "random_clip_window",
    "strided_frame_indices",
    "uniform_clip_windows",
    "uniform_frame_indices",
]


def _rand(generator: torch.Generator | None) -> float:
    """One uniform float in [0, 1) from ``generator`` (or the global RNG)."""
    return float(torch.rand((), generator=generator))


def random_clip_window(
    duration: float, clip_seconds: float, generator: torch.Generator | None = None
) -> tuple[float, float]:
    """A training window: start uniform in ``[0, duration - clip_seconds]``.

    Args:
        duration: length of the file in seconds.
        clip_seconds: wanted window length in seconds.
        generator: RNG; ``None`` uses torch's global RNG.

    Returns:
        ``(start, end)`` in seconds, inside ``[0, duration]``. A file not longer than ``clip_seconds`` gives
        ``(0, duration)``: the whole file (pad it afterwards with :func:`~avformer.data.video.pad_or_loop_frames`).
    """
    if duration < 0 or clip_seconds <= 0:
        raise ValueError(f"need duration >= 0 and clip_seconds > 0, got {duration}, {clip_seconds}")
    if duration <= clip_seconds:
        return 0.0, float(duration)
    start = (duration - clip_seconds) * _rand(generator)
    return start, start + clip_seconds


def uniform_clip_windows(duration: float, clip_seconds: float, num_clips: int) -> list[tuple[float, float]]:
    """Evenly spaced test-time windows (SlowFast/MViT multi-clip testing).

    Starts are ``linspace(0, duration - clip_seconds, num_clips)``: the first window begins the file and the last
    ends it, so together they cover it. One clip is centred.

    Args:
        duration: length of the file in seconds.
        clip_seconds: window length in seconds.
        num_clips: number of windows.

    Returns:
        ``num_clips`` windows ``(start, end)`` in seconds. A file not longer than ``clip_seconds`` gives
        ``num_clips`` copies of ``(0, duration)``, so callers can always average ``num_clips`` predictions.
    """
    if duration < 0 or clip_seconds <= 0 or num_clips <= 0:
        raise ValueError(
            f"need duration >= 0, clip_seconds > 0, num_clips > 0; got {duration}, {clip_seconds}, {num_clips}"
        )
    if duration <= clip_seconds:
        return [(0.0, float(duration))] * num_clips
    slack = duration - clip_seconds
    if num_clips == 1:
        return [(slack / 2, slack / 2 + clip_seconds)]
    starts = [slack * i / (num_clips - 1) for i in range(num_clips)]
    return [(s, min(s + clip_seconds, float(duration))) for s in starts]


def uniform_frame_indices(num_available: int, num_frames: int) -> list[int]:
    """Pick ``num_frames`` evenly spread frames out of ``num_available`` (TSN-style segment centres).

    Index ``i`` is ``floor((i + 0.5) * num_available / num_frames)``: the centre of the i-th of ``num_frames`` equal
    segments. With fewer frames than wanted, frames repeat (the clip is stretched in time).

    Returns:
        ``num_frames`` non-decreasing indices in ``[0, num_available)``.
    """
    if num_available <= 0 or num_frames <= 0:
        raise ValueError(f"need num_available > 0 and num_frames > 0, got {num_available}, {num_frames}")
    step = num_available / num_frames
    return [min(int((i + 0.5) * step), num_available - 1) for i in range(num_frames)]


def strided_frame_indices(num_available: int, num_frames: int, stride: int, start: int = 0) -> list[int]:
    """``num_frames`` indices ``start, start + stride, ...``; past the end the last frame repeats.

    Returns:
        ``num_frames`` indices in ``[0, num_available)``.
    """
    if num_available <= 0 or num_frames <= 0 or stride <= 0:
        raise ValueError(
            f"need positive num_available, num_frames, stride; got {num_available}, {num_frames}, {stride}"
        )
    if not 0 <= start < num_available:
        raise ValueError(f"start {start} outside [0, {num_available})")
    return [min(start + i * stride, num_available - 1) for i in range(num_frames)]


def fps_frame_indices(num_available: int, num_frames: int, src_fps: float, dst_fps: float) -> list[int]:
    """Resample frames decoded at ``src_fps`` to ``dst_fps``, from the start of the window.

    Output frame ``i`` is the source frame shown at time ``(i + 0.5) / dst_fps``; frames past the end of the
    window repeat the last one (the same rule as :func:`~avformer.data.video.pad_or_loop_frames`).

    Returns:
        ``num_frames`` indices in ``[0, num_available)``.
    """
    if num_available <= 0 or num_frames <= 0 or src_fps <= 0 or dst_fps <= 0:
        raise ValueError("num_available, num_frames, src_fps and dst_fps must be positive")
    step = src_fps / dst_fps
    return [min(int((i + 0.5) * step), num_available - 1) for i in range(num_frames)]
