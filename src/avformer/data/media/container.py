"""Opening a container and reading its headers: stream choice, the shared clock, threads, header duration.

Helpers shared by :mod:`~avformer.data.media.decode` and :mod:`~avformer.data.media.probing`.

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

- **Text files.** FFmpeg's ``tty`` demuxer renders any ``.txt``/``.nfo`` file as ANSI-art video; such a file is
  rejected at open (``MediaError``; ``probe`` status ``error``), so a label file in a media folder is not a clip.
- **Streams.** The default-disposition stream of each kind, else the first; never a stream without a decoder or a
  cover picture (``attached_pic``, e.g. MP3 cover art); a video track that the header says is empty (0 frames,
  no frame rate) ranks after the others.
- **Only regular files.** A path is checked with ``os.stat`` (symlinks followed) before anything opens it: a
  directory, FIFO, socket or device (``/dev/zero``, ``/dev/stdin``) is refused at once (``MediaError``
  ``"not a regular file (a FIFO)"``), since reading one can block forever or never end. The file is then opened
  with ``O_NONBLOCK`` and checked again with ``fstat`` on the open descriptor, so a path swapped for a FIFO between
  the two checks is refused too instead of blocking: what FFmpeg reads is exactly what the check saw. FFmpeg gets
  the descriptor as a Python file object (custom I/O), never the path, so a name such as ``concat:a|b`` or
  ``http://...`` is a file name, not a protocol. A file that refers to other files (an HLS playlist, an
  ``ffconcat`` list) cannot open them: FFmpeg's protocol whitelist for nested opens is empty, so such a file fails
  to open (``cannot open``) instead of reaching a FIFO, a device or the network.
- **Deadline.** ``_open`` takes the caller's deadline (a ``time.monotonic()`` value; ``decode_clip``'s and
  ``probe``'s ``timeout_s``, ``media_duration``'s own): every read of the file after it returns end-of-file (the
  source is marked *expired*, and the caller raises "timed out" instead of using the truncated data), and FFmpeg's
  interrupt callback (PyAV's ``av.open(timeout=...)``) stops format probing and ``avformat_find_stream_info``
  between packets once the time left at the open has passed. What is *not* bounded in-process: one call into
  FFmpeg that never returns without reading (a decoder stuck inside one packet, a demuxer parsing an in-memory
  header); only a process boundary stops that (the DataLoader ``timeout`` with ``train.workers > 0``).
"""

from __future__ import annotations

import io
import math
import os
import stat
import time
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


# what a non-regular file is, for the one-line reason (checked in this order)
_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
# O_NONBLOCK: opening a FIFO (swapped in after the stat) returns at once instead of waiting for a writer;
# O_NOCTTY: a terminal never becomes the controlling one. Regular files ignore both.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
# FFmpeg's nested opens (HLS segments, ffconcat entries) must match this protocol list: none does
_CONTAINER_OPTIONS = {"protocol_whitelist": "none"}


def _not_regular(mode: int) -> str | None:
    """``"not a regular file (a FIFO)"`` for a non-regular ``st_mode``; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), f"mode {stat.filemode(mode)}")
    return f"not a regular file ({kind})"


class _Source:
    """A regular file as FFmpeg reads it (PyAV custom I/O): every read after ``deadline`` is end-of-file.

    Attributes:
        name: the path (FFmpeg uses its extension when guessing the format, and names it in errors).
        deadline: ``time.monotonic()`` value after which reads return ``b""``.
        expired: some read was refused because of the deadline (the data FFmpeg saw is incomplete).
    """

    def __init__(self, path: str, fd: int, deadline: float) -> None:
        self.name = path
        self.deadline = deadline
        self.expired = False
        self._file = io.FileIO(fd, "rb", closefd=True)

    def read(self, size: int = -1) -> bytes:
        if time.monotonic() > self.deadline:
            self.expired = True
            return b""
        return self._file.read(size) or b""

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


class _Input:
    """An open container and the file under it; :meth:`close` closes both (PyAV leaves custom I/O open)."""

    def __init__(self, container: Any, source: _Source) -> None:
        self.container = container
        self.source = source

    @property
    def expired(self) -> bool:
        """A read was refused because the deadline passed: whatever was decoded is incomplete."""
        return self.source.expired

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            self.source.close()


def _open_regular(path: str, deadline: float) -> _Source:
    """Open ``path`` for reading if, and only if, it is a regular file; never blocks (see the module docstring)."""
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise MediaError(path, "file not found") from e
    except OSError as e:
        raise MediaError(path, f"cannot open: {e.strerror or e}") from e
    if (why := _not_regular(st.st_mode)) is not None:
        raise MediaError(path, why)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as e:
        raise MediaError(path, "file not found") from e
    except OSError as e:  # EACCES, ENXIO (a socket swapped in), ...
        raise MediaError(path, f"cannot open: {e.strerror or e}") from e
    try:
        why = _not_regular(os.fstat(fd).st_mode)  # what was opened, whatever the path names now
        if why is not None:
            raise MediaError(path, why)
        return _Source(path, fd, deadline)
    except BaseException:
        os.close(fd)
        raise


def _open(path: str, deadline: float = math.inf) -> _Input:
    """Open a regular file as a container for reading, within ``deadline`` (``time.monotonic()``).

    Every failure becomes a MediaError naming the file: not found, not a regular file, cannot open, a text file,
    or ``timed out while opening``. See the module docstring for what the deadline bounds.
    """
    source = _open_regular(path, deadline)
    left = deadline - time.monotonic()
    try:
        if left <= 0:
            source.expired = True
            raise MediaError(path, "timed out while opening")
        container = av.open(
            source,
            mode="r",
            metadata_errors="replace",
            container_options=_CONTAINER_OPTIONS,
            timeout=(left if math.isfinite(left) else None, None),  # (open: probing + stream info, reads: none)
        )
    except MediaError:
        source.close()
        raise
    except Exception as e:  # FFmpeg errors, OSError, odd metadata: all mean "cannot open"
        source.close()
        if source.expired or isinstance(e, av.ExitError):  # our refused reads, or FFmpeg's interrupt callback
            raise MediaError(path, "timed out while opening") from e
        raise MediaError(path, f"cannot open: {_describe_exc(e)}") from e
    media = _Input(container, source)
    if _container_name(container) in _TEXT_DEMUXERS:
        media.close()
        raise MediaError(path, "a text file, not media (FFmpeg would render its text as a video)")
    if source.expired:  # the headers were cut short: the container may look valid but is not what the file holds
        media.close()
        raise MediaError(path, "timed out while opening")
    return media


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
