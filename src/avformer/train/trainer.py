"""A model-agnostic training loop with crash-safe checkpoints and exact resume.

:func:`fit` trains any :class:`~avformer.tasks.base.Task`: it calls ``task.training_step(batch)`` for the loss and
knows nothing else about models. Per optimizer step it runs ``accum_steps`` micro-batches, each weighted by its
share of the step's clips (uneven and partly skipped batches give the exact mean over the clips), clips the
global grad norm, steps AdamW and the warmup+cosine schedule, and updates the EMA.

The pieces: :mod:`avformer.train.rng` (seeding, RNG state and how a resumed run stays bit-identical),
:mod:`avformer.train.checkpointing` (what a checkpoint holds, which one a run resumes from),
:mod:`avformer.train.parallel` (DDP / FSDP wrapping), :mod:`avformer.train.evaluation` (validation, autocast),
:mod:`avformer.train.signals` (SIGTERM / SIGINT), :mod:`avformer.train.epoch_end` (validation, best epoch).

Checkpoints and resume
----------------------
- ``last.pt`` is written atomically at every epoch end, every ``train.checkpoint_every`` optimizer steps and on
  SIGTERM/SIGINT (a flag checked between steps; the run then returns cleanly). ``best.pt`` holds the state of
  the epoch with the best ``train.best_metric``.
- A checkpoint holds everything needed to carry on, RNG states included. Resuming replays the epoch start (RNG,
  loader seeding), fast-forwards the loader over the batches already trained (they are loaded and dropped), then
  restores the RNG of the checkpoint: on CPU a run killed at any point and resumed from its last checkpoint ends
  with bit-identical weights and metrics (the details and limits are in :mod:`avformer.train.rng`).

Distributed (``torchrun``)
--------------------------
Under an initialised process group of more than one process (``torchrun --nproc_per_node N``; gloo on CPU, NCCL on
GPU) the trainer wraps the model itself: ``train.strategy: ddp`` (DistributedDataParallel, the default) or ``fsdp``
(FSDP2 ``fully_shard``: every element of every ``nn.ModuleList`` of the model, i.e. its blocks, becomes one shard
unit, then the root). ``train.batch_size`` is **per process**: the global batch of one optimizer step is
``batch_size × world_size × accum_steps``. Each micro-batch's loss is weighted by its share of the *global* step's
clips (one all-reduce of the clip count per step), so the gradient is the exact mean over the global batch even
when ranks hold different numbers of clips; with the contrastive losses' ``gather`` (the tasks set it) a run on
N processes follows the loss curve of one process with an N times larger batch (tests/train/test_ddp.py).
The logged loss and metrics are global means (all-reduced); the number of batches per epoch is the smallest over
ranks (so no rank waits on a collective that others never reach); a stop signal seen by any rank stops all of
them at the same step. Rank 0 alone writes files (checkpoints, logs, plots); every rank reads the checkpoint on
resume. Evaluation gives the metrics of a single-process evaluation (:mod:`avformer.train.evaluation`); EMA is
not supported with FSDP.

Precision
---------
``train.precision`` is resolved once, when the trainer is built (:func:`~avformer.utils.precision.resolve_precision`:
``auto`` is bf16 autocast on a device with fast bf16, else fp32), and that resolved value is what the training
steps, the validations and the tasks' epoch hooks use. The start-up line prints it with its reason, and
``precision.json`` in the run folder records it (requested, used, reason, device, CPU flags); ``config.yaml`` keeps
what was asked. A run resumed on another machine resolves again there (and says so when the result changed).

Shards: when the train loader's dataset has ``fast_forward`` (:class:`~avformer.data.shards.ShardDataset`), a
mid-epoch resume asks it to skip the trained batches without reading or decoding them (they come out as empty
placeholder batches), so resuming costs no data loading.

Differences from a framework trainer: no callbacks zoo, one ``on_epoch_end`` hook.
"""

from __future__ import annotations

