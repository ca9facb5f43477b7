"""Audio-visual synchronisation as offset classification: the offset grid, accuracies, and the envelope baseline.

The baseline is the plain signal-processing answer the learned models must beat (issue 20): per video frame, the
audio energy envelope (the mean of the log-mel over its bins, averaged over the spectrogram frames of that video
frame) and the frame-difference energy (mean absolute change of the pixels from the previous frame); for every
offset of the grid, the Pearson correlation of the two sequences where they overlap once the video is moved by that
offset; the estimate is the offset of the highest correlation. It needs no training and reads the same tensors the
model reads, so it scores exactly the same validation windows.

Sign convention, shared with :class:`~avformer.data.config.ViewConfig`: an offset ``o > 0`` means the audio window
starts ``o`` seconds after the video window, so the sound of a video event at window time ``t`` appears at audio
window time ``t - o``: audio frame ``tau`` pairs with video frame ``tau + o * fps``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "audio_envelope",
    "envelope_baseline_scores",
    "frame_difference_energy",
    "offset_accuracy",
    "offset_grid",
    "offset_shifts",
]


def offset_grid(max_offset: float, num: int) -> tuple[float, ...]:
    """``num`` offsets evenly spaced over ``[-max_offset, max_offset]`` (seconds), rounded to the microsecond.

    ``offset_grid(0.5, 9)`` is -0.5, -0.375, ..., 0.5 (Chen et al. 2021 / SparseSync use such symmetric grids;
    SparseSync: 21 classes over ±2 s)."""
    if num < 2 or max_offset <= 0:
        raise ValueError(f"need num >= 2 and max_offset > 0, got {num}, {max_offset}")
    step = 2 * max_offset / (num - 1)
    return tuple(round(-max_offset + i * step, 6) for i in range(num))


def offset_shifts(offsets: tuple[float, ...] | list[float], fps: float) -> list[int]:
    """Each offset in steps of ``fps`` (video frames, or time tokens).

    Raises:
        ValueError: an offset that is not a whole number of steps (within 1 %), or two offsets on the same step.
    """
    steps = [o * fps for o in offsets]
    shifts = [round(x) for x in steps]
    if any(abs(x - s) > 0.01 for x, s in zip(steps, shifts, strict=True)) or len(set(shifts)) != len(shifts):
        raise ValueError(
            f"the offsets {list(offsets)} s are not distinct whole steps at {fps:g} steps per second; "
            "use offsets that are multiples of the frame (and token) period"
        )
    return shifts


def offset_accuracy(pred: Tensor, target: Tensor, tolerance: int = 0) -> float:
    """Share of ``pred`` (N,) class indices within ``tolerance`` classes of ``target`` (N,); NaN when empty."""
    if target.numel() == 0:
        return float("nan")
    return float(((pred.long() - target.long()).abs() <= tolerance).float().mean())


def audio_envelope(audio: Tensor, num_frames: int) -> Tensor:
    """(B, num_frames) audio energy envelope per video frame from a log-mel batch ``audio`` (B, 1, F, T_a) (or
    (B, F, T_a)): the mean over mel bins, then averaged over the spectrogram frames of each video frame."""
    x = audio.float()
    if x.ndim == 4:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"the envelope baseline needs log-mel input (B, 1, F, T), got shape {tuple(audio.shape)}")
    env = x.mean(dim=1)  # (B, T_a)
    return F.adaptive_avg_pool1d(env[:, None], num_frames)[:, 0]


def frame_difference_energy(video: Tensor) -> Tensor:
    """(B, T) mean absolute pixel change from the previous frame of ``video`` (B, C, T, H, W); frame 0 has none
    (NaN)."""
    v = video.float()
    diff = (v[:, :, 1:] - v[:, :, :-1]).abs().mean(dim=(1, 3, 4))  # (B, T - 1)
    return torch.cat((torch.full_like(diff[:, :1], float("nan")), diff), dim=1)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of (B, N) tensors (0 where a row is constant)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    den = (a.square().sum(dim=1) * b.square().sum(dim=1)).sqrt()
    return torch.where(den > 0, (a * b).sum(dim=1) / den.clamp_min(1e-12), torch.zeros_like(den))


def envelope_baseline_scores(audio: Tensor, video: Tensor, shifts: list[int], min_overlap: int = 3) -> Tensor:
    """(B, K) the baseline's score of each offset: the correlation of the audio envelope with the frame-difference
    energy, the video moved by ``shifts[k]`` frames (see the module docstring).

    Args:
        audio: (B, 1, F, T_a) log-mel of the audio windows.
        video: (B, C, T, H, W) the video windows (any normalisation: differences are taken per pixel).
        shifts: per offset class, the offset in video frames (:func:`offset_shifts`).
        min_overlap: an offset whose overlap has fewer frames scores -inf.
    """
    T = video.shape[2]
    env = audio_envelope(audio, T)  # (B, T)
    diff = frame_difference_energy(video)  # (B, T), NaN at 0
    scores = []
    for s in shifts:
        lo, hi = max(1 - s, 0), min(T, T - s)  # audio frame tau pairs with video frame tau + s (>= 1: a difference)
        if hi - lo < min_overlap:
            scores.append(torch.full((video.shape[0],), float("-inf"), device=video.device))
            continue
        scores.append(_pearson(env[:, lo:hi], diff[:, lo + s : hi + s]))
    return torch.stack(scores, dim=1)
