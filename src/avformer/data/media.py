"""Media decoding with PyAV: one time window of a file -> a :class:`Clip` (frames + mono waveform, one clock).

Entry points: :func:`decode_clip` (the dataset's reader), :func:`load_audio` (audio only), :func:`probe` (what is
in a file and does it really decode; ``avformer probe``) and :func:`media_duration` (header duration, cheap).

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

- **Clock.** A frame's time is ``pts * time_base - container.start_time``, so both streams share the container
  clock and a file starts at 0 (MPEG-TS/FLV start offsets vanish; MP4 edit lists are applied by FFmpeg). A stream
  that starts after the window start keeps its offset: audio gets *leading* zeros so ``audio[k]`` is the sample
  at ``start + k / sample_rate``; grid points up to 0.5 s before the video's first frame show that frame (earlier
  ones are left out: the timestamps say so). Audio that ends before the window end is returned short, never
  padded at the end. Audio frames are placed by their pts: a jump of more than 10 ms (dropped buffers in phone
  recordings, cut MPEG-TS) becomes silence and an overlap is overwritten, so audio stays aligned after a gap.
- **Video selection.** ``fps=None``: every frame with ``start <= t < end``, its own timestamps. ``fps=f``: the
  grid ``start + i / f`` for ``i = 0, 1, ...`` while ``< end`` and while ``< end of the last frame`` (last pts +
  its duration); each grid point shows the most recent frame at or before it (the first frame for grid points
  before it). Only frames that are shown are converted to RGB (conversion + resize cost more than decoding
  small frames). ``video_timestamps`` are the grid times.
- **Size.** ``size=int``: the short side of the *displayed* (rotated) picture, aspect kept; ``size=(H, W)``:
  exact. With ``size=None`` a picture whose long side exceeds ``max_side`` (default 2048) is shrunk to it, aspect
  kept. The resize happens inside the RGB conversion (swscale, bilinear), so an 8K frame is never materialised
  in RGB. The output size is fixed by the first converted frame (a mid-stream resolution change is resized to
  it). The sample aspect ratio is ignored (pixels are treated as square), as torchvision does.
- **Rotation.** The frame's display matrix is applied to the output (90/180/270 degree rotations and
  reflections, the same mapping as the ``ffmpeg`` CLI's autorotate); other angles are ignored with a warning.
  ``rotate=False`` returns the coded picture.
- **Audio.** Channels are resampled with ``av.AudioResampler`` (fltp, source layout, target rate), flushed at the
  end, then averaged to mono (an exact channel mean, not swresample's surround downmix). A window with an end
  holds exactly ``round((end - start) * sample_rate)`` samples when the audio covers it. ``end=None`` returns
  every decoded sample (e.g. 16384 for a 1 s AV-Digits clip: the AAC frame padding is part of the stream).
- **Seeking.** ``start > 0``: seek (backward, to a keyframe) to ``start - 0.5 s`` on the video stream (else the
  audio stream) and decode forward. If a stream's first decoded frame lands after ``start`` although the stream
  starts earlier (an index that points past the target: seen with VVC in MP4), the window is decoded again after
  a seek to ``start - 5 s``, then from the beginning of the file.
- **One pass.** Audio and video are demuxed and decoded in one ``container.demux(video, audio)`` loop; decoding
  stops as soon as every requested stream covers the window.
- **Text files.** FFmpeg's ``tty`` demuxer renders any ``.txt``/``.nfo`` file as ANSI-art video; such a file is
  rejected at open (``MediaError``; ``probe`` status ``error``), so a label file in a media folder is not a clip.
- **Errors.** The first exception in a stream ends that stream: what decoded is kept and a warning ``"video: decode
  error after 28 frames: InvalidDataError: ..."`` is added (a *partial* clip). A demux error ends all streams the
  same way. Exception: after a seek, up to 8 packets that fail before a stream's first frame are skipped (a seek can
  land inside an audio frame in MPEG-PS/TS, whose rest cannot decode). If the requested streams yield nothing at
  all, :class:`MediaError` is raised. Streams that are absent are flags (``has_audio=False``); a file with no
  decodable audio or video stream at all raises. Argument errors (``end <= start``, nothing requested) raise
  ``ValueError``.
- **Streams.** The default-disposition stream of each kind, else the first; never a stream without a decoder or a
  cover picture (``attached_pic``, e.g. MP3 cover art); a video track that the header says is empty (0 frames,
  no frame rate) ranks after the others.
- **Bounded cost.** ``timeout_s`` is checked between packets (one packet's decode cannot be interrupted: a C call
  that hangs needs a process boundary, e.g. a DataLoader worker with a timeout). FFmpeg's decoder threads and
  swscale's threads are both set to ``threads``.
- **probe.** Decodes (no RGB conversion) every audio/video stream in one pass. Long files: the first
  ``head_s`` (30 s) of media are decoded, then the last ``tail_s`` (5 s) after a seek, so truncated long files
  are still caught; a wall-clock cap (``timeout_s``, 20 s) stops the check early without changing the status
  (the reason says so). Status: ``ok`` (video and audio, no error), ``ok-video-only``/``ok-audio-only``,
  ``partial`` (some stream decoded frames, and some stream raised or has no decoder), ``error`` (cannot open, or
  no audio/video frame decodes). An empty track (0 frames, no error) is ignored. A clean early end of data
  (e.g. a truncated Matroska file: FFmpeg sees a normal EOF) is not an error, but the reason says so.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import numpy as np

__all__ = [
    "DEFAULT_MAX_SIDE",
    "Clip",
    "MediaError",
    "ProbeInfo",
    "StreamInfo",
    "decode_clip",
    "load_audio",
    "media_duration",
    "probe",
]

DEFAULT_MAX_SIDE = 2048  # long side (px) above which frames are shrunk while converting when no size is given

_DISPOSITION_DEFAULT = 0x1  # AV_DISPOSITION_DEFAULT
_DISPOSITION_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC (cover art: a picture, not a video)
_EPS = 1e-6  # seconds: tolerance for comparing float timestamps with window edges and grid points
# seek this far before the window start (interleaving slack for the other stream); if the first frame still lands
# after the start (an index that points past the target), retry further back, then from the file start
_SEEK_MARGINS_S: tuple[float | None, ...] = (0.5, 5.0, None)
_VIDEO_LEAD_S = 0.5  # grid points at most this long before the video's first frame show that frame
_AUDIO_SLACK_S = 0.02  # decode this much audio past the window edges (resampler filter support)
_AUDIO_SKIP_S = 5.0  # audio ending this long before the window is not resampled (else: one segment, exact anchor)
_AUDIO_GAP_S = 0.01  # a pts jump larger than this (s) between audio frames is a gap (filled with silence)
_SEEK_LEAD_ERRORS = 8  # after a seek, skip up to this many undecodable packets before a stream's first frame
# demuxers that turn any text file into video (chosen by extension: .txt, .nfo, ...); never a media file here
_TEXT_DEMUXERS = frozenset({"tty"})

Status = Literal["ok", "ok-video-only", "ok-audio-only", "partial", "error"]


class MediaError(RuntimeError):
    """A media file that cannot be decoded (or not within its time limit).

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
    """What a file holds and whether it really decodes (see the module docstring for the status rules).

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

    def describe_streams(self) -> str:
        """Comma-separated stream summaries (``v:h264 1280x720 25fps, a:aac 48000Hz 2ch``)."""
        return ", ".join(s.describe() for s in self.streams)


# --------------------------------------------------------------------------------------------------------------
# helpers shared by decode_clip and probe


def _describe_exc(e: BaseException) -> str:
    """``InvalidDataError: Invalid data found when processing input`` (FFmpeg errors without the file name)."""
    msg = getattr(e, "strerror", None) if isinstance(e, av.FFmpegError) else None
    if not msg:
        msg = str(e)
    return " ".join(f"{type(e).__name__}: {msg}".split())


def _open(path: str) -> Any:
    """Open a container for reading; every failure becomes a MediaError naming the file."""
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if os.path.isdir(path):
        raise MediaError(path, "is a directory")
    try:
        container = av.open(path, mode="r", metadata_errors="replace")
    except Exception as e:  # FFmpeg errors, OSError, odd metadata: all mean "cannot open"
        raise MediaError(path, f"cannot open: {_describe_exc(e)}") from e
    if _container_name(container) in _TEXT_DEMUXERS:
        container.close()
        raise MediaError(path, "a text file, not media (FFmpeg would render its text as a video)")
    return container


def _container_start(container: Any) -> float:
    st = container.start_time
    return st / av.time_base if st is not None else 0.0


def _container_name(container: Any) -> str:
    return str(container.format.name).split(",")[0]


def _is_attached_pic(stream: Any) -> bool:
    return bool(int(stream.disposition) & _DISPOSITION_ATTACHED_PIC)


def _decodable(stream: Any) -> bool:
    """An audio/video stream FFmpeg has a decoder for, that is not a cover picture."""
    return stream.type in ("video", "audio") and stream.codec_context is not None and not _is_attached_pic(stream)


def _select_stream(streams: Iterable[Any]) -> Any | None:
    """The default-disposition decodable stream, else the first; header-empty video tracks rank last."""

    def key(s: Any) -> tuple[bool, bool, int]:
        not_default = not int(s.disposition) & _DISPOSITION_DEFAULT
        looks_empty = s.type == "video" and s.frames == 0 and s.average_rate is None
        return (looks_empty, not_default, s.index)

    candidates = [s for s in streams if _decodable(s)]
    return min(candidates, key=key) if candidates else None


def _stream_t0(stream: Any, c0: float) -> float:
    """The stream's first timestamp on the container clock (0 when unknown)."""
    if stream.start_time is None:
        return 0.0
    return stream.start_time * float(stream.time_base) - c0