import math
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from avformer.config import ExperimentConfig, dump
from avformer.data.dataset import LoadStats
from avformer.tasks.base import Batch, EpochContext, Task
from avformer.train.checkpointing import CheckpointMixin, TrainState
from avformer.train.ema import ModelEma
from avformer.train.epoch_end import EpochEndMixin, first_reasons
from avformer.train.evaluation import _to_device, autocast_context, evaluate
from avformer.train.logging import RunLogger
from avformer.train.optim import WarmupCosine, build_optimizer
from avformer.train.parallel import wrap_model
from avformer.train.rng import (
    _iter_keeping_rng,
    _rank_rng,
    _rng_state,
    _set_rng_state,
    seed_everything,
    set_loader_epoch,
)
from avformer.train.signals import LOADER_FAILURES, LoaderStopped, StopSignalMixin
from avformer.utils.checkpoint import load_checkpoint, remove_stale_temps
from avformer.utils.device import resolve_device
from avformer.utils.distributed import (
    all_reduce_min,
    all_reduce_sum,
    is_dist,
    is_main,
    rank,
    world_size,
)
from avformer.utils.errors import TrainingDiverged, UsageError
from avformer.utils.precision import resolve_precision

__all__ = ["TrainState", "Trainer", "evaluate", "fit", "seed_everything", "set_loader_epoch"]

EpochHook = Callable[[dict[str, Any]], None]


# ---- training -----------------------------------------------------------------------------------------------------


