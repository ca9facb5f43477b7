"""Error types of user mistakes and environment failures, and the one line a command prints for any exception.

Exit statuses of every ``avformer`` command (:func:`describe` decides them; :mod:`avformer.cli.main` applies them):

- **2**: the user's input is wrong: a config value, an override, a missing or unreadable file, a corrupt or refused
  checkpoint, data that cannot train (:class:`UsageError`, ``ConfigError``, ``CheckpointError``,
  ``FileNotFoundError``, ``ManifestError``, a refused shard index...).
- **1**: the environment failed or the run did: disk full, read-only or forbidden folder, no GPU where one was asked
  for (:class:`EnvironmentFailure`), a diverged training (:class:`TrainingDiverged`), and any other exception,
  reported as an internal error with its type (a bug: ``AVFORMER_DEBUG=1`` or ``avformer --debug ...`` shows the
  traceback for a report).

Each message is one line: the first line of the exception's text, or, for an error re-raised by a DataLoader
worker (whose text holds the worker's traceback), the original exception's last line.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

__all__ = [
    "EnvironmentFailure",
    "TrainingDiverged",
    "UsageError",
    "debug_enabled",
    "describe",
    "one_line",
    "report",
    "set_debug",
]

DEBUG_ENV = "AVFORMER_DEBUG"


class UsageError(Exception):
    """A problem with the user's config, overrides or files: reported as one line, exit status 2."""


class EnvironmentFailure(Exception):
    """The machine cannot do what was asked (no GPU, disk full, read-only folder): one line, exit status 1."""


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite: training stopped before the step was applied (one line, exit status 1)."""


_debug = False  # set by `avformer --debug ...` for the command it runs (set_debug)


def set_debug(on: bool) -> None:
    """Show tracebacks instead of one-line errors (``avformer --debug``), until set off."""
    global _debug
    _debug = on


def debug_enabled() -> bool:
    """True after ``set_debug(True)`` or when ``AVFORMER_DEBUG`` is set to something other than ``""`` / ``0``."""
    return _debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """The exception's message on one line (see the module docstring)."""
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if lines[0].startswith("Caught ") and "worker process" in lines[0]:  # torch.utils.data re-raised it
        return lines[-1]
    return lines[0]


def _free_space(path: str | None) -> str:
    if not path:
        return ""
    folder = Path(path).parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return f" ({free / 2**20:.1f} MiB free in {folder})"


def _os_error(e: OSError) -> tuple[int, str] | None:
    name = e.filename if isinstance(e.filename, str) else None
    where = f"{name}: " if name else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return 1, f"{where}no space left on the device{_free_space(name)}: free some space or write elsewhere"
    if e.errno == errno.EROFS:
        return 1, f"{where}read-only file system: choose a writable folder"
    if isinstance(e, PermissionError):
        return 1, f"{where}permission denied"
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        return 2, f"{where}{e.strerror or one_line(e)}"
    return None


def _input_errors() -> tuple[type[BaseException], ...]:
    """The error types of the user's input; those whose module cannot import (torch broken) are left out."""
    types: list[type[BaseException]] = [UsageError]
    try:
        from avformer.config import ConfigError
        from avformer.data.manifest import ManifestError
        from avformer.utils.checkpoint import CheckpointError
    except Exception:  # e.g. torch itself fails to import: the error being described may be that
        return tuple(types)
    return (*types, ConfigError, ManifestError, CheckpointError)


def describe(e: BaseException) -> tuple[int, str]:
    """``(exit status, one-line message)`` for an exception that reached a command's top level."""
    if isinstance(e, _input_errors()):
        return 2, one_line(e)
    if isinstance(e, (EnvironmentFailure, TrainingDiverged)):
        return 1, one_line(e)
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
        return 1, (
            f"out of memory ({one_line(e)[:160]}): lower train.batch_size (optim.accum_steps keeps the global "
            "batch), use train.precision=bf16, or a smaller model / input"
        )
    if isinstance(e, RuntimeError) and one_line(e).startswith("DataLoader timed out"):
        return 1, (
            f"{one_line(e)}: a loader worker produced no batch in time (a file that hangs the decoder?); "
            "set train.workers=0 to find it, or raise data.decode_timeout_s"
        )
    if isinstance(e, UnicodeDecodeError):
        return 2, f"a file is not UTF-8 text ({one_line(e)})"
    if isinstance(e, OSError):
        known = _os_error(e)
        if known is not None:
            return known
        return 1, one_line(e)
    return 1, f"internal error: {type(e).__name__}: {one_line(e)} (set {DEBUG_ENV}=1 for the traceback)"


def report(prog: str, e: BaseException, status: int = 2) -> int:
    """A command's handled error: ``prog: error: <one line>`` on stderr and ``status`` returned, or, under
    ``--debug`` / ``AVFORMER_DEBUG=1``, ``e`` re-raised with its traceback."""
    if debug_enabled():
        raise e
    print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
    return status