def _set_threads(stream: Any, threads: int) -> None:
    cc = stream.codec_context
    try:
        cc.thread_count = threads
        if threads != 1:
            cc.thread_type = "AUTO"
    except Exception:  # an already-open context keeps its threading; never fatal
        pass


# --------------------------------------------------------------------------------------------------------------
# display matrix


@dataclass(frozen=True)
class _Orientation:
    """Right-angle display transform: transpose first, then flip rows/columns (out = flips(transpose(in)))."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, img: np.ndarray) -> np.ndarray:
        """(H, W, 3) -> displayed (H', W', 3); a view, no copy."""
        if self.transpose:
            img = img.transpose(1, 0, 2)
        if self.flip_rows:
            img = img[::-1]
        if self.flip_cols:
            img = img[:, ::-1]
        return img


def _orientation(frame: Any) -> tuple[_Orientation, str | None]:
    """Read the frame's display matrix. Returns (orientation, warning or None).

    FFmpeg's matrix maps a source point (x, y) to ``x' = a x + c y``, ``y' = b x + d y`` (a, b, c, d =
    m[0], m[1], m[3], m[4] in 16.16 fixed point). Diagonal: flips by the signs of a and d. Anti-diagonal:
    a transpose, then flips by the signs of b (rows) and c (columns).
    """
    matrix = None
    try:
        for sd in frame.side_data:
            if str(getattr(sd.type, "name", sd.type)).endswith("DISPLAYMATRIX"):
                raw = bytes(sd)
                if len(raw) >= 36:
                    matrix = np.frombuffer(raw[:36], dtype=np.int32).astype(np.float64) / 65536.0
                break
    except Exception:
        matrix = None
    if matrix is None:
        rot = round(float(getattr(frame, "rotation", 0) or 0)) % 360  # counter-clockwise degrees
        table = {
            0: _Orientation(),
            90: _Orientation(True, True, False),
            180: _Orientation(False, True, True),
            270: _Orientation(True, False, True),
        }
        if rot in table:
            return table[rot], None
        return _Orientation(), f"video: display rotation {rot} deg is not a right angle; ignored"
    a, b, c, d = (float(v) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    diag, anti = abs(a) + abs(d), abs(b) + abs(c)
    if min(diag, anti) > 1e-3 * max(diag, anti) or max(diag, anti) == 0:
        return _Orientation(), "video: display matrix is not a right-angle rotation/reflection; ignored"
    if diag > anti:
        return _Orientation(False, d < 0, a < 0), None
    return _Orientation(True, b < 0, c < 0), None


def _output_size(disp_hw: tuple[int, int], size: int | tuple[int, int] | None, max_side: int | None) -> tuple[int, int]:
    """Displayed output (H, W) for a displayed source (H, W)."""
    h, w = disp_hw
    if size is None:
        if max_side is None or max(h, w) <= max_side:
            return h, w
        scale = max_side / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    if isinstance(size, int):
        if h <= w:
            return size, max(1, round(w * size / h))
        return max(1, round(h * size / w)), size
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------------------------------------------
# decode_clip


@dataclass(frozen=True)
class _Request:
    """The arguments of one decode_clip call, as the decode loop and the sinks need them."""

    start: float
    end: float | None
    fps: float | None
    size: int | tuple[int, int] | None
    max_side: int | None
    sample_rate: int
    video: bool
    audio: bool
    rotate: bool
    threads: int
    timeout_s: float | None
    deadline: float  # time.monotonic() value


class _SeekMiss(Exception):
    """A seek landed after the window start: decode again from the beginning."""


class _VideoSink:
    """Receives decoded frames in presentation order; selects, converts and keeps the ones the clip shows."""

    def __init__(self, stream: Any, c0: float, req: _Request, seeked: bool) -> None:
        self.tb = float(stream.time_base)
        self.c0 = c0
        self.start, self.end, self.fps = req.start, req.end, req.fps
        self.size, self.max_side, self.rotate = req.size, req.max_side, req.rotate
        self.sws_threads = req.threads
        self.seeked = seeked
        self.stream_t0 = _stream_t0(stream, c0)
        rate = stream.average_rate or stream.guessed_rate
        self.stream_fps = float(rate) if rate else None
        self.reformatter = av.video.reformatter.VideoReformatter()
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.warnings: list[str] = []
        self.decoded = 0
        self.orientation: _Orientation | None = None
        self.store_hw: tuple[int, int] | None = None  # (H, W) handed to swscale (before rotation)
        self.prev: Any = None
        self.prev_t = -math.inf
        self.prev_dur: float | None = None
        self.last_src: Any = None
        self.last_arr: np.ndarray | None = None
        self.grid_i = 0
        end, fps = req.end, req.fps
        self.n_grid: float = (
            math.inf if end is None or fps is None else max(0, math.ceil((end - req.start) * fps - _EPS))
        )

    def _time(self, frame: Any) -> float:
        if frame.pts is not None:
            return frame.pts * self.tb - self.c0
        step = 1.0 / self.stream_fps if self.stream_fps else 0.04
        return self.prev_t + step if self.prev is not None else self.start

    def _duration(self, frame: Any, t: float) -> float | None:
        dur = getattr(frame, "duration", None)
        if dur:
            return dur * self.tb
        if self.prev is not None and t > self.prev_t:
            return t - self.prev_t
        return 1.0 / self.stream_fps if self.stream_fps else None

    def _convert(self, frame: Any) -> np.ndarray:
        if frame is self.last_src and self.last_arr is not None:
            return self.last_arr
        if self.orientation is None:
            orient, warn = _orientation(frame) if self.rotate else (_Orientation(), None)
            if warn:
                self.warnings.append(warn)
            disp = (frame.width, frame.height) if orient.transpose else (frame.height, frame.width)
            out_h, out_w = _output_size(disp, self.size, self.max_side)
            self.orientation = orient
            self.store_hw = (out_w, out_h) if orient.transpose else (out_h, out_w)
        assert self.store_hw is not None
        h, w = self.store_hw
        rgb = self.reformatter.reformat(frame, width=w, height=h, format="rgb24", threads=self.sws_threads)
        arr = self.orientation.apply(rgb.to_ndarray())
        self.last_src, self.last_arr = frame, arr
        return arr

    def _emit(self, frame: Any, t: float) -> None:
        self.frames.append(self._convert(frame))
        self.times.append(t)

    def push(self, frame: Any) -> bool:
        """Take one decoded frame; True once the window is complete."""
        self.decoded += 1
        t = self._time(frame)
        if self.decoded == 1 and self.seeked and t > self.start + _EPS and t > self.stream_t0 + _EPS:
            raise _SeekMiss
        if self.fps is None:
            if t < self.start - _EPS:
                self.prev, self.prev_t = frame, t
                return False
            if self.end is not None and t >= self.end - _EPS:
                return True
            self._emit(frame, t)
            self.prev, self.prev_t, self.prev_dur = frame, t, self._duration(frame, t)
            return False
        if self.prev is not None and t <= self.prev_t + _EPS:  # repeated/non-monotonic pts: keep the first
            return False
        if self.prev is None and self.end is not None and t >= self.end - _EPS:
            return True  # the video starts after the window: nothing to show
        # every grid point before this frame shows the previous frame; before the first frame, the first frame
        # stands in for up to _VIDEO_LEAD_S (a video track that starts a little late), earlier points stay empty
        while self.grid_i < self.n_grid:
            g = self.start + self.grid_i / self.fps
            if g >= t - _EPS:
                break
            if self.prev is not None or t - g <= _VIDEO_LEAD_S:
                self._emit(self.prev if self.prev is not None else frame, g)
            self.grid_i += 1
        dur = self._duration(frame, t)
        self.prev, self.prev_t, self.prev_dur = frame, t, dur
        return self.grid_i >= self.n_grid

    def finish(self) -> None:
        """End of stream (or of the window): grid points up to the end of the last frame show it."""
        if self.fps is None or self.prev is None:
            return
        video_end = self.prev_t + (self.prev_dur or 1.0 / self.fps)
        limit = video_end if self.end is None else min(self.end, video_end)
        while self.grid_i < self.n_grid:
            g = self.start + self.grid_i / self.fps
            if g >= limit - _EPS:
                break
            self._emit(self.prev, g)
            self.grid_i += 1
        self.prev = self.last_src = None  # release decoder buffers

    def measured_fps(self) -> float | None:
        """Mean rate of the kept frames (headers can state the time base as the rate); the header's rate if < 2."""
        if len(self.times) >= 2 and self.times[-1] > self.times[0]:
            return (len(self.times) - 1) / (self.times[-1] - self.times[0])
        return self.stream_fps

    def covered_end(self) -> float:
        """End (s) of the time the kept frames cover."""
        if self.fps is not None:
            return self.times[-1] + 1.0 / self.fps
        return self.times[-1] + (self.prev_dur or (1.0 / self.stream_fps if self.stream_fps else 0.0))


