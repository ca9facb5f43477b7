"""What a training checkpoint holds, and how a run finds the one it resumes from.

A checkpoint holds the model, optimizer, schedule, EMA, counters (:class:`TrainState`), best metric, running epoch
sums and the RNG states (at the checkpoint and at the start of its epoch; under torchrun every rank's, and each rank
resumes its own when the process count is unchanged; see :mod:`avformer.train.rng`), plus the config, the library
versions, the task's own state and the caller's extras (e.g. ``model_overrides``). Rank 0 alone writes it
(atomically); every rank reads it on resume, and under torchrun rank 0 decides for all whether and from where to
resume. Under FSDP the full (unsharded) state is gathered on the CPU for the checkpoint and each rank keeps its
shard when loading.

:class:`CheckpointMixin` holds these methods of :class:`~avformer.train.trainer.Trainer`, which sets the attributes
it declares; when the loop writes checkpoints is described in :mod:`avformer.train.trainer`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from avformer.config import ExperimentConfig, TrainConfig, to_dict
from avformer.data.dataset import LoadStats
from avformer.tasks.base import Task
from avformer.train.ema import ModelEma, unwrap_model
from avformer.train.logging import RunLogger
from avformer.train.optim import WarmupCosine
from avformer.train.rng import _rng_state
from avformer.utils.checkpoint import save_checkpoint, versions
from avformer.utils.distributed import barrier, gather_objects, is_dist

__all__ = ["CHECKPOINT_FORMAT", "CheckpointMixin", "TrainState"]

CHECKPOINT_FORMAT = 1


@dataclass
class TrainState:
    """Counters and running sums; all of it goes into the checkpoint."""

    epoch: int = 0  # epoch in progress, 0-based (== epochs when training is done)
    batches_done: int = 0  # loader batches consumed in `epoch` (0 at an epoch boundary)
    step: int = 0  # optimizer steps so far
    best_value: float | None = None
    best_epoch: int | None = None  # 1-based, as in metrics.csv
    loss_sum: float = 0.0  # sum over this epoch's clips of the loss
    clips: int = 0  # clips trained on this epoch
    metric_sums: dict[str, float] = field(default_factory=dict)  # clip-weighted sums of training_step scalars
    loaded: int = 0  # LoadStats of this epoch
    skipped: list[tuple[str, str]] = field(default_factory=list)
    last_lr: float = 0.0  # lr of the last optimizer step
    last_row: dict[str, Any] = field(default_factory=dict)  # the last metrics.csv row

    def start_epoch(self) -> None:
        self.batches_done, self.loss_sum, self.clips = 0, 0.0, 0
        self.metric_sums, self.loaded, self.skipped = {}, 0, []


class CheckpointMixin:
    """Checkpoint state of a :class:`~avformer.train.trainer.Trainer`: what goes in, how it comes back, where from."""

    # set by Trainer.__init__ (scheduler and logger by Trainer.fit)
    task: Task
    cfg: ExperimentConfig
    tcfg: TrainConfig
    out_dir: Path
    main: bool
    world: int
    fsdp: bool
    extras: dict[str, Any]
    state: TrainState
    stats: LoadStats
    epoch_start_rng: dict[str, Any]
    optimizer: torch.optim.Optimizer
    ema: ModelEma | None
    scheduler: WarmupCosine | None
    logger: RunLogger | None

    def state_dict(self) -> dict[str, Any]:
        assert self.scheduler is not None
        self.state.loaded, self.state.skipped = self.stats.loaded, list(self.stats.skipped)
        if self.fsdp:  # full (unsharded) tensors on the CPU of rank 0: a collective, every rank calls it
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
                get_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
            model_state = get_model_state_dict(self.task.model, options=opts)
            optim_state = get_optimizer_state_dict(self.task.model, self.optimizer, options=opts)
        else:
            model_state = unwrap_model(self.task.model).state_dict()
            optim_state = self.optimizer.state_dict()
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model_state,
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "trainer": asdict(self.state),
            "rng": _rng_state(),
            "epoch_start_rng": self.epoch_start_rng,
            "config": to_dict(self.cfg),
            "versions": versions(),
            "task": self.task.state_dict() if hasattr(self.task, "state_dict") else None,
            **self.extras,  # model_overrides: how to rebuild a model built from another run; load_run prefers it
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore everything but the RNG (the loop restores it at the right moment, see :mod:`avformer.train.rng`)."""
        assert self.scheduler is not None
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {ckpt.get('format')!r} (expected {CHECKPOINT_FORMAT})")
        if self.fsdp:  # every rank read the full state; each keeps its shard
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            opts = StateDictOptions(full_state_dict=True)
            set_model_state_dict(self.task.model, ckpt["model"], options=opts)
            set_optimizer_state_dict(self.task.model, self.optimizer, ckpt["optimizer"], options=opts)
        else:
            unwrap_model(self.task.model).load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None:
            if ckpt["ema"] is not None:
                self.ema.load_state_dict(ckpt["ema"])
            else:  # EMA switched on for a resumed run: start the average from the restored weights
                self.ema = ModelEma(self.task.model, self.tcfg.ema_decay)
        t = dict(ckpt["trainer"])
        t["skipped"] = [tuple(s) for s in t["skipped"]]
        self.state = TrainState(**t)
        self.stats = LoadStats(self.state.loaded, list(self.state.skipped))
        self.epoch_start_rng = ckpt["epoch_start_rng"]
        if ckpt.get("task") is not None and hasattr(self.task, "load_state_dict"):
            self.task.load_state_dict(ckpt["task"])

    def save(self, name: str = "last.pt") -> None:
        """Rank 0 writes ``out_dir/name`` atomically; the other ranks wait for it (a resume reads it)."""
        state = self.state_dict() if self.main or self.fsdp else None
        rngs = gather_objects((_rng_state(), self.epoch_start_rng)) if self.world > 1 else None
        if self.main:
            assert state is not None
            if rngs is not None:  # every process's RNG, so a resumed rank carries on with its own stream
                state["rng_ranks"] = [{"rng": r, "epoch_start_rng": e} for r, e in rngs]
            save_checkpoint(self.out_dir / name, state)
        barrier()

    def _local_resume_path(self) -> Path | None:
        resume = self.tcfg.resume
        if resume is None:
            return None
        if resume == "auto":
            path = self.out_dir / "last.pt"
            return path if path.is_file() else None
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"train.resume: no checkpoint at {path}")
        return path

    def _resume_path(self) -> Path | None:
        """The checkpoint to resume from. Under torchrun rank 0 decides for all (a collective): a rank that
        decided on its own could start fresh while the others resume, and the run would hang."""
        local = self._local_resume_path()
        if not is_dist():
            return local
        choices = gather_objects(None if local is None else str(local))
        if choices[0] is None:
            return None
        missing = [r for r, c in enumerate(choices) if c != choices[0]]
        if missing:
            raise FileNotFoundError(
                f"rank 0 resumes from {choices[0]} but rank(s) {missing} do not see it: train.out_dir (or "
                "train.resume) must be on a filesystem that every node shares"
            )
        return Path(choices[0])

    def _report_config_changes(self, saved: dict[str, Any]) -> None:
        assert self.logger is not None
        now = to_dict(self.cfg)
        changed = [
            f"{sec}.{k}: {saved.get(sec, {}).get(k)!r} -> {v!r}"
            for sec, fields in now.items()
            if isinstance(fields, dict)
            for k, v in fields.items()
            if sec != "train" or k not in ("resume", "out_dir")
            if saved.get(sec, {}).get(k) != v
        ]
        if changed:
            self.logger.info("resuming with config changes: " + "; ".join(changed))
