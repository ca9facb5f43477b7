"""Decoding one time window of a file: :func:`decode_clip`, :func:`load_audio`, :func:`media_duration`.

One seek and one demux pass feed the sinks of :mod:`~avformer.data.media.sinks`; see also
:mod:`~avformer.data.media.container` (streams, text files) and :mod:`~avformer.data.media.geometry` (size,
rotation).

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

- **Seeking.** ``start > 0``: seek (backward, to a keyframe) to ``start - 0.5 s`` on the video stream (else the
  audio stream) and decode forward. If a stream's first decoded frame lands after ``start`` although the stream
  starts earlier (an index that points past the target: seen with VVC in MP4), the window is decoded again after
  a seek to ``start - 5 s``, then from the beginning of the file.
- **One pass.** Audio and video are demuxed and decoded in one ``container.demux(video, audio)`` loop; decoding
  stops as soon as every requested stream covers the window.
- **Errors.** The first exception in a stream ends that stream: what decoded is kept and a warning ``"video: decode
  error after 28 frames: InvalidDataError: ..."`` is added (a *partial* clip). A demux error ends all streams the
  same way. Exception: after a seek, up to 8 packets that fail before a stream's first frame are skipped (a seek can
  land inside an audio frame in MPEG-PS/TS, whose rest cannot decode). If the requested streams yield nothing at
  all, :class:`MediaError` is raised. Streams that are absent are flags (``has_audio=False``); a file with no
  decodable audio or video stream at all raises. Argument errors (``end <= start``, nothing requested) raise
  ``ValueError``.
- **Bounded cost.** ``timeout_s`` is one wall-clock deadline for the whole call, the open included (every open of
  a retried window shares it). It bounds: opening (format probing and ``avformat_find_stream_info``: FFmpeg's
  interrupt callback between packets, and every read of the file refused after the deadline), seeking and
  demuxing (every read), and the decode loop (checked between packets). A read refused by the deadline never
  yields a silently truncated clip: the call raises ``MediaError("... timed out ...")``. It does *not* bound one
  call into FFmpeg that never returns without reading: a decoder stuck inside one packet, a scaler or resampler
  on one frame. Only a process boundary stops that: in training with ``train.workers > 0``, the DataLoader's
  ``timeout`` (:func:`avformer.data.dataset.loader_timeout`) ends the run with a one-line error instead of a hang;
  with ``workers=0`` nothing does. Only regular files are opened (see :mod:`~avformer.data.media.container`).
  FFmpeg's decoder threads and swscale's threads are both set to ``threads``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import numpy as np

from avformer.data.media.container import (
    _EPS,
    _container_duration,
    _container_start,
    _decodable,
    _describe_exc,
    _Input,
    _open,
    _select_stream,
    _set_threads,
    _stream_t0,
)
from avformer.data.media.sinks import _AudioSink, _Request, _SeekMiss, _VideoSink
from avformer.data.media.types import Clip, MediaError

__all__ = ["DEFAULT_MAX_SIDE", "decode_clip", "load_audio", "media_duration"]

DEFAULT_MAX_SIDE = 2048  # long side (px) above which frames are shrunk while converting when no size is given

# seek this far before the window start (interleaving slack for the other stream); if the first frame still lands
# after the start (an index that points past the target), retry further back, then from the file start
_SEEK_MARGINS_S: tuple[float | None, ...] = (0.5, 5.0, None)
_SEEK_LEAD_ERRORS = 8  # after a seek, skip up to this many undecodable packets before a stream's first frame


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
        timeout_s: wall-clock budget for the whole call, opening the file included (what it cannot interrupt:
            see the module docstring); None = unbounded.
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
        media = _open(p, deadline)
        try:
            if req is None:
                if window is not None:
                    start, end = window(_container_duration(media.container))
                    _check_args(start, end, fps, sample_rate)
                req = _Request(
                    start, end, fps, size, max_side, sample_rate, video, audio, rotate, threads, timeout_s, deadline
                )
            return _decode(media, p, req, margin)
        except _SeekMiss:
            continue
        finally:
            media.close()
    raise AssertionError("unreachable: the last pass never seeks")


def _decode(media: _Input, path: str, req: _Request, seek_margin: float | None) -> Clip:
    """One demux pass over the selected streams of an open container (see the module docstring)."""
    container = media.container
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
                if media.expired:
                    raise MediaError(path, f"timed out after {req.timeout_s:g} s (seeking)") from e
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
    if media.expired:  # a read was refused at the deadline: what decoded is cut short, not the file's end
        raise MediaError(path, f"timed out after {req.timeout_s:g} s")

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


def media_duration(path: str | os.PathLike[str], *, timeout_s: float | None = 60.0) -> float | None:
    """Duration in seconds from the headers (container, else the longest stream); None when unknown.

    Cheap (no decoding), so it can lie; use :func:`~avformer.data.media.probe` to check a file.

    Args:
        path: media file (a regular file: see :mod:`~avformer.data.media.container`).
        timeout_s: wall-clock limit on opening the file (reading its headers); None = unbounded.

    Raises:
        MediaError: the file cannot be opened, is not a regular file, or the time limit was hit.
    """
    deadline = time.monotonic() + timeout_s if timeout_s is not None else math.inf
    media = _open(os.fspath(path), deadline)
    try:
        return _container_duration(media.container)
    finally:
        media.close()