class _AudioSink:
    """Receives decoded audio frames; resamples (channels kept), averages to mono, cuts the window exactly.

    Frames are placed by their pts: a run of contiguous frames is one *segment* (resampled as a whole); a jump of
    more than ``_AUDIO_GAP_S`` between a frame's pts and the end of the segment so far starts a new segment
    (a gap becomes silence, an overlap is overwritten), as does a format change. A segment's start time is its
    first pts, moved into the range that every ``pts_i - samples_before_i / rate`` allows to within half a
    time-base tick (pts are rounded to ticks: 1 ms in Matroska), so a window read after a seek lines up with the
    same window read from the file start to within a sample.
    """

    def __init__(self, stream: Any, c0: float, req: _Request, seeked: bool) -> None:
        self.tb = float(stream.time_base)
        self.c0 = c0
        self.start, self.end, self.sr = req.start, req.end, req.sample_rate
        self.seeked = seeked
        self.stream_t0 = _stream_t0(stream, c0)
        self.resampler: Any = None
        self.seg_fmt: tuple[str, str, int] | None = None
        self.seg_t0 = 0.0
        self.seg_lo = self.seg_hi = 0.0  # bounds on the segment's true start time
        self.seg_in = 0  # input samples fed into the current segment
        self.chunks: list[np.ndarray] = []  # mono output of the current segment
        self.segments: list[tuple[float, np.ndarray]] = []  # (start time, (n,) float32 mono)
        self.next_t: float | None = None
        self.decoded = 0
        self.warnings: list[str] = []

    def _drain(self, frame: Any | None) -> None:
        for out in self.resampler.resample(frame):
            if out is None:  # a passthrough resampler echoes the flush
                continue
            planes = out.to_ndarray()  # (C, n) float32
            self.chunks.append(planes[0].copy() if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32))

    def _close_segment(self) -> None:
        if self.resampler is None:
            return
        self._drain(None)
        if self.chunks:
            anchor = min(max(self.seg_t0, self.seg_lo), self.seg_hi)  # the first pts, unless later ones rule it out
            self.segments.append((anchor, np.concatenate(self.chunks)))
        self.resampler, self.chunks = None, []

    def push(self, frame: Any) -> bool:
        """Take one decoded frame; True once the window (plus slack) is covered."""
        self.decoded += 1
        n, rate = frame.samples, frame.sample_rate
        t = frame.pts * self.tb - self.c0 if frame.pts is not None else (self.next_t or 0.0)
        if self.decoded == 1 and self.seeked and t > self.start + 1e-3 and t > self.stream_t0 + 1e-3:
            raise _SeekMiss
        t_end = t + n / rate
        self.next_t = t_end
        if t_end < self.start - _AUDIO_SKIP_S or n == 0:  # long before the window (only after a missed seek)
            return False
        fmt = (frame.format.name, frame.layout.name, rate)
        if self.resampler is None or fmt != self.seg_fmt or abs(t - (self.seg_t0 + self.seg_in / rate)) > _AUDIO_GAP_S:
            self._close_segment()
            self.resampler = av.AudioResampler(format="fltp", rate=self.sr)
            self.seg_fmt, self.seg_t0, self.seg_in = fmt, t, 0
            self.seg_lo, self.seg_hi = t - self.tb / 2, t + self.tb / 2
        else:  # refine the anchor: each pts is the true time rounded to a tick (coarse: Matroska's 1 ms)
            a = t - self.seg_in / rate
            lo, hi = max(self.seg_lo, a - self.tb / 2), min(self.seg_hi, a + self.tb / 2)
            if lo <= hi:
                self.seg_lo, self.seg_hi = lo, hi
        self._drain(frame)
        self.seg_in += n
        return self.end is not None and t_end >= self.end + _AUDIO_SLACK_S

    def finish(self) -> np.ndarray | None:
        """(S,) float32 mono, ``audio[k]`` at ``start + k / sample_rate``; None when nothing decoded."""
        self._close_segment()
        if not self.segments:
            return None
        cap = round((self.end - self.start) * self.sr) if self.end is not None else math.inf
        placed = []
        for t0, wav in self.segments:
            pos = round((t0 - self.start) * self.sr)
            if pos < 0:
                wav, pos = wav[-pos:], 0
            if len(wav) and pos < cap:  # a segment that overlaps the window
                placed.append((pos, wav))
        if not placed:
            return None
        total = int(min(cap, max(pos + len(wav) for pos, wav in placed)))
        out = np.zeros(total, dtype=np.float32)
        for pos, wav in placed:
            seg = wav[: total - pos]
            out[pos : pos + len(seg)] = seg
        return np.clip(out, -1.0, 1.0, out=out)


