"""Probing a file: :func:`probe` lists its streams and decodes them to tell whether the file is usable.

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av

from avformer.data.media.container import (
    _container_name,
    _container_start,
    _decodable,
    _describe_exc,
    _is_attached_pic,
    _open,
    _set_threads,
)
from avformer.data.media.types import MediaError, ProbeInfo, Status, StreamInfo

__all__ = ["probe"]


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
