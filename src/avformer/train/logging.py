"""Run logs: CSV files, optional TensorBoard, and console progress.

Files in the run directory:

- ``metrics.csv``: one row per epoch (``epoch, step, train_loss, lr, clips_per_s, ..., val_<metric>``);
- ``train_log.csv``: one row every ``log_every`` optimizer steps (``step, epoch, loss, lr, clips_per_s, ...``);
- ``skipped.csv``: every row skipped in an epoch (``epoch, split, id, reason``; ``split`` is train or val), written
  at the epoch's end; its counts are the ``skipped_train`` / ``skipped_val`` columns of ``metrics.csv``;
- ``tb/``: TensorBoard events (``tensorboard --logdir RUN/tb``; ``train.tensorboard=false`` turns them off). The
  ``tensorboard`` package is a dependency; where it cannot be imported, one line says so and nothing else changes.

CSV columns grow when a row brings a new key (validation metrics appear at the first evaluation): the file is
rewritten with the wider header, otherwise rows are appended. On resume, rows written after the checkpoint was
taken are dropped (:meth:`RunLogger.truncate`), so a killed-and-resumed run never duplicates a row.

On a terminal the console shows a live progress bar with the running loss, clips/s, lr and the time remaining;
otherwise (CI, files, ``nohup``) it prints one plain line per logged step and, within an epoch, a progress line
(steps done / total, rate, ETA, loss, clips/s, lr) at most every 30 s (:mod:`avformer.utils.progress`;
``AVFORMER_PROGRESS_INTERVAL`` changes the interval).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from avformer.utils.progress import Progress

__all__ = ["SKIPPED_FILE", "CsvLog", "RunLogger", "format_row"]

SKIPPED_FILE = "skipped.csv"

log = logging.getLogger(__name__)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # full precision: the CSV is data, not a report
    return str(value)


def format_row(row: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> str:
    """Short human form of a row: ``loss 0.6931  lr 1.00e-04  clips/s 812``."""
    parts = []
    for k, v in row.items():
        if keys is not None and k not in keys:
            continue
        if isinstance(v, float):
            if k == "lr":
                text = f"{v:.2e}"
            elif k.endswith("per_s") or k.endswith("_s"):
                text = f"{v:.1f}"
            else:
                text = f"{v:.4f}" if math.isfinite(v) and abs(v) >= 1e-3 else f"{v:.3g}"
        else:
            text = str(v)
        parts.append(f"{k.replace('clips_per_s', 'clips/s')} {text}")
    return "  ".join(parts)


class CsvLog:
    """A CSV file of dict rows whose header widens when new keys appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict[str, str]] = []
        if path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = [dict(r) for r in reader]

    def _rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(self.path)

    def write(self, row: Mapping[str, Any]) -> None:
        cells = {k: _cell(v) for k, v in row.items()}
        new = [k for k in cells if k not in self.fields]
        self.rows.append(cells)
        if new or not self.path.exists():
            self.fields += new
            self._rewrite()
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(cells)

    def truncate(self, key: str, last: float) -> None:
        """Keep only rows with ``row[key] <= last`` (rows written after a checkpoint, before a crash, go)."""
        keep = [r for r in self.rows if r.get(key, "") != "" and float(r[key]) <= last]
        if keep == self.rows:
            return
        self.rows = keep
        if keep:
            self._rewrite()
        else:
            self.path.unlink(missing_ok=True)
            self.fields = []


class _Progress:
    """One epoch's :class:`~avformer.utils.progress.Progress` with the trainer's fields (loss, clips/s, lr)."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar

    def update(self, completed: int, *, loss: float, clips_per_s: float, lr: float) -> None:
        fields = {"loss": f"{loss:.4f}", "clips/s": f"{clips_per_s:.1f}", "lr": f"{lr:.2e}"}
        self._bar.update(completed, **fields)


class RunLogger:
    """CSV + TensorBoard + console for one run; every method is a no-op when ``enabled`` is False (other ranks).

    Args:
        out_dir: run directory.
        enabled: False on non-main ranks.
        tensorboard: write TensorBoard events if ``torch.utils.tensorboard`` can be imported.
        console: where to print (default: a rich console on stdout).
    """

    def __init__(
        self, out_dir: Path, *, enabled: bool = True, tensorboard: bool = True, console: Console | None = None
    ) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.console = console or Console()
        self.live = self.console.is_terminal
        self.metrics = CsvLog(out_dir / "metrics.csv") if enabled else None
        self.train_log = CsvLog(out_dir / "train_log.csv") if enabled else None
        self.skipped = CsvLog(out_dir / SKIPPED_FILE) if enabled else None
        self.tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.info("no TensorBoard logs: tensorboard does not import (pip install tensorboard)")
            else:
                self.tb = SummaryWriter(log_dir=str(out_dir / "tb"))

    def info(self, msg: str) -> None:
        log.info(msg)
        if self.enabled:
            self.console.print(msg, markup=False, highlight=False)

    def truncate(self, *, epoch: int, step: int) -> None:
        """Drop rows logged after (``epoch`` completed epochs, ``step`` optimizer steps)."""
        if self.metrics is not None and self.train_log is not None and self.skipped is not None:
            self.metrics.truncate("epoch", epoch)
            self.train_log.truncate("step", step)
            self.skipped.truncate("epoch", epoch)

    def log_skipped(self, epoch: int, split: str, skipped: list[tuple[str, str]]) -> None:
        """Rows of ``split`` skipped in (1-based) ``epoch``, as ``skipped.csv`` rows."""
        if self.skipped is None:
            return
        for row_id, reason in skipped:
            self.skipped.write({"epoch": epoch, "split": split, "id": row_id, "reason": reason})

    def _tb(self, prefix: str, row: Mapping[str, Any], step: int) -> None:
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, int | float) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def log_step(self, row: Mapping[str, Any]) -> None:
        """A ``train_log.csv`` row (needs ``step``); printed as a line when there is no live bar."""
        if self.train_log is None:
            return
        self.train_log.write(row)
        self._tb("train", row, int(row["step"]))
        if not self.live:
            self.console.print(format_row(row), markup=False, highlight=False)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """A ``metrics.csv`` row (needs ``epoch`` and ``step``), printed."""
        if self.metrics is None:
            return
        self.metrics.write(row)
        self._tb("epoch", row, int(row["step"]))
        if self.tb is not None:
            self.tb.flush()
        self.console.print(format_row(row), markup=False, highlight=False)

    @contextmanager
    def progress(self, description: str, total: int, completed: int = 0) -> Iterator[_Progress]:
        """Progress of one epoch in optimizer steps, with the running loss, clips/s and lr: a live bar on a
        terminal, else a plain line every :func:`~avformer.utils.progress.progress_interval` seconds."""
        bar = Progress(
            description, total, completed=completed, unit="steps", console=self.console, enabled=self.enabled
        )
        with bar:
            yield _Progress(bar)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