def _check_args(start: float, end: float | None, fps: float | None, sample_rate: int) -> None:
    if not math.isfinite(start) or start < 0:
        raise ValueError(f"start must be a finite number >= 0, got {start}")
    if end is not None and not end > start:
        raise ValueError(f"end must be > start, got start={start}, end={end}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")


def decode_clip(
    path: str | os.PathLike[str],
    start: float = 0.0,
    end: float | None = None,
    *,
    fps: float | None = None,
    size: int | tuple[int, int] | None = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    sample_rate: int = 16000,
    video: bool = True,
    audio: bool = True,
    timeout_s: float | None = 60.0,
    threads: int = 1,
    rotate: bool = True,
    window: Callable[[float | None], tuple[float, float | None]] | None = None,
) -> Clip:
    """Decode the window ``[start, end)`` (seconds) of a media file.

    Args:
        path: media file (any container/codec FFmpeg reads).
        start: window start (s, file clock: the file starts at 0).
        end: window end (s), exclusive; None = to the end of the file.
        fps: output frame rate (nearest-previous frame on the grid ``start + i / fps``); None = native frames.
        size: int = short side of the output (aspect kept); (H, W) = exact output size; None = native
            (but see ``max_side``).
        max_side: with ``size=None``, frames whose long side exceeds this are shrunk to it while converting
            (bounds memory for 4K/8K sources); None disables the bound.
        sample_rate: output audio rate (Hz).
        video: decode video.
        audio: decode audio.
        timeout_s: wall-clock budget for the whole call; None = unbounded.
        threads: FFmpeg decoder and swscale threads (0 = FFmpeg's automatic choice).
        rotate: apply the display matrix (rotation/reflection) to the frames.
        window: choose the window from the file's header duration (None when unknown) once the file is open:
            ``window(duration) -> (start, end)`` replaces ``start``/``end``. Saves opening the file twice when
            the window depends on the length (random training clips, centred test clips).

    Returns:
        A :class:`Clip`: ``video`` (T, H, W, 3) uint8, ``video_timestamps`` (T,) float64, ``audio`` (S,) float32.

    Raises:
        MediaError: the file cannot be opened, has no decodable audio/video stream, the requested streams yield
            nothing in the window, or the time limit was hit.
        ValueError: invalid arguments.
    """
    if window is None:
        _check_args(start, end, fps, sample_rate)
    if not (video or audio):
        raise ValueError("nothing to decode: video=False and audio=False")
    p = os.fspath(path)
    deadline = time.monotonic() + timeout_s if timeout_s is not None else math.inf
    req: _Request | None = None
    for margin in _SEEK_MARGINS_S:
        container = _open(p)
        try:
            if req is None:
                if window is not None:
                    start, end = window(_container_duration(container))
                    _check_args(start, end, fps, sample_rate)
                req = _Request(
                    start, end, fps, size, max_side, sample_rate, video, audio, rotate, threads, timeout_s, deadline
                )
            return _decode(container, p, req, margin)
        except _SeekMiss:
            continue
        finally:
            container.close()
    raise AssertionError("unreachable: the last pass never seeks")


