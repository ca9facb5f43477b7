"""Crash-safe checkpoint files.

:func:`save_checkpoint` never leaves a half-written file at ``path``: it writes a temporary file in the same
folder, flushes and fsyncs it, then ``os.replace``-s it over ``path`` (atomic on POSIX and Windows) and fsyncs
the folder. If anything fails on the way (disk full, a kill signal turned into an exception, a pickling error),
the temporary file is removed and the previous checkpoint at ``path`` is untouched. A process killed with
SIGKILL mid-write can leave a stray ``.<name>.<pid>.*.tmp`` behind (never the checkpoint itself);
:func:`remove_stale_temps` clears those of processes that are no longer running (the trainer calls it while it
holds the run folder's lock, :mod:`avformer.utils.run_lock`). A full disk raises ``OSError(ENOSPC)`` naming the
file (torch's own writer reports it as an opaque ``unexpected pos`` error; the real cause is kept and re-raised).

:func:`load_checkpoint` reads with ``weights_only=True`` by default (no arbitrary code runs on load), so the
state must hold tensors, numbers, strings and containers of them; the trainer stores RNG states in that form.
A truncated or corrupt file raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = ["CheckpointError", "find_checkpoint", "load_checkpoint", "remove_stale_temps", "save_checkpoint", "versions"]

_TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read the process umask (mkstemp creates 0600 files; checkpoints get the usual mode)
os.umask(_UMASK)


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, truncated, corrupt or not a checkpoint."""


def versions() -> dict[str, str]:
    """Library versions stored in each checkpoint for reproducibility."""
    from avformer._version import __version__

    return {
        "avformer": __version__,
        "torch": str(torch.__version__),  # a TorchVersion object, which weights_only loading refuses
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _RecordingWriter:
    """A binary file wrapper that remembers the ``OSError`` of a failed write (torch.save hides it)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or the check itself is not possible here)
    return True


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Atomically write ``state`` (``torch.save`` format) to ``path``.

    Returns:
        The final path. On any error the temporary file is removed, ``path`` keeps its previous content, and
        the exception propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP_SUFFIX)
    tmp = Path(tmp_name)
    writer: _RecordingWriter | None = None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            writer = _RecordingWriter(f)
            torch.save(dict(state), writer)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        cause = writer.error if writer is not None and writer.error is not None else e
        if isinstance(cause, OSError) and cause is not e:
            raise OSError(cause.errno, cause.strerror, str(path)) from e
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    _fsync_dir(path.parent)
    return path


def _temp_owner(name: str) -> int | None:
    """The pid in a temp file name ``.<name>.<pid>.<random>.tmp`` (None for the older form without one)."""
    parts = name.split(".")
    return int(parts[-3]) if len(parts) >= 5 and parts[-3].isdigit() else None


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files a killed :func:`save_checkpoint` left in ``folder``; returns what was removed.

    Temp files of a process that is still running (another pid, on this host) are left alone; call this while
    holding the folder's :class:`~avformer.utils.run_lock.RunLock`.
    """
    removed = []
    for p in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        pid = _temp_owner(p.name)
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, weights_only: bool = True
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the file.
        map_location: where tensors go (``"cpu"`` by default, so a GPU checkpoint loads anywhere).
        weights_only: torch's safe unpickler (tensors and plain containers only). Pass False only for
            checkpoints you trust that hold other objects.

    Raises:
        CheckpointError: the file is missing, truncated or corrupt, or does not hold a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as e:  # torch raises RuntimeError / UnpicklingError / EOFError / ... for damaged files
        if weights_only and "Weights only load failed" in str(e):
            detail = next((ln.strip() for ln in str(e).splitlines() if "WeightsUnpickler error" in ln), "")
            raise CheckpointError(
                f"{path}: the checkpoint holds objects that weights_only loading refuses ({detail}); pass "
                "weights_only=False only if you trust the file"
            ) from e
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {e}); the file is truncated, corrupt or not a "
            "torch checkpoint"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(state).__name__}")
    return state


def find_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """The checkpoint file of a run folder (``best.pt`` then ``last.pt``, or the reverse with ``prefer="last"``), or
    ``path`` itself when it is a file.

    Raises:
        FileNotFoundError: a folder holding neither file.
    """
    path = Path(path)
    if not path.is_dir():
        return path
    order = ["best.pt", "last.pt"] if prefer == "best" else ["last.pt", "best.pt"]
    found = next((path / n for n in order if (path / n).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{path}: no best.pt or last.pt (is this a run folder of `avformer train`?)")
    return found
