"""``avformer train``: train a classifier from an experiment config.

    avformer train --config configs/experiment/av_digits_mmt_tiny.yaml [key=value ...] [--set key=value ...]

Loads the YAML config (``inherit:`` followed), applies the overrides in order (``train.epochs=3``, ``optim.lr=3e-4``,
``model.overrides.fusion=late``), reads the manifests, builds the model by name and the task that fits it
(:func:`avformer.tasks.classification.make_task`: an audio-visual model or a single encoder) and trains with
:func:`avformer.train.trainer.fit`. The run folder (``train.out_dir``, or ``--out``) then holds ``config.yaml``,
``classes.txt``, ``last.pt`` / ``best.pt``, ``metrics.csv``, ``train_log.csv``, the PNG plots and ``report.md``.

Running the same command again resumes from ``last.pt`` (``train.resume: auto``), exactly: a run killed at any point
ends with the same weights and metrics as one that never stopped. Relative paths in the config (manifests,
``classes``, ``root``) are relative to the working directory.

Shards: with ``train_shards: DIR`` (a folder written by ``avformer prepare``, its ``index.json``, or a URL of one) the
training set is streamed from the shards instead of decoding the manifest's files (``train_manifest`` is then not
needed); ``val_shards`` likewise for validation, else ``val_manifest``. The classes come from ``classes`` or the
shard index. A mid-epoch resume skips the trained batches without reading them.

Several processes: ``torchrun --nproc_per_node N -m avformer train --config ...`` (or ``--nnodes M --node_rank i
--rdzv_endpoint HOST:PORT`` for several machines) starts one training process per GPU (or per CPU slot with gloo);
this command sets up the process group (NCCL on GPU, gloo on CPU) from torchrun's environment.
``train.batch_size`` is per process: the global batch is ``batch_size × processes × optim.accum_steps``. Only rank
0 writes the run folder; see :mod:`avformer.train.trainer` for what is synchronised.

Exit status: 0 done; 2 a bad config, override or manifest (one line on stderr); 128 + N when signal N (SIGTERM,
SIGINT) stopped training after saving ``last.pt``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from torch import nn

from avformer.config import ConfigError, ExperimentConfig, apply_overrides, load
from avformer.data.dataset import AVDataset, make_loader
from avformer.data.manifest import Manifest, ManifestError, read_manifest
from avformer.data.shards import ShardDataset, make_shard_loader
from avformer.models.loading import build_model
from avformer.tasks.classification import AVClassificationTask, ClassificationTask, make_task
from avformer.train.report import write_run_report
from avformer.train.trainer import evaluate, fit, seed_everything
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.distributed import is_main
from avformer.utils.run_folder import write_classes

__all__ = ["TrainResult", "UsageError", "add_config_args", "config_from_args", "load_data", "main", "run_training"]


def init_distributed(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    NCCL when CUDA is available and ``device`` is not ``cpu`` (each process then uses GPU ``LOCAL_RANK``), else
    gloo. Returns True when this call created the group (the caller destroys it), False when there is nothing to do.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


class UsageError(Exception):
    """A problem with the user's config, overrides or files: reported as one line, exit status 2."""


@dataclass
class TrainData:
    """Manifests (None for shards), classes and loaders of one experiment."""

    classes: list[str]
    multilabel: bool
    train: Manifest | None
    val: Manifest | None
    train_loader: Any
    val_loader: Any | None


@dataclass
class TrainResult:
    """What :func:`run_training` returns."""

    out_dir: Path
    summary: dict[str, Any]
    classes: list[str]
    outputs: dict[str, Any] | None  # final validation outputs (logits, label, audio_logits, video_logits)
    num_params: int
    seconds: float
    report: Path | None


def _manifest(path: str | None, what: str, root: str | None, classes: Any) -> Manifest:
    if path is None:
        raise UsageError(f"{what} is not set in the config (set it in the YAML or as {what}=PATH)")
    if not Path(path).is_file():
        raise UsageError(f"{what}: no such file: {path}")
    try:
        return read_manifest(path, root, classes=classes)
    except ManifestError as e:
        raise UsageError(f"{what}: {e}") from e