def _decode(container: Any, path: str, req: _Request, seek_margin: float | None) -> Clip:
    """One demux pass over the selected streams of an open container (see the module docstring)."""
    c0 = _container_start(container)
    vs = _select_stream(container.streams.video) if req.video else None
    aus = _select_stream(container.streams.audio) if req.audio else None
    warnings: list[str] = []
    if vs is None and aus is None:
        if not any(_decodable(s) for s in container.streams):
            kinds = ", ".join(f"{s.type}#{s.index}" for s in container.streams) or "no streams"
            raise MediaError(path, f"no decodable audio or video stream ({kinds})")
        return Clip(path, None, None, None, None, req.sample_rate, req.start, None, False, False, warnings)

    seeked = False
    if seek_margin is not None and req.start > 0:
        s = vs if vs is not None else aus
        target = req.start - seek_margin
        if target > _stream_t0(s, c0) + _EPS:
            try:
                container.seek(math.floor((target + c0) / float(s.time_base)), stream=s, backward=True)
                seeked = True
            except Exception as e:  # unseekable input: decode from the beginning instead
                raise _SeekMiss from e

    vsink = _VideoSink(vs, c0, req, seeked) if vs is not None else None
    asink = _AudioSink(aus, c0, req, seeked) if aus is not None else None
    sinks: dict[int, tuple[str, _VideoSink | _AudioSink]] = {}
    for stream, kind, sink in ((vs, "video", vsink), (aus, "audio", asink)):
        if stream is not None and sink is not None:
            _set_threads(stream, req.threads)
            sinks[stream.index] = (kind, sink)
    active = set(sinks)
    lead_errors = dict.fromkeys(sinks, 0)  # decode errors before a stream's first frame after a seek

    demux = container.demux(*[s for s in (vs, aus) if s is not None])
    while active:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except Exception as e:  # demux/IO error: every stream ends here
            for idx in active:
                kind, sink = sinks[idx]
                warnings.append(f"{kind}: demux error after {sink.decoded} frames: {_describe_exc(e)}")
            break
        if time.monotonic() > req.deadline:
            raise MediaError(path, f"timed out after {req.timeout_s:g} s")
        idx = packet.stream.index
        if idx not in active:
            continue
        kind, sink = sinks[idx]
        try:
            for frame in packet.decode():
                if sink.push(frame):
                    active.discard(idx)
                    break
        except _SeekMiss:
            raise
        except Exception as e:  # the first error ends this stream; what decoded is kept
            if seeked and sink.decoded == 0 and lead_errors[idx] < _SEEK_LEAD_ERRORS:
                lead_errors[idx] += 1  # a seek can land inside a frame (MPEG-PS/TS audio): its rest cannot decode
                continue
            warnings.append(f"{kind}: decode error after {sink.decoded} frames: {_describe_exc(e)}")
            active.discard(idx)

    frames = times = wav = None
    out_fps = None
    ends: list[float] = []
    if vsink is not None:
        try:
            vsink.finish()
        except Exception as e:
            warnings.append(f"video: conversion error: {_describe_exc(e)}")
        warnings = vsink.warnings + warnings
        if vsink.frames:
            frames = np.stack(vsink.frames)
            times = np.asarray(vsink.times, dtype=np.float64)
            out_fps = req.fps if req.fps is not None else vsink.measured_fps()
            ends.append(vsink.covered_end())
    if asink is not None:
        try:
            wav = asink.finish()
        except Exception as e:
            warnings.append(f"audio: resampling error: {_describe_exc(e)}")
        if wav is not None:
            ends.append(req.start + len(wav) / req.sample_rate)

    if frames is None and wav is None:
        if warnings:
            raise MediaError(path, "; ".join(warnings))
        window = f"[{req.start:g}, {'end' if req.end is None else f'{req.end:g}'})"
        raise MediaError(path, f"no frames in the window {window}")
    return Clip(
        path=path,
        video=frames,
        video_timestamps=times,
        fps=out_fps,
        audio=wav,
        sample_rate=req.sample_rate,
        start=req.start,
        end=max(ends) if req.end is None else min(max(ends), req.end),
        has_video=frames is not None,
        has_audio=wav is not None,
        warnings=warnings,
    )


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = 16000,
    start: float = 0.0,
    end: float | None = None,
    *,
    timeout_s: float | None = 60.0,
) -> tuple[np.ndarray, int]:
    """Mono audio of ``[start, end)`` as ((S,) float32 in [-1, 1], sample_rate).

    Raises:
        MediaError: as :func:`decode_clip`, and also when the file has no decodable audio.
    """
    clip = decode_clip(path, start, end, sample_rate=sample_rate, video=False, audio=True, timeout_s=timeout_s)
    if clip.audio is None:
        raise MediaError(
            path, "no decodable audio stream" + (f" ({'; '.join(clip.warnings)})" if clip.warnings else "")
        )
    return clip.audio, sample_rate


