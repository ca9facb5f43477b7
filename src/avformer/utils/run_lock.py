"""One process (group) per run folder: an advisory lock file, ``.avformer.lock``, taken before a run reads or writes.

    with RunLock(out_dir):          # RunFolderBusy (a UsageError: exit 2) when another live process holds it
        ...train...

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``<folder>/.avformer.lock``; the file holds the owner's pid, host,
start time and command (JSON) while it is held and is emptied on release. The kernel drops a flock when its
process dies (even by SIGKILL), so a **stale lock** is one that can be taken but still names an owner: the new run
takes it over with a warning naming the dead owner. A second run on the same folder exits 2 with one line naming
the owner.

Under ``torchrun`` only rank 0 writes the run folder, so rank 0 alone takes the lock (a refused rank 0 exits, and
torchrun stops the other ranks). A forked child (a DataLoader worker) closes its copy of the lock's descriptor
at once (``os.register_at_fork``), so a worker that outlives its trainer for a moment does not keep the folder
locked. On a file system without locks (Lustre without ``-o flock``, NFS mounted ``nolock``: ENOSYS, ENOLCK,
EOPNOTSUPP) the run goes on unlocked, with a warning.

Limits: ``flock`` is advisory (a program that ignores the file is not stopped); on NFS it is emulated with POSIX
byte-range locks (Linux ≥ 2.6.12), which works across hosts when the server supports locking; where ``fcntl``
does not exist (Windows) ``msvcrt.locking`` on the first byte is used.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from avformer.utils.errors import UsageError

__all__ = ["LOCK_NAME", "RunFolderBusy", "RunLock", "prepare_folder"]

log = logging.getLogger(__name__)

LOCK_NAME = ".avformer.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class RunFolderBusy(UsageError):
    """Another live process holds the run folder's lock."""


def prepare_folder(folder: str | Path, what: str = "out_dir") -> Path:
    """Create ``folder`` (and its parents); a path that exists as a file is a :class:`UsageError` (exit 2), a
    read-only or forbidden place an ``OSError`` with the folder's name (exit 1 in the CLI)."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder: choose another {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise UsageError(f"{what} {path}: a part of the path is a file, not a folder ({e.filename})") from e
    except OSError as e:
        if e.filename is None:
            e.filename = str(path)
        raise
    return path


_UNSUPPORTED = {errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL}
_HELD: set[int] = set()  # lock descriptors this process holds: a forked child closes its copies


def _close_in_child() -> None:
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


class _NoLocks(Exception):
    """The file system does not support locks."""


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            if e.errno in _UNSUPPORTED:
                raise _NoLocks(os.strerror(e.errno)) from e
            raise
        return True
    import msvcrt  # pragma: no cover - Windows

    try:  # pragma: no cover - Windows
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    except OSError:  # pragma: no cover - Windows
        return False
    return True  # pragma: no cover - Windows


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:  # pragma: no cover - Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _read_owner(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    if not raw.strip():
        return None
    try:
        owner = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return {"pid": "?", "host": "?", "raw": raw[:200].decode("utf-8", errors="replace")}
    return owner if isinstance(owner, dict) else {"pid": "?", "host": "?"}


def _describe(owner: dict[str, Any] | None) -> str:
    if owner is None:
        return "another process (no owner recorded yet)"
    since = owner.get("started")
    when = f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if isinstance(since, float) else ""
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}{when}"


class RunLock:
    """The lock of one run folder (see the module docstring). Not re-entrant: a second lock of the same folder is
    refused even in the same process."""

    def __init__(self, folder: str | Path, *, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.command = command if command is not None else " ".join(sys.argv)
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self) -> RunLock:
        """Take the lock (creating the folder).

        Raises:
            RunFolderBusy: another live process holds it.
            UsageError: the folder path is a file.
            OSError: the folder cannot be created or written (read-only, permissions).
        """
        if self.fd is not None:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        prepare_folder(self.folder)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.filename is None:
                e.filename = str(self.path)
            raise
        try:
            try:
                locked = _try_lock(fd)
            except _NoLocks as e:
                log.warning(
                    "run folder %s: the file system does not support locks (%s); running without the "
                    "one-run-per-folder guard",
                    self.folder,
                    e,
                )
                os.close(fd)
                return self
            if not locked:
                owner = _read_owner(fd)
                raise RunFolderBusy(
                    f"run folder {self.folder} is in use by {_describe(owner)}: wait for that run to finish, stop "
                    "it (or its leftover loader workers), or choose another train.out_dir / --out"
                )
            stale = _read_owner(fd)  # emptied on release: an owner still named here died holding the lock
            if stale is not None:
                log.warning(
                    "run folder %s: took over the lock of %s, which is no longer running",
                    self.folder,
                    _describe(stale),
                )
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": self.command}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        _HELD.add(fd)
        return self

    def release(self) -> None:
        """Empty the lock file and release it (a no-op when not held)."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        _HELD.discard(fd)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            _unlock(fd)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