class Trainer(CheckpointMixin, StopSignalMixin, EpochEndMixin):
    """State of one run; :meth:`fit` is the loop. Most callers use the :func:`fit` function.

    Checkpoint I/O (``state_dict``, ``load_state_dict``, ``save``, the resume path) comes from
    :class:`~avformer.train.checkpointing.CheckpointMixin`, the stop signals from
    :class:`~avformer.train.signals.StopSignalMixin`, validation and the best epoch from
    :class:`~avformer.train.epoch_end.EpochEndMixin`.

    Args:
        task: model + objectives.
        cfg: the experiment (``optim`` and ``train`` are read here; the whole config is saved).
        out_dir: run directory (default ``cfg.train.out_dir``).
        console: where progress and summaries print (default stdout).
        on_epoch_end: called with each epoch's metrics row after its checkpoint is written.
        checkpoint_extras: more entries for every checkpoint, e.g. ``model_overrides`` (what rebuilds a model that
            was built from another run; :func:`avformer.models.registry.standalone_overrides`).
    """

    def __init__(
        self,
        task: Task,
        cfg: ExperimentConfig,
        out_dir: str | Path | None = None,
        *,
        console: Console | None = None,
        on_epoch_end: EpochHook | None = None,
        checkpoint_extras: Mapping[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.extras = {"model_overrides": None, **(checkpoint_extras or {})}
        self.cfg = cfg
        self.tcfg = cfg.train
        self.out_dir = Path(out_dir if out_dir is not None else cfg.train.out_dir)
        self.main = is_main()
        self.device = resolve_device(cfg.train.device)
        # resolved once per run (and again on resume, on the machine it resumes on); the warning is logged in fit
        self.precision_choice = resolve_precision(cfg.train.precision, self.device, warn=False)
        self.precision = self.precision_choice.used  # 'fp32' | 'bf16': what every autocast of this run uses
        self.on_epoch_end = on_epoch_end
        self.console = console
        self.state = TrainState()
        self.stop_signal: int | None = None
        self.epoch_start_rng: dict[str, Any] = {}  # RNG at the start of the epoch in progress
        self.resume_rng: dict[str, Any] = {}  # RNG of the checkpoint resumed from, until it is restored
        self.stats = LoadStats()  # rows loaded / skipped this epoch
        self._validated = False  # a validation in this process loaded a clip
        self.epoch_clips_per_s = 0.0
        task.model.to(self.device)
        self.world = world_size()
        self.fsdp = is_dist() and cfg.train.strategy == "fsdp"
        unused = bool(getattr(task, "unused_parameters", False))
        # frozen parameters leave the autograd graph for some epochs: DDP must look for them
        unused = unused or bool(cfg.train.freeze_epochs)
        self.model = wrap_model(task.model, cfg.train.strategy, self.device, find_unused_parameters=unused)
        self.trainable = {n: p.requires_grad for n, p in task.model.named_parameters()}  # before any freezing
        self.optimizer = build_optimizer(task.model, cfg.optim, sharded=self.fsdp)
        self.ema = ModelEma(task.model, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
        self.scheduler: WarmupCosine | None = None
        self.logger: RunLogger | None = None
        self._warned_best = False

    # -- the loop ----------------------------------------------------------------------------------------------

    def _batches_per_epoch(self, loader: Any) -> int:
        cap = self.tcfg.steps_per_epoch
        accum = self.cfg.optim.accum_steps
        try:
            n = len(loader)
        except TypeError:
            if cap is None:
                raise ValueError("the train loader has no length: set train.steps_per_epoch") from None
            return cap * accum
        return n if cap is None else min(n, cap * accum)

    def _fast_forward(self, loader: Any) -> None:
        """Mid-epoch resume from shards: let the dataset skip the trained batches without reading them."""
        dataset = getattr(loader, "dataset", None)
        fn = getattr(dataset, "fast_forward", None)
        if callable(fn) and self.state.batches_done > 0:
            fn(self.state.batches_done, epoch=self.state.epoch, placeholders=True)

    @contextmanager
    def _training_model(self) -> Iterator[None]:
        """``task.model`` is the DDP wrapper while training (the task calls it), the plain model otherwise."""
        plain = self.task.model
        self.task.model = self.model
        try:
            yield
        finally:
            self.task.model = plain

    def _apply_freeze(self, epoch: int) -> None:
        """``train.freeze_epochs``: parameters whose name matches a pattern with more than ``epoch`` epochs do not
        train this epoch (``requires_grad`` off, so AdamW neither steps nor decays them); the rest train as built."""
        rules = [(re.compile(p), n) for p, n in self.tcfg.freeze_epochs.items()]
        if not rules:
            return
        frozen = 0
        for name, p in self.task.model.named_parameters():
            hold = any(n > epoch and rx.search(name) for rx, n in rules)
            p.requires_grad_(self.trainable.get(name, True) and not hold)
            frozen += p.numel() if hold else 0
        if frozen and self.logger is not None:
            self.logger.info(f"epoch {epoch + 1}: {frozen:,} parameters frozen (train.freeze_epochs)")

    def _train_epoch(self, loader: Any, n_batches: int) -> bool:
        """Train one epoch (or its rest, after a mid-epoch resume). Returns True when a stop signal came."""
        assert self.scheduler is not None and self.logger is not None
        st, tcfg, model = self.state, self.tcfg, self.task.model
        accum, clip = self.cfg.optim.accum_steps, self.cfg.optim.grad_clip
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        model.train()
        self._fast_forward(loader)
        it = _iter_keeping_rng(loader)
        for _ in range(st.batches_done):  # mid-epoch resume: replay the order, drop what was trained
            next(it)
        if st.batches_done:
            _set_rng_state(self.resume_rng)
        t0 = window_t0 = time.perf_counter()
        epoch_clips, window_clips, window_loss = 0, 0, 0.0
        steps_total = math.ceil(n_batches / accum)
        description = f"epoch {st.epoch + 1}/{tcfg.epochs}"
        with self.logger.progress(description, steps_total, math.ceil(st.batches_done / accum)) as bar:
            while st.batches_done < n_batches:
                group: list[Batch] = []
                exhausted = False
                fetched = 0
                while len(group) < accum and st.batches_done < n_batches:
                    try:
                        batch = self._next_batch(it)
                    except LoaderStopped:  # a stop while this group was incomplete: it was not trained
                        st.batches_done -= fetched
                        return True
                    if batch is None:
                        exhausted = True
                        break
                    st.batches_done += 1
                    fetched += 1
                    self.stats.update(batch)
                    if batch["batch_size"] > 0:
                        group.append(batch)
                local = sum(int(b["batch_size"]) for b in group)
                clips = int(all_reduce_sum([local], self._reduce_device)[0]) if self.world > 1 else local
                if clips > 0:
                    with self._training_model():
                        loss, grad_norm = self._step(group, clips, params, clip)
                    epoch_clips += clips
                    window_clips += clips
                    window_loss += loss * clips
                    speed = epoch_clips / max(time.perf_counter() - t0, 1e-9)
                    done = math.ceil(st.batches_done / accum)
                    bar.update(done, loss=loss, clips_per_s=speed, lr=self.state.last_lr)
                    if st.step % tcfg.log_every == 0:
                        now = time.perf_counter()
                        row = {
                            "step": st.step,
                            "epoch": round(st.epoch + st.batches_done / n_batches, 4),
                            "loss": window_loss / window_clips,
                            "lr": self.state.last_lr,
                            "clips_per_s": window_clips / max(now - window_t0, 1e-9),
                        }
                        if grad_norm is not None:
                            row["grad_norm"] = grad_norm
                        self.logger.log_step(row)
                        window_clips, window_loss, window_t0 = 0, 0.0, now
                    if tcfg.checkpoint_every and st.step % tcfg.checkpoint_every == 0 and st.batches_done < n_batches:
                        self.save()
                elif self.world > 1:
                    self._agree_on_stop()
                if self.stop_signal is not None:
                    return True
                if exhausted:
                    break
        self.epoch_clips_per_s = epoch_clips / max(time.perf_counter() - t0, 1e-9)
        return False

    def train_step(self, batch: Batch) -> float:
        """One optimizer step on one batch, exactly as the training loop takes it (autocast, backward, gradient
        clipping, AdamW, the learning-rate schedule, EMA), on the trainer's device; returns the batch's loss.

        For benchmarks and diagnostics, which time this rather than a loop of their own. Outside :meth:`fit` the
        schedule is a constant ``optim.lr``; nothing is logged or saved.
        """
        if self.scheduler is None:
            lr = self.cfg.optim.lr
            self.scheduler = WarmupCosine(self.optimizer, base_lr=lr, min_lr=lr, warmup_steps=0, total_steps=1)
        self.task.model.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        with self._training_model():
            loss, _ = self._step([batch], int(batch["batch_size"]), params, self.cfg.optim.grad_clip)
        return loss

    def _step(
        self, group: list[Batch], clips: int, params: list[nn.Parameter], clip: float
    ) -> tuple[float, float | None]:
        """One optimizer step over a group of micro-batches; returns (mean loss over its clips, grad norm).

        ``clips`` is the step's clip count over all ranks. Under DDP each rank's gradient is scaled by
        ``world_size`` (DDP averages over ranks), so the synced gradient is the mean over the global batch.
        """
        assert self.scheduler is not None
        st = self.state
        if self.world > 1 and not group:
            raise RuntimeError(
                f"rank without a clip at step {st.step} while other ranks have some (every row of its batch failed "
                "to load); distributed training needs at least one clip per rank and step"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        sums: dict[str, float] = {}
        scale = self.world / clips
        for i, batch in enumerate(group):
            n = int(batch["batch_size"])
            last = i == len(group) - 1
            with self._grad_sync(last):
                with autocast_context(self.device, self.precision):
                    loss, metrics = self.task.training_step(_to_device(batch, self.device))
                (loss * (n * scale)).backward()  # weight = this batch's share of the step's (global) clips
            loss_sum += float(loss.detach()) * n
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
        if self.world > 1:  # global sums for the logs, and one stop decision for all ranks
            keys = list(sums)  # the same order on every rank (the task is deterministic)
            reduced = all_reduce_sum([loss_sum, *(sums[k] for k in keys), *self._signal_flags()], self._reduce_device)
            loss_sum, sums = reduced[0], dict(zip(keys, reduced[1 : 1 + len(keys)], strict=True))
            self._set_stop(*reduced[1 + len(keys) :])
        for k, v in sums.items():
            st.metric_sums[k] = st.metric_sums.get(k, 0.0) + v
        mean_loss = loss_sum / clips
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(
                f"loss is {mean_loss} at step {st.step} (epoch {st.epoch + 1}), before the step was applied: "
                "training diverged (lower optim.lr or check the data)"
            )
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip)) if clip > 0 else None
        self.state.last_lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.task.model)
        st.step += 1
        st.loss_sum += loss_sum
        st.clips += clips
        return mean_loss, grad_norm

    def _grad_sync(self, sync: bool) -> AbstractContextManager[Any]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step (DDP ``no_sync``; FSDP2's flag)."""
        if sync or self.world == 1:
            if self.fsdp:
                self.task.model.set_requires_gradient_sync(True)  # type: ignore[operator]
            return nullcontext()
        if self.fsdp:
            self.task.model.set_requires_gradient_sync(False)  # type: ignore[operator]
            return nullcontext()
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if callable(no_sync) else nullcontext()

    def fit(self, train_loader: Any, val_loader: Any | None = None) -> dict[str, Any]:
        """Train for ``cfg.train.epochs`` epochs (resuming if asked) and return the final summary.

        Returns:
            The last ``metrics.csv`` row plus ``best_metric``, ``best_value``, ``best_epoch`` and ``stopped``
            (the signal name when a signal ended the run early, else None).
        """
        tcfg, ocfg = self.tcfg, self.cfg.optim
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.out_dir)
            (self.out_dir / "config.yaml").write_text(dump(self.cfg))
        self.logger = RunLogger(self.out_dir, enabled=self.main, tensorboard=tcfg.tensorboard, console=self.console)
        if tcfg.deterministic:
            torch.use_deterministic_algorithms(True)
        # each process its own stream (mixup, modality dropout, DropToken draw from it): rank 0 keeps train.seed,
        # so one process is unchanged; the data order and augmentations are seeded apart, from (seed, epoch, index)
        seed_everything(tcfg.seed + rank())

        n_batches = all_reduce_min(self._batches_per_epoch(train_loader), self._reduce_device)  # same on every rank
        steps_per_epoch = math.ceil(n_batches / ocfg.accum_steps)
        warmup = ocfg.warmup_steps if ocfg.warmup_steps is not None else round(ocfg.warmup_epochs * steps_per_epoch)
        self.scheduler = WarmupCosine(
            self.optimizer,
            base_lr=ocfg.lr,
            min_lr=ocfg.min_lr,
            warmup_steps=warmup,
            total_steps=tcfg.epochs * steps_per_epoch,
        )

        path = self._resume_path()
        if path is not None:
            ckpt = load_checkpoint(path, map_location=self.device)
            self.load_state_dict(ckpt)
            own = _rank_rng(ckpt, rank(), self.world)
            if own is None:
                own = ckpt["rng"], ckpt["epoch_start_rng"]
                self.logger.info("checkpoint RNG states from another process count: every rank resumes rank 0's")
            self.resume_rng, self.epoch_start_rng = own
            self._report_config_changes(ckpt["config"])
            where = f"step {self.state.step}, epoch {self.state.epoch + 1} batch {self.state.batches_done}"
            self.logger.info(f"resumed from {path} ({where})")
        self.logger.truncate(epoch=self.state.epoch, step=self.state.step)
        self._record_precision()

        previous = self._install_signals()
        try:
            summary = self._loop(train_loader, val_loader, n_batches)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.logger.close()
        return summary

    def _record_precision(self) -> None:
        """Log the precision's warning, say when a resumed run resolved to another precision than the run folder's
        last start, and write ``precision.json`` (rank 0)."""
        assert self.logger is not None
        choice = self.precision_choice
        if choice.warning is not None:
            self.logger.info(f"warning: {choice.warning}")
        if not self.main:
            return
        changed = choice.change_since(self.out_dir)
        if changed is not None:
            self.logger.info(changed)
        choice.write(self.out_dir)

    def _loop(self, train_loader: Any, val_loader: Any | None, n_batches: int) -> dict[str, Any]:
        assert self.scheduler is not None and self.logger is not None
        st, tcfg = self.state, self.tcfg
        self.logger.info(
            f"training {tcfg.epochs} epochs × {n_batches} batches on {self.device} "
            f"({self.precision}: {self.precision_choice.reason}); "
            f"out_dir {self.out_dir}"
        )
        while st.epoch < tcfg.epochs:
            if st.batches_done == 0:
                if self.resume_rng:  # resumed at an epoch boundary
                    _set_rng_state(self.resume_rng)
                    self.resume_rng = {}
                self.epoch_start_rng = _rng_state()
                st.start_epoch()
                self.stats = LoadStats()
                self._task_hook("on_epoch_start", train_loader)
            else:  # resumed mid-epoch: replay the epoch start; the checkpoint's RNG comes after the fast-forward
                _set_rng_state(self.epoch_start_rng)
            set_loader_epoch(train_loader, tcfg.seed, st.epoch)
            self._apply_freeze(st.epoch)
            stopped = self._train_epoch(train_loader, n_batches)
            self.resume_rng = {}
            if stopped:
                return self._stop()
            stats = self._epoch_stats()
            if stats.loaded == 0:  # nothing trained: refuse before any checkpoint, hook or log row
                raise UsageError(
                    f"no usable training clip in epoch {st.epoch + 1}: {stats.summary()}{first_reasons(stats)}"
                )
            self._task_hook("on_epoch_end", train_loader)

            epoch = st.epoch + 1  # completed epochs, 1-based in logs
            row: dict[str, Any] = {
                "epoch": epoch,
                "step": st.step,
                "train_loss": st.loss_sum / max(st.clips, 1),
                "lr": self.state.last_lr,
                "clips_per_s": self.epoch_clips_per_s,
            }
            row |= {f"train_{k}": v / max(st.clips, 1) for k, v in st.metric_sums.items()}
            self._warn_at_chance(epoch, st.metric_sums, max(st.clips, 1))
            row["skipped_train"] = len(stats.skipped)
            if stats.skipped:
                self.logger.info(f"epoch {epoch}: {stats.summary()}")
            self.logger.log_skipped(epoch, "train", stats.skipped)
            improved = False
            if val_loader is not None and (epoch % tcfg.eval_every == 0 or epoch == tcfg.epochs):
                try:
                    metrics, val_stats = self._validate(val_loader)
                except (LoaderStopped, *LOADER_FAILURES) as e:
                    if not isinstance(e, LoaderStopped) and not self._stopping_after_failure():
                        raise
                    # a stop signal during validation (its workers may have died of it): the epoch is trained and
                    # its hook has run, so it is saved as complete, without this validation
                    assert self.stop_signal is not None
                    name = signal.Signals(self.stop_signal).name
                    self.logger.info(f"epoch {epoch}: validation stopped by {name}; the epoch is saved without it")
                else:
                    row |= {f"val_{k}": v for k, v in metrics.items()}
                    row["skipped_val"] = len(val_stats.skipped)
                    self.logger.log_skipped(epoch, "val", val_stats.skipped)
                    improved = self._update_best(metrics, epoch)
            st.epoch, st.batches_done = epoch, 0
            st.last_row = row
            self.epoch_start_rng = _rng_state()  # a checkpoint at a boundary starts the next epoch from here
            self.save("last.pt")
            if improved:
                self.save("best.pt")
            self.logger.log_epoch(row)
            if self.on_epoch_end is not None:
                self.on_epoch_end(row)
            if self.stop_signal is not None:
                return self._stop()
        return self._summary(stopped=None)

    def _task_hook(self, name: str, train_loader: Any) -> None:
        """The task's per-epoch hook ``name`` when it has one (see :mod:`avformer.tasks.base`)."""
        hook = getattr(self.task, name, None)
        if hook is not None:
            st = self.state
            ctx = EpochContext(
                st.epoch, self.tcfg.epochs, self.device, self.precision, train_loader, st.step, self.optimizer
            )
            hook(ctx)

    def _stop(self) -> dict[str, Any]:
        assert self.logger is not None and self.stop_signal is not None
        name = signal.Signals(self.stop_signal).name
        self.save("last.pt")
        self.logger.info(f"{name}: saved {self.out_dir / 'last.pt'} at step {self.state.step}; stopping")
        return self._summary(stopped=name)

    def _summary(self, stopped: str | None) -> dict[str, Any]:
        st = self.state
        return {
            **st.last_row,
            "step": st.step,
            "best_metric": self.tcfg.best_metric,
            "best_value": st.best_value,
            "best_epoch": st.best_epoch,
            "stopped": stopped,
        }


def fit(
    task: Task,
    train_loader: Any,
    val_loader: Any | None,
    cfg: ExperimentConfig,
    out_dir: str | Path | None = None,
    *,
    console: Console | None = None,
    on_epoch_end: EpochHook | None = None,
    checkpoint_extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``task`` on ``train_loader``, evaluating on ``val_loader``; see :class:`Trainer` and the module docs.

    Writes ``config.yaml``, ``precision.json``, ``last.pt``, ``best.pt``, ``metrics.csv``, ``train_log.csv`` (and
    ``tb/``) into ``out_dir`` (default ``cfg.train.out_dir``). Returns the final metrics row with the best metric
    and ``stopped`` (a signal name when SIGTERM/SIGINT ended the run after saving ``last.pt``).
    """
    trainer = Trainer(
        task, cfg, out_dir, console=console, on_epoch_end=on_epoch_end, checkpoint_extras=checkpoint_extras
    )
    return trainer.fit(train_loader, val_loader)