def _container_duration(container: Any) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    c0 = _container_start(container)
    ends = [
        _stream_t0(s, c0) + s.duration * float(s.time_base)
        for s in container.streams
        if s.type in ("video", "audio") and s.duration
    ]
    return max(ends) if ends else None


def media_duration(path: str | os.PathLike[str]) -> float | None:
    """Duration in seconds from the headers (container, else the longest stream); None when unknown.

    Cheap (no decoding), so it can lie; use :func:`probe` to check a file.

    Raises:
        MediaError: the file cannot be opened.
    """
    container = _open(os.fspath(path))
    try:
        return _container_duration(container)
    finally:
        container.close()


# --------------------------------------------------------------------------------------------------------------
# probe


@dataclass
class _ProbeState:
    stream: Any
    info: StreamInfo
    count: int = 0
    last_t: float = -math.inf
    error: str | None = None
    done: bool = False


def _stream_info(s: Any) -> StreamInfo:
    kind = s.type if s.type in ("video", "audio", "subtitle") else "data"
    cc = s.codec_context
    info = StreamInfo(index=s.index, kind=kind, codec=cc.name if cc is not None else "")
    if kind == "video":
        info.attached_pic = _is_attached_pic(s)
        if cc is not None:
            info.width, info.height = (cc.width or None), (cc.height or None)
        info.fps = float(s.average_rate) if s.average_rate else None
    elif kind == "audio" and cc is not None:
        info.sample_rate = cc.sample_rate or None
        info.channels = cc.channels or None
    return info