def _shards(cfg: ExperimentConfig, source: str, what: str, train: bool, classes: list[str] | None) -> ShardDataset:
    tcfg = cfg.train
    try:
        return ShardDataset(
            source,
            cfg.data,
            train=train,
            seed=tcfg.seed,
            batch_size=tcfg.batch_size,
            shuffle_buffer=tcfg.shuffle_buffer,
            classes=classes,
        )
    except (OSError, ValueError) as e:
        raise UsageError(f"{what}: {e}") from e


def _read_classes(path: str | None) -> list[str] | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise UsageError(f"classes: no such file: {path}")
    return [c for c in Path(path).read_text().splitlines() if c.strip()]


def load_data(cfg: ExperimentConfig) -> TrainData:
    """Read the manifests or shard indexes (classes from ``cfg.classes``, else the train labels / shard index) and
    build the loaders; under an initialised process group each rank gets its share (see the module docstring).

    Raises:
        UsageError: a missing manifest, shard index or class file, or an unreadable manifest.
    """
    tcfg = cfg.train
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    if cfg.train_shards is not None:
        train_ds = _shards(cfg, cfg.train_shards, "train_shards", True, _read_classes(cfg.classes))
        if not train_ds.classes:
            raise UsageError(f"train_shards {cfg.train_shards}: no class list (set classes: FILE)")
        classes, multilabel = list(train_ds.classes), train_ds.multilabel
        train_loader: Any = make_shard_loader(train_ds, num_workers=tcfg.workers)
        val_loader: Any = None
        val = None
        if cfg.val_shards is not None:
            val_loader = make_shard_loader(
                _shards(cfg, cfg.val_shards, "val_shards", False, classes), num_workers=tcfg.workers
            )
        elif cfg.val_manifest:
            val = _manifest(cfg.val_manifest, "val_manifest", cfg.root, classes)
            val = replace(val, multilabel=multilabel)
            val_ds = AVDataset(val, cfg.data, train=False, seed=tcfg.seed)
            val_loader = make_loader(
                val_ds, batch_size=tcfg.batch_size, shuffle=False, num_workers=tcfg.workers,
                num_replicas=world, rank=rank, pad=False,
            )  # fmt: skip
        return TrainData(classes, multilabel, None, val, train_loader, val_loader)
    if cfg.classes is not None and not Path(cfg.classes).is_file():
        raise UsageError(f"classes: no such file: {cfg.classes}")
    train = _manifest(cfg.train_manifest, "train_manifest", cfg.root, cfg.classes)
    if not train.classes:
        raise UsageError(f"train_manifest {cfg.train_manifest}: no labels (a classifier needs a label column)")
    val = _manifest(cfg.val_manifest, "val_manifest", cfg.root, train.classes) if cfg.val_manifest else None
    if val is not None and val.multilabel != train.multilabel:
        if val.multilabel:
            raise UsageError(
                f"val_manifest {cfg.val_manifest} has rows with several labels, but train_manifest has one per row"
            )
        val = replace(val, multilabel=True)  # multi-label data whose val rows happen to carry one label each
    train_ds = AVDataset(train, cfg.data, train=True, seed=tcfg.seed)
    train_loader = make_loader(
        train_ds,
        batch_size=tcfg.batch_size,
        shuffle=True,
        num_workers=tcfg.workers,
        drop_last=len(train_ds) >= 2 * tcfg.batch_size * world,  # no ragged last step, unless the set is tiny
        seed=tcfg.seed,
        num_replicas=world,
        rank=rank,
    )
    val_loader = None
    if val is not None:
        val_ds = AVDataset(val, cfg.data, train=False, seed=tcfg.seed)
        val_loader = make_loader(
            val_ds,
            batch_size=tcfg.batch_size,
            shuffle=False,
            num_workers=tcfg.workers,
            num_replicas=world,
            rank=rank,
            pad=False,
        )
    return TrainData(list(train.classes), train.multilabel, train, val, train_loader, val_loader)


def build(cfg: ExperimentConfig, num_classes: int, multilabel: bool) -> tuple[nn.Module, Any]:
    """Model and task; a bad model name or override is a :class:`UsageError`."""
    try:
        model = build_model(cfg.model, num_classes)
        task = make_task(cfg, model, num_classes, multilabel)
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"model {cfg.model.name!r}: {e}") from e
    return model, task


