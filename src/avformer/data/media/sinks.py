"""The sinks of one decode pass: decoded frames in, the window's RGB frames and mono waveform out.

:class:`_VideoSink` selects and converts the frames the clip shows; :class:`_AudioSink` resamples, averages to
mono and places the audio on the clock. :func:`~avformer.data.media.decode_clip` feeds them.

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
- **Audio.** Channels are resampled with ``av.AudioResampler`` (fltp, source layout, target rate), flushed at the
  end, then averaged to mono (an exact channel mean, not swresample's surround downmix). A window with an end
  holds exactly ``round((end - start) * sample_rate)`` samples when the audio covers it. ``end=None`` returns
  every decoded sample (e.g. 16384 for a 1 s AV-Digits clip: the AAC frame padding is part of the stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from avformer.data.media.container import _EPS, _stream_t0
from avformer.data.media.geometry import _Orientation, _orientation, _output_size

_VIDEO_LEAD_S = 0.5  # grid points at most this long before the video's first frame show that frame
_AUDIO_SLACK_S = 0.02  # decode this much audio past the window edges (resampler filter support)
_AUDIO_SKIP_S = 5.0  # audio ending this long before the window is not resampled (else: one segment, exact anchor)
_AUDIO_GAP_S = 0.01  # a pts jump larger than this (s) between audio frames is a gap (filled with silence)


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