def _probe_pass(container: Any, states: Sequence[_ProbeState], until: float, deadline: float) -> bool:
    """Decode the given streams in one demux pass until each passes ``until`` s; False when out of time."""
    tbs = {st.stream.index: float(st.stream.time_base) for st in states}
    by_index = {st.stream.index: st for st in states}
    c0 = _container_start(container)
    active = {i for i, st in by_index.items() if not st.done}
    demux = container.demux(*[st.stream for st in states])
    while active:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except Exception as e:
            for i in active:
                by_index[i].error = f"demux error: {_describe_exc(e)}"
            return True
        if time.monotonic() > deadline:
            return False
        i = packet.stream.index
        if i not in active:
            continue
        st = by_index[i]
        try:
            for frame in packet.decode():
                st.count += frame.samples if st.info.kind == "audio" else 1
                if frame.pts is not None:
                    st.last_t = frame.pts * tbs[i] - c0
        except Exception as e:
            st.error = _describe_exc(e)
            active.discard(i)
            continue
        if st.last_t > until:
            active.discard(i)
    return True


def probe(
    path: str | os.PathLike[str], *, timeout_s: float = 20.0, head_s: float = 30.0, tail_s: float = 5.0
) -> ProbeInfo:
    """Open a file, list its streams and decode them (no RGB conversion) to tell whether it is usable.

    Args:
        path: media file.
        timeout_s: wall-clock cap on decoding; hitting it stops the check without changing the status.
        head_s: decode every audio/video stream up to this time (s)...
        tail_s: ...and, when the file is longer than ``head_s + tail_s``, its last ``tail_s`` seconds too.

    Returns:
        A :class:`ProbeInfo`; never raises for a bad file (status 'error' with the reason instead).
    """
    p = os.fspath(path)
    try:
        container = _open(p)
    except MediaError as e:
        return ProbeInfo(p, None, None, [], "error", False, e.reason)
    try:
        return _probe_open(container, p, timeout_s, head_s, tail_s)
    finally:
        container.close()