def run_training(
    cfg: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    console: Console | None = None,
    command: str | None = None,
    report: bool = True,
) -> TrainResult:
    """Train ``cfg`` end to end: data, model, task, :func:`fit`, ``classes.txt``, plots and ``report.md``.

    Raises:
        UsageError: a bad manifest, class file, model name or override.
    """
    out = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    if str(out) != cfg.train.out_dir:
        cfg = replace(cfg, train=replace(cfg.train, out_dir=str(out)))
    data = load_data(cfg)
    seed_everything(cfg.train.seed)  # the initial weights depend on train.seed alone, in any process
    model, task = build(cfg, len(data.classes), data.multilabel)
    if is_main():
        write_classes(out, data.classes)  # before training: a killed run can still be loaded by eval / predict
    t0 = time.perf_counter()
    summary = fit(task, data.train_loader, data.val_loader, cfg, out, console=console)
    seconds = time.perf_counter() - t0
    num_params = sum(p.numel() for p in model.parameters())
    outputs = None
    if summary.get("stopped") is None and data.val_loader is not None:
        outputs = task.last_outputs
        if outputs is None:  # a finished run resumed: nothing was evaluated in this process
            assert isinstance(task, AVClassificationTask | ClassificationTask)
            evaluate(task, data.val_loader, device=next(model.parameters()).device, precision=cfg.train.precision)
            outputs = task.last_outputs
    path = None
    if report and is_main() and summary.get("stopped") is None:
        path = write_run_report(
            out,
            cfg=cfg,
            classes=data.classes,
            summary=summary,
            outputs=outputs,
            multilabel=data.multilabel,
            num_params=num_params,
            train_seconds=seconds,
            command=command,
        )
    return TrainResult(out, summary, data.classes, outputs, num_params, seconds, path)


def add_config_args(p: argparse.ArgumentParser, example: str) -> None:
    """``--config``, ``key=value`` overrides (positional or ``--set``) and ``--out``: the arguments of ``avformer
    train`` and ``avformer pretrain``; :func:`config_from_args` turns them into the config."""
    p.add_argument("--config", required=True, help=f"experiment YAML ({example})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, applied in order")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="key=value", help="an override")
    p.add_argument("--out", help="run folder (default: train.out_dir of the config)")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The ``--config`` file with the overrides of :func:`add_config_args` applied in order.

    Raises:
        UsageError: an override that is not ``key=value``, or no such config file.
        ConfigError: a config or override that does not fit the schema.
    """
    overrides = [*args.overrides, *args.set_]
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r} is not key=value")
    if not Path(args.config).is_file():
        raise UsageError(f"--config: no such file: {args.config}")
    return apply_overrides(load(args.config), overrides)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(p, "configs/experiment/..., configs/smoke/...")
    return p


def _headline(result: TrainResult) -> str:
    s = result.summary
    parts = [f"done in {result.seconds / 60:.1f} min; run folder {result.out_dir}"]
    for key, name in (("val_top1", "val top-1"), ("val_mAP", "val mAP")):
        if key in s:
            parts.append(f"{name} {s[key]:.4f}")
    for key in ("val_audio_top1", "val_video_top1", "val_audio_mAP", "val_video_mAP"):
        if key in s:
            parts.append(f"{key.removeprefix('val_').replace('_', '-only ', 1)} {s[key]:.4f}")
    if result.report is not None:
        parts.append(f"report {result.report}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        command = shlex.join(["avformer", "train", *(sys.argv[2:] if argv is None else argv)])
    except (UsageError, ConfigError) as e:
        print(f"avformer train: error: {e}", file=sys.stderr)
        return 2
    owns_group = init_distributed(cfg.train.device)
    quiet = dist.is_initialized() and dist.get_rank() != 0  # rank 0 alone prints the summary
    try:
        result = run_training(cfg, out_dir=args.out, console=Console(quiet=quiet), command=command)
    except (UsageError, ConfigError, CheckpointError, FileNotFoundError) as e:  # a bad resume path / checkpoint
        print(f"avformer train: error: {e}", file=sys.stderr)
        return 2
    finally:
        if owns_group:
            dist.destroy_process_group()
    if quiet:
        return 0 if result.summary.get("stopped") is None else 128 + int(signal.Signals[result.summary["stopped"]])
    stopped = result.summary.get("stopped")
    if stopped is not None:
        print(f"stopped by {stopped} after saving {result.out_dir / 'last.pt'}; run the same command to resume")
        return 128 + int(signal.Signals[stopped])
    print(_headline(result))
    return 0
