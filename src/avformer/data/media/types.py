"""What media decoding returns and raises: :class:`MediaError`, :class:`Clip` (a decoded window),
:class:`StreamInfo` and :class:`ProbeInfo` (what :func:`~avformer.data.media.probe` found).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Clip", "MediaError", "ProbeInfo", "Status", "StreamInfo"]

Status = Literal["ok", "ok-video-only", "ok-audio-only", "partial", "error"]


class MediaError(RuntimeError):
    """A media file that cannot be decoded (or not within its time limit, or not a regular file).

    Attributes:
        path: the file.
        reason: one line saying why.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str = "") -> None:
        self.path = os.fspath(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}" if self.reason else self.path)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        return (type(self), (self.path, self.reason))


@dataclass
class Clip:
    """One decoded time window of a media file; both streams on one clock (seconds, file start = 0).

    Attributes:
        path: the file.
        video: (T, H, W, 3) uint8 RGB, display rotation applied; None when not requested or absent.
        video_timestamps: (T,) float64 seconds of each frame (the grid times when ``fps`` was given).
        fps: output frame rate: the target fps, else the mean rate of the returned frames (the stream's average
            rate for a single frame); None without video.
        audio: (S,) float32 mono in [-1, 1] at ``sample_rate``; ``audio[k]`` is at ``start + k / sample_rate``.
        sample_rate: audio sample rate (Hz).
        start: requested window start (s).
        end: window end actually covered by the returned streams (s).
        has_video: the clip holds at least one video frame.
        has_audio: the clip holds at least one audio sample.
        warnings: problems that did not stop decoding (partial decode, ignored rotation), one line each.
    """

    path: str
    video: np.ndarray | None
    video_timestamps: np.ndarray | None
    fps: float | None
    audio: np.ndarray | None
    sample_rate: int
    start: float
    end: float | None
    has_video: bool
    has_audio: bool
    warnings: list[str] = field(default_factory=list)


@dataclass
class StreamInfo:
    """One stream of a probed file.

    Attributes:
        index: stream index in the container.
        kind: 'video', 'audio', 'subtitle' or 'data' (attachments and unknown types are 'data').
        codec: decoder name ('h264', 'aac', ...), '' when FFmpeg has no decoder for it.
        width, height, fps: video geometry and average frame rate (None when unknown).
        sample_rate, channels: audio format (None when unknown).
        attached_pic: a cover picture stored as a 1-frame video stream (not treated as video).
        decoded: frames (video) or samples per channel (audio) that decoded during the probe; None if not tried.
        error: why decoding this stream stopped early, one line; None when it did not.
    """

    index: int
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    attached_pic: bool = False
    decoded: int | None = None
    error: str | None = None

    def describe(self) -> str:
        """Short summary such as ``v:h264 1280x720 25fps`` or ``a:aac 48000Hz 2ch``."""
        codec = self.codec or "<no decoder>"
        if self.kind == "video":
            tag = "cover" if self.attached_pic else "v"
            parts = [f"{tag}:{codec}"]
            if self.width and self.height:
                parts.append(f"{self.width}x{self.height}")
            if self.fps and not self.attached_pic:
                parts.append(f"{self.fps:.4g}fps")
            return " ".join(parts)
        if self.kind == "audio":
            parts = [f"a:{codec}"]
            if self.sample_rate:
                parts.append(f"{self.sample_rate}Hz")
            if self.channels:
                parts.append(f"{self.channels}ch")
            return " ".join(parts)
        return f"{self.kind[0]}:{codec}"


@dataclass
class ProbeInfo:
    """What a file holds and whether it really decodes (status rules: :mod:`avformer.data.media.probing`).

    Attributes:
        path: the file.
        container: FFmpeg demuxer name ('mov', 'matroska', ...); None when the file cannot be opened.
        duration: container duration in seconds; None when the container has none.
        streams: every stream in container order.
        status: 'ok', 'ok-video-only', 'ok-audio-only', 'partial' or 'error'.
        usable: at least one audio or video stream decodes at least one frame.
        reason: one line for 'partial'/'error' (and for a check cut short by the time limit), else ''.
        has_video: some video stream (not a cover picture) decoded frames.
        has_audio: some audio stream decoded samples.
        decoded_end: end (s, file clock) of the latest-ending audio/video frame that decoded: where the decodable
            content ends when the check reached the end of the file (a long file's middle is skipped, its tail
            decoded); None when nothing decoded. Compared with the header duration to catch headers that lie.
    """

    path: str
    container: str | None
    duration: float | None
    streams: list[StreamInfo]
    status: Status
    usable: bool
    reason: str = ""
    has_video: bool = False
    has_audio: bool = False
    decoded_end: float | None = None

    def describe_streams(self) -> str:
        """Comma-separated stream summaries (``v:h264 1280x720 25fps, a:aac 48000Hz 2ch``)."""
        return ", ".join(s.describe() for s in self.streams)
