"""Opening a container and reading its headers: stream choice, the shared clock, threads, header duration.

Helpers shared by :mod:`~avformer.data.media.decode` and :mod:`~avformer.data.media.probing`.

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

- **Text files.** FFmpeg's ``tty`` demuxer renders any ``.txt``/``.nfo`` file as ANSI-art video; such a file is
  rejected at open (``MediaError``; ``probe`` status ``error``), so a label file in a media folder is not a clip.
- **Streams.** The default-disposition stream of each kind, else the first; never a stream without a decoder or a
  cover picture (``attached_pic``, e.g. MP3 cover art); a video track that the header says is empty (0 frames,
  no frame rate) ranks after the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import av

from avformer.data.media.types import MediaError

_DISPOSITION_DEFAULT = 0x1  # AV_DISPOSITION_DEFAULT
_DISPOSITION_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC (cover art: a picture, not a video)
_EPS = 1e-6  # seconds: tolerance for comparing float timestamps with window edges and grid points
# demuxers that turn any text file into video (chosen by extension: .txt, .nfo, ...); never a media file here
_TEXT_DEMUXERS = frozenset({"tty"})


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
