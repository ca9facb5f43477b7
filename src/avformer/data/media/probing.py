"""Probing a file: :func:`probe` lists its streams and decodes them to tell whether the file is usable.

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

- **probe.** Decodes (no RGB conversion) every audio/video stream in one pass. Long files: the first
  ``head_s`` (30 s) of media are decoded, then the last ``tail_s`` (5 s) after a seek, so truncated long files
  are still caught; a wall-clock cap (``timeout_s``, 20 s, the open included) stops the check early without
  changing the status (the reason says so); a file that cannot even be opened within it is ``error``
  (``"timed out while opening"``). Status: ``ok`` (video and audio, no error), ``ok-video-only``/``ok-audio-only``,
  ``partial`` (some stream decoded frames, and some stream raised or has no decoder), ``error`` (cannot open, or
  no audio/video frame decodes). An empty track (0 frames, no error) is ignored. A clean early end of data
  (e.g. a truncated Matroska file: FFmpeg sees a normal EOF) is not an error, but the reason says so.
- **Implausible duration.** Training and ``predict`` place windows using the header duration (the container's,
  else the longest stream's: :func:`~avformer.data.media.media_duration`), so a header that claims far more than
  the file holds (a Matroska ``Duration`` of 1e9 s over 3 s of frames) loses most windows. When the check ran to
  the end (within the time limit, no stream error) and the decodable content (the end of the last decoded
  audio/video frame, :attr:`ProbeInfo.decoded_end`) ends more than ``max(2 s, 10 %)`` before the declared
  duration, the file is ``partial``: ``"declared duration 1000000000.0 s but decodable content ends at 3.0 s"``.
  For a long file the middle is not decoded: the content's end is then where the decode after the tail seek ran
  out; when nothing decodes after that seek the reason says so instead. A smaller shortfall (over
  ``max(1 s, 10 %)``) is only a note, the status unchanged (a slightly truncated file still serves its windows).
  Per-stream header durations are not compared one by one: training never uses them when the container has one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av

from avformer.data.media.container import (
    _container_duration,
    _container_name,
    _container_start,
    _decodable,
    _describe_exc,
    _Input,
    _is_attached_pic,
    _open,
    _set_threads,
)
from avformer.data.media.types import MediaError, ProbeInfo, Status, StreamInfo

__all__ = ["probe"]

# a declared duration is implausible when the decodable content ends this far before it: max(_ABS, _REL * declared)
_IMPLAUSIBLE_ABS_S = 2.0
_IMPLAUSIBLE_REL = 0.1
# a smaller shortfall over max(_NOTE_ABS, _REL * declared) is only a note (e.g. a slightly truncated Matroska file)
_NOTE_ABS_S = 1.0


@dataclass
class _ProbeState:
    stream: Any
    info: StreamInfo
    count: int = 0
    last_t: float = -math.inf  # start of the last decoded frame (container clock, s)
    end_t: float = -math.inf  # end of the latest-ending decoded frame (container clock, s)
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


def _frame_seconds(frame: Any, time_base: float) -> float:
    """How long a decoded frame lasts (s): audio from its samples, video from its duration (0 when unknown)."""
    if isinstance(frame, av.AudioFrame):
        return frame.samples / frame.sample_rate if frame.sample_rate else 0.0
    return frame.duration * time_base if frame.duration else 0.0


def _probe_pass(media: _Input, states: Sequence[_ProbeState], until: float, deadline: float) -> tuple[bool, int]:
    """Decode the given streams in one demux pass until each passes ``until`` s.

    Returns:
        (in time: False when the deadline stopped it, frames decoded in this pass).
    """
    container = media.container
    tbs = {st.stream.index: float(st.stream.time_base) for st in states}
    by_index = {st.stream.index: st for st in states}
    c0 = _container_start(container)
    active = {i for i, st in by_index.items() if not st.done}
    frames = 0
    demux = container.demux(*[st.stream for st in states])
    while active:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except Exception as e:
            if media.expired:
                return False, frames
            for i in active:
                by_index[i].error = f"demux error: {_describe_exc(e)}"
            return True, frames
        if time.monotonic() > deadline:
            return False, frames
        i = packet.stream.index
        if i not in active:
            continue
        st = by_index[i]
        try:
            for frame in packet.decode():
                frames += 1
                st.count += frame.samples if st.info.kind == "audio" else 1
                if frame.pts is not None:
                    st.last_t = frame.pts * tbs[i] - c0
                    st.end_t = max(st.end_t, st.last_t + _frame_seconds(frame, tbs[i]))
        except Exception as e:
            st.error = _describe_exc(e)
            active.discard(i)
            continue
        if st.last_t > until:
            active.discard(i)
    return not media.expired, frames


def probe(
    path: str | os.PathLike[str], *, timeout_s: float = 20.0, head_s: float = 30.0, tail_s: float = 5.0
) -> ProbeInfo:
    """Open a file, list its streams and decode them (no RGB conversion) to tell whether it is usable.

    Args:
        path: media file (only regular files are opened: a FIFO, directory or device is ``error`` at once).
        timeout_s: wall-clock cap on the check, the open included; hitting it while decoding stops the check
            without changing the status, hitting it while opening is ``error``.
        head_s: decode every audio/video stream up to this time (s)...
        tail_s: ...and, when the file is longer than ``head_s + tail_s``, its last ``tail_s`` seconds too.

    Returns:
        A :class:`ProbeInfo`; never raises for a bad file (status 'error' with the reason instead).
    """
    p = os.fspath(path)
    deadline = time.monotonic() + timeout_s
    try:
        media = _open(p, deadline)
    except MediaError as e:
        reason = f"{e.reason} (time limit {timeout_s:g} s)" if e.reason.startswith("timed out") else e.reason
        return ProbeInfo(p, None, None, [], "error", False, reason)
    try:
        return _probe_open(media, p, timeout_s, head_s, tail_s, deadline)
    finally:
        media.close()


def _probe_open(media: _Input, path: str, timeout_s: float, head_s: float, tail_s: float, deadline: float) -> ProbeInfo:
    container = media.container
    duration = container.duration / av.time_base if container.duration is not None else None
    declared = _container_duration(container)  # what training and predict place their windows in
    infos = [_stream_info(s) for s in container.streams]
    states = [_ProbeState(s, infos[s.index]) for s in container.streams if _decodable(s)]
    for st in states:
        _set_threads(st.stream, 1)
    notes: list[str] = []
    long = duration is not None and duration > head_s + tail_s
    in_time = _probe_pass(media, states, head_s if long else math.inf, deadline)[0] if states else True
    checked_to = max((st.last_t for st in states), default=0.0)
    tail_target: float | None = None  # where the tail pass started (s), when there was one
    tail_frames = 0
    if in_time and long and duration is not None and checked_to < duration - tail_s:
        for st in states:
            if st.error is None:
                st.stream.codec_context.flush_buffers()
        live = [st for st in states if st.error is None]
        try:
            tail_target = duration - tail_s
            container.seek(int((tail_target + _container_start(container)) * av.time_base), backward=True)
            in_time, tail_frames = _probe_pass(media, live, math.inf, deadline)
        except Exception as e:
            if media.expired:
                in_time = False
            else:
                for st in live:
                    st.error = f"seek to the tail failed: {_describe_exc(e)}"
    if not in_time:
        notes.append(f"check stopped after {timeout_s:g} s (time limit); no error so far")

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
    # frames without timestamps (a raw .h264 stream) leave end_t at -inf: no decodable end is known then
    decoded_end = max((st.end_t for st in states if st.count and math.isfinite(st.end_t)), default=None)
    complete = in_time and not any(st.error for st in states)  # every stream decoded to its end (or to head_s)
    shortfall = declared - decoded_end if declared is not None and decoded_end is not None else 0.0
    if complete and declared is not None and decoded_end is not None and shortfall > _tolerance(declared):
        where = (
            f"nothing decodes after a seek to {tail_target:.1f} s; decoded content ends at {decoded_end:.1f} s"
            if tail_target is not None and tail_frames == 0
            else f"decodable content ends at {decoded_end:.1f} s"
        )
        problems.append(f"declared duration {declared:.1f} s but {where}")
    else:
        if tail_target is not None:
            notes.insert(0, f"decoded 0-{checked_to:.0f} s and the last {tail_s:g} s of {tail_target + tail_s:.0f} s")
        if in_time and declared is not None and shortfall > max(_NOTE_ABS_S, _IMPLAUSIBLE_REL * declared):
            # an early clean EOF (a truncated file, or a header that lies a little): not an error, worth saying
            notes.append(f"decoded media ends at {decoded_end:.1f} s, the header says {declared:.1f} s")
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
    return ProbeInfo(path, container_name, duration, infos, status, usable, reason, has_video, has_audio, decoded_end)


def _tolerance(declared: float) -> float:
    """How far (s) the decodable content may end before the declared duration before the file is ``partial``."""
    return max(_IMPLAUSIBLE_ABS_S, _IMPLAUSIBLE_REL * declared)
