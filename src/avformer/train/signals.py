"""Stop signals of a training run: SIGTERM / SIGINT end it at the next step boundary, with a checkpoint.

:class:`StopSignalMixin` is the part of :class:`~avformer.train.trainer.Trainer` that handles them: the handlers
(a second Ctrl-C aborts at once), the loader failures that a signal to the whole process group causes (its DataLoader
workers die of it; from then on the failure is the stop, not an error) and, under ``torchrun``, one stop decision for
all ranks (a signal seen by any rank stops every rank at the same step).

A wait for a batch is a step boundary too. In a single-process run a stop signal that arrives while the main thread
waits for the loader (training or validation) ends the wait at once, and so does a worker's exit after a SIGTERM
(SIGCHLD); after such an exit no batch is waited for at all. After a group SIGTERM the workers are gone, and with a
loader ``timeout`` (``make_loader`` sets one against stuck decoders) torch notices dead workers only when it runs
out, minutes later: the run hung there. A validation stopped this way is skipped: the epoch is saved as trained.
Under ``torchrun`` the ranks keep waiting, so that they stop together at the step that they agree on.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any

import torch

from avformer.tasks.base import Batch
from avformer.utils.distributed import all_reduce_sum

__all__ = ["LOADER_FAILURES", "LoaderStopped", "StopSignalMixin"]


class StopSignalMixin:
    """Signal handling of a :class:`~avformer.train.trainer.Trainer` (which sets the attributes below)."""

    device: torch.device
    stop_signal: int | None
    world: int
    _waiting_for_batch: bool = False  # the main thread is blocked on a loader (see the module docstring)
    _child_exited: bool = False  # a child process exited after a SIGTERM (_on_child_exit)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C aborts without waiting for the step to end
        self.stop_signal = signum
        if signum == signal.SIGTERM and callable(signal.getsignal(signal.SIGCHLD)):
            # Slurm, `timeout` and `kill -- -PGID` send SIGTERM to every process of the job: the DataLoader workers
            # die of it too. Torch's SIGCHLD handler would raise "worker killed" wherever this process is (even
            # inside an optimizer step); from here on a dead worker only ends the epoch at a step boundary
            # (_next_batch, _on_child_exit), and the run saves there. Python runs pending handlers in signal-number
            # order, so this one (15) runs before a SIGCHLD (17) of the same group signal; fit() restores the handler.
            # not SIG_DFL: a SIGCHLD already pending would print "Signal 17 ignored due to race condition"
            signal.signal(signal.SIGCHLD, self._on_child_exit)
        self._end_wait(f"{signal.Signals(signum).name} while waiting for a batch")

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            previous[sig] = signal.getsignal(sig)
            if sig != signal.SIGCHLD:  # SIGCHLD only restored (see _on_signal)
                signal.signal(sig, self._on_signal)
        return previous

    def _on_child_exit(self, signum: int, frame: FrameType | None) -> None:
        """SIGCHLD after a SIGTERM: a loader worker died of it, most likely. Noted, so that no batch is waited for
        from then on (one process only); a wait in progress ends now."""
        self._child_exited = True
        self._end_wait("a loader worker exited after a SIGTERM")

    def _end_wait(self, reason: str) -> None:
        """From a signal handler: end a wait for a batch in progress with :class:`LoaderStopped` (one process only)."""
        if self._waiting_for_batch and self.world == 1:
            self._waiting_for_batch = False
            raise LoaderStopped(reason)

    def _fetch(self, it: Iterator[Batch]) -> Batch | None:
        """``next(it, None)``, a wait that a stop signal ends with :class:`LoaderStopped` (one process only), and
        none at all once a worker exited after a SIGTERM (its batches would never come)."""
        if self._child_exited and self.world == 1:
            raise LoaderStopped("a loader worker exited after a SIGTERM")
        # only a wait on worker processes: without workers this thread is itself loading (decoding), and an exception
        # raised there could be taken for a bad clip
        self._waiting_for_batch = getattr(it, "_num_workers", 0) > 0
        try:
            return next(it, None)
        finally:
            self._waiting_for_batch = False

    def _watched(self, loader: Iterable[Batch]) -> Iterable[Batch]:
        """``loader`` whose every wait for a batch is a :meth:`_fetch`; its length is the loader's."""
        return _Watched(self, loader)

    def _next_batch(self, it: Iterator[Batch]) -> Batch | None:
        """The loader's next batch (None at its end). After a SIGTERM, a loader whose workers died of it (a signal
        to the whole process group) raises here: that is the stop, at a step boundary, not an error."""
        try:
            return self._fetch(it)
        except LOADER_FAILURES as e:
            if not self._stopping_after_failure():
                raise
            raise LoaderStopped from e

    def _stopping_after_failure(self) -> bool:
        """Whether a loader failure just seen comes from a stop signal (its workers died of a group SIGTERM)."""
        if self.stop_signal is None:
            time.sleep(0.1)  # a SIGTERM to the group may still be pending while its workers' deaths show
        return self.stop_signal is not None

    @property
    def _reduce_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def _signal_flags(self) -> list[float]:
        return [float(self.stop_signal == signal.SIGTERM), float(self.stop_signal == signal.SIGINT)]

    def _set_stop(self, term: float, intr: float) -> None:
        if self.stop_signal is None and (term > 0 or intr > 0):  # another rank got the signal: stop here too
            self.stop_signal = signal.SIGTERM if term > 0 else signal.SIGINT

    def _agree_on_stop(self) -> None:
        self._set_stop(*all_reduce_sum(self._signal_flags(), self._reduce_device))


# what a DataLoader raises when its workers are gone: "worker exited unexpectedly", a refused fd transfer, EOF
LOADER_FAILURES = (RuntimeError, OSError, EOFError)


class LoaderStopped(Exception):
    """A stop signal while waiting for a batch, or the loader failed after a SIGTERM (its workers died of it): stop
    at this step boundary."""


class _Watched:
    """An iterable over a loader whose waits are :meth:`StopSignalMixin._fetch` (see there)."""

    def __init__(self, trainer: StopSignalMixin, loader: Iterable[Batch]) -> None:
        self.trainer, self.loader = trainer, loader

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]  # TypeError when it has none, as length_of expects

    def __iter__(self) -> Iterator[Batch]:
        it = iter(self.loader)
        while (batch := self.trainer._fetch(it)) is not None:
            yield batch