def _probe_open(container: Any, path: str, timeout_s: float, head_s: float, tail_s: float) -> ProbeInfo:
    deadline = time.monotonic() + timeout_s
    duration = container.duration / av.time_base if container.duration is not None else None
    infos = [_stream_info(s) for s in container.streams]
    states = [_ProbeState(s, infos[s.index]) for s in container.streams if _decodable(s)]
    for st in states:
        _set_threads(st.stream, 1)
    notes: list[str] = []
    long = duration is not None and duration > head_s + tail_s
    in_time = _probe_pass(container, states, head_s if long else math.inf, deadline) if states else True
    checked_to = max((st.last_t for st in states), default=0.0)
    if in_time and long and duration is not None and checked_to < duration - tail_s:
        for st in states:
            if st.error is None:
                st.stream.codec_context.flush_buffers()
        live = [st for st in states if st.error is None]
        try:
            target = duration - tail_s + _container_start(container)
            container.seek(int(target * av.time_base), backward=True)
            notes.append(f"decoded 0-{checked_to:.0f} s and the last {tail_s:g} s of {duration:.0f} s")
            in_time = _probe_pass(container, live, math.inf, deadline)
        except Exception as e:
            for st in live:
                st.error = f"seek to the tail failed: {_describe_exc(e)}"
    if not in_time:
        notes.append(f"check stopped after {timeout_s:g} s (time limit); no error so far")
    decoded_end = max((st.last_t for st in states if st.count), default=-math.inf)
    if in_time and duration is not None and 0 <= decoded_end < duration - max(1.0, 0.1 * duration):
        # an early clean EOF (truncated file, or a header that lies): not an error, but worth saying
        notes.append(f"decoded media ends at {decoded_end:.1f} s, the header says {duration:.1f} s")

    for st in states:
        st.info.decoded = st.count
        st.info.error = st.error
    has_video = any(st.count > 0 and st.info.kind == "video" for st in states)
    has_audio = any(st.count > 0 and st.info.kind == "audio" for st in states)
    problems = [
        f"{i.describe()} (#{i.index}): {i.error} after {i.decoded} {'samples' if i.kind == 'audio' else 'frames'}"
        for i in infos
        if i.error
    ]
    problems += [
        f"{i.describe()} (#{i.index}): no decoder"
        for i in infos
        if i.kind in ("video", "audio") and not i.codec and not i.attached_pic
    ]
    container_name = _container_name(container)
    usable = has_video or has_audio
    status: Status
    if not usable:
        status = "error"
        if not states:
            problems.insert(0, "no decodable audio or video stream")
        elif not problems:
            problems.append("no audio or video frame decodes")
    elif problems:
        status = "partial"
    elif has_video and has_audio:
        status = "ok"
    else:
        status = "ok-video-only" if has_video else "ok-audio-only"
    reason = "; ".join(problems + notes)
    return ProbeInfo(path, container_name, duration, infos, status, usable, reason, has_video, has_audio)
