"""What the trainer does at an epoch's end besides saving: validation, the best epoch, load statistics, and the
warning for a loss term that stayed at its chance value.

:class:`EpochEndMixin` is that part of :class:`~avformer.train.trainer.Trainer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch

from avformer.config import ExperimentConfig, TrainConfig
from avformer.data.dataset import LoadStats
from avformer.tasks.base import CHANCE_TOLERANCE, Task, at_chance
from avformer.train.checkpointing import TrainState
from avformer.train.ema import ModelEma
from avformer.train.evaluation import evaluate
from avformer.train.logging import RunLogger
from avformer.utils.distributed import gather_objects
from avformer.utils.errors import UsageError

__all__ = ["EpochEndMixin", "first_reasons"]


class EpochEndMixin:
    """Validation and epoch bookkeeping of a :class:`~avformer.train.trainer.Trainer` (which sets the attributes
    below)."""

    task: Task
    cfg: ExperimentConfig
    tcfg: TrainConfig
    device: torch.device
    precision: str
    fsdp: bool
    world: int
    state: TrainState
    stats: LoadStats
    ema: ModelEma | None
    logger: RunLogger | None
    _validated: bool
    _warned_best: bool
    _watched: Callable[[Any], Any]  # StopSignalMixin's: a loader whose waits a stop signal ends

    def _validate(self, val_loader: Any) -> tuple[dict[str, float], LoadStats]:
        assert self.logger is not None
        swap = self.ema.swap(self.task.model) if self.ema is not None else nullcontext()
        with swap:
            metrics, stats = evaluate(
                self.task,
                self._watched(val_loader),
                device=self.device,
                precision=self.precision,
                lockstep=self.fsdp,
                progress=self.logger.enabled,
                console=self.logger.console,
            )
        if stats.loaded == 0:  # stats are global (evaluate gathers them)
            problem = f"the validation set has no usable clip: {stats.summary()}{first_reasons(stats)}"
            if not self._validated and self.state.best_value is None:  # never worked: the user's data
                raise UsageError(problem)
            # it worked before (a mount that dropped out?): keep training, say so, no val metrics this epoch
            self.logger.info(f"warning: {problem}; this epoch has no validation metrics")
            return {}, stats
        self._validated = True
        if stats.skipped:
            self.logger.info(f"validation: {stats.summary()}")
        return metrics, stats

    def _warn_at_chance(self, epoch: int, sums: Mapping[str, float], clips: int) -> None:
        """A loss term whose epoch mean stayed at its chance value (the task's ``chance_losses``) is named: a
        contrastive term that learns nothing (e.g. a text encoder that cannot separate the captions) is silent
        otherwise."""
        chance_fn = getattr(self.task, "chance_losses", None)
        if chance_fn is None or self.logger is None:
            return
        batch = self.tcfg.batch_size * self.world
        for term, chance in chance_fn(batch).items():
            if term not in sums:
                continue
            mean = sums[term] / clips
            if at_chance(mean, chance):
                self.logger.info(
                    f"warning: train_{term} = {mean:.4f} over epoch {epoch}, within {CHANCE_TOLERANCE:.0%} of its "
                    f"chance value {chance:.4f} (the task's value for a model that cannot tell its candidates apart): "
                    f"the {term} term has learned nothing so far"
                )

    def _epoch_stats(self) -> LoadStats:
        """This epoch's loaded / skipped rows over every rank."""
        if self.world == 1:
            return self.stats
        parts = gather_objects((self.stats.loaded, self.stats.skipped))
        return LoadStats(sum(p[0] for p in parts), [s for p in parts for s in p[1]])

    def _update_best(self, metrics: dict[str, float], epoch: int) -> bool:
        assert self.logger is not None
        name, st = self.tcfg.best_metric, self.state
        if name not in metrics:
            if not self._warned_best:
                self.logger.info(f"train.best_metric {name!r} is not among the validation metrics {sorted(metrics)}")
                self._warned_best = True
            return False
        value = metrics[name]
        better = st.best_value is None or (
            value > st.best_value if self.tcfg.best_mode == "max" else value < st.best_value
        )
        if better:
            st.best_value, st.best_epoch = value, epoch
        return better


def first_reasons(stats: LoadStats, n: int = 3) -> str:
    """``"; first: id (reason); ..."`` for the first ``n`` skipped rows, '' when none were skipped."""
    if not stats.skipped:
        return ""
    return "; first: " + "; ".join(f"{row_id} ({reason})" for row_id, reason in stats.skipped[:n])
