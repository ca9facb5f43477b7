"""Progress of long loops: a live bar on a terminal, time-throttled plain lines everywhere else.

One helper for every long-running command (training epochs, validation, ``eval``, ``embed``, ``prepare``,
``profile``, the demo)::

    with Progress("epoch 1/10", total=len(loader), unit="steps") as bar:
        for batch in loader:
            ...
            bar.advance(loss="0.6931")          # extra fields are shown after the counts

    for batch in track(loader, "embed", unit="batches"):   # the same, as an iterator wrapper
        ...

Where the console is a terminal (``Console.is_terminal``) the progress is a transient ``rich`` bar with the done /
total count, the extra fields, the elapsed time and the time remaining. Anywhere else (a pipe, a log file, CI,
``nohup``) no control character is written: a plain line such as ::

    epoch 1/10: 120/400 steps (30%)  2 steps/s  elapsed 1m00s  ETA 2m20s  loss 0.6931

is printed at most once every :data:`DEFAULT_INTERVAL_S` seconds (30 s; the environment variable
``AVFORMER_PROGRESS_INTERVAL`` sets another number of seconds, ``0`` prints at every update), and a closing line
with the total time when the loop printed a line before that does not show its end, so a log never goes silent
for long (beyond one unit of work) while short loops add no noise. The rate and the ETA count only the work done
since the display opened (a resumed epoch's first batches are not in the rate).

The output is off on every process but rank 0 of a ``torchrun`` group and when ``enabled=False`` (a ``--json``
command, a quiet caller).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress

from avformer.utils.distributed import is_main

__all__ = [
    "DEFAULT_INTERVAL_S",
    "INTERVAL_ENV",
    "Progress",
    "format_duration",
    "length_of",
    "progress_interval",
    "track",
]

DEFAULT_INTERVAL_S = 30.0
INTERVAL_ENV = "AVFORMER_PROGRESS_INTERVAL"

T = TypeVar("T")


def progress_interval() -> float:
    """Seconds between two plain progress lines: ``$AVFORMER_PROGRESS_INTERVAL`` or :data:`DEFAULT_INTERVAL_S`."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={text!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{INTERVAL_ENV}={text!r}: expected a number of seconds >= 0")
    return value


def length_of(iterable: Iterable[Any]) -> int | None:
    """``len(iterable)``, or None when it has none (a generator, a loader over an ``IterableDataset``)."""
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _fields_text(fields: Mapping[str, Any]) -> str:
    return "  ".join(f"{k} {v}" for k, v in fields.items())


class Progress:
    """A progress display for one loop; use as a context manager (see the module docs).

    Args:
        description: what is being done, e.g. ``"epoch 3/10"``.
        total: units of work (None: unknown, no percentage or ETA).
        completed: units already done when the loop starts (a resumed epoch).
        unit: name of a unit, for the plain lines (``steps``, ``batches``, ``rows``).
        console: where to print (default: a console on stdout).
        enabled: False prints nothing; None (default) means rank 0 only.
        interval_s: least seconds between two plain lines (default :func:`progress_interval`).
        clock: monotonic time in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        completed: int = 0,
        unit: str = "it",
        console: Console | None = None,
        enabled: bool | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.description = description
        self.total = total
        self.completed = completed
        self.unit = unit
        self.console = console if console is not None else Console()
        self.enabled = is_main() if enabled is None else enabled
        self.interval_s = progress_interval() if interval_s is None else interval_s
        self.fields: dict[str, Any] = {}
        self._clock = clock
        self._start_completed = completed
        self._t0 = 0.0
        self._last_line: float | None = None  # time of the last plain line (None: none yet)
        self._lines = 0
        self._printed_at = -1  # units done at the last plain line
        self._bar: _RichProgress | None = None
        self._task: Any = None

    # -- numbers ---------------------------------------------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    @property
    def rate(self) -> float | None:
        """Units per second since the display opened (None before any unit is done)."""
        done, dt = self.completed - self._start_completed, self.elapsed
        return done / dt if done > 0 and dt > 0 else None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None when the total or the rate is unknown)."""
        rate = self.rate
        if self.total is None or rate is None:
            return None
        return max(self.total - self.completed, 0) / rate

    def line(self) -> str:
        """The plain progress line, e.g. ``prepare: 50/200 rows (25%)  5.0 rows/s  elapsed 10s  ETA 30s``."""
        if self.total is not None:
            pct = f" ({100 * self.completed / self.total:.0f}%)" if self.total > 0 else ""
            parts = [f"{self.description}: {self.completed}/{self.total} {self.unit}{pct}"]
        else:
            parts = [f"{self.description}: {self.completed} {self.unit}"]
        rate = self.rate
        if rate is not None:
            parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s each")
        parts.append(f"elapsed {format_duration(self.elapsed)}")
        eta = self.eta
        if eta is not None and self.completed < (self.total or 0):
            parts.append(f"ETA {format_duration(eta)}")
        if self.fields:
            parts.append(_fields_text(self.fields))
        return "  ".join(parts)

    # -- display ---------------------------------------------------------------------------------------------------

    def __enter__(self) -> Progress:
        self._t0 = self._clock()
        self._last_line = self._t0
        if self.enabled and self.console.is_terminal:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._bar = _RichProgress(*columns, console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(
                self.description, total=self.total, completed=self.completed, extra=_fields_text(self.fields)
            )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.enabled and self._lines and self._printed_at != self.completed and exc_type is None:
            self._print(f"{self.description}: {self.completed} {self.unit} done in {format_duration(self.elapsed)}")

    def update(self, completed: int | None = None, *, advance: int = 0, **fields: Any) -> None:
        """Set the units done (``completed``) or add ``advance`` to them; ``fields`` replace shown extra fields."""
        if completed is not None:
            self.completed = completed
        self.completed += advance
        self.fields.update(fields)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, extra=_fields_text(self.fields))
            return
        now = self._clock()
        if self._last_line is not None and now - self._last_line >= self.interval_s:
            self._last_line = now
            self._lines += 1
            self._printed_at = self.completed
            self._print(self.line())

    def advance(self, n: int = 1, **fields: Any) -> None:
        """``n`` more units done."""
        self.update(advance=n, **fields)

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)


def track(
    iterable: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    **kwargs: Any,
) -> Iterator[T]:
    """Yield the items of ``iterable``, showing a :class:`Progress` (one unit per item; ``total`` defaults to
    ``len(iterable)`` when it has one). Keyword arguments go to :class:`Progress`."""
    if total is None:
        total = length_of(iterable)
    with Progress(description, total, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.advance()
