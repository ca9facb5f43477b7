"""``avformer train``: train a classifier from an experiment config.

    avformer train --config configs/experiment/av_digits_mmt_tiny.yaml [key=value ...] [--set key=value ...]

Loads the YAML config (``inherit:`` followed), applies the overrides in order (``train.epochs=3``,
``optim.lr=3e-4``, ``model.overrides.fusion=late``), reads the manifests, builds the model by name and the task
that fits it (:func:`avformer.train.tasks.make_task`: an audio-visual model or a single encoder) and trains with
:func:`avformer.train.trainer.fit`. The run folder (``train.out_dir``, or ``--out``) then holds ``config.yaml``,
``classes.txt``, ``last.pt`` / ``best.pt``, ``metrics.csv``, ``train_log.csv``, the PNG plots and ``report.md``.

Running the same command again resumes from ``last.pt`` (``train.resume: auto``), exactly: a run killed at any point
ends with the same weights and metrics as one that never stopped. Relative paths in the config (manifests,
``classes``, ``root``) are relative to the working directory.

Exit status: 0 done; 2 a bad config, override or manifest (one line on stderr); 128 + N when signal N (SIGTERM,
SIGINT) stopped training after saving ``last.pt``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from avformer.config import ConfigError, ExperimentConfig, apply_overrides, load
from avformer.data.dataset import AVDataset, make_loader
from avformer.data.manifest import Manifest, ManifestError, read_manifest
from avformer.train.report import write_run_report
from avformer.train.run import build_model, write_classes
from avformer.train.tasks import AVClassificationTask, ClassificationTask, make_task
from avformer.train.trainer import evaluate, fit, seed_everything

__all__ = ["TrainResult", "UsageError", "load_data", "main", "run_training"]


class UsageError(Exception):
    """A problem with the user's config, overrides or files: reported as one line, exit status 2."""


@dataclass
class TrainData:
    """Manifests, classes and loaders of one experiment."""

    classes: list[str]
    multilabel: bool
    train: Manifest
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


def load_data(cfg: ExperimentConfig) -> TrainData:
    """Read the manifests (classes from ``cfg.classes`` or the train labels) and build the loaders.

    Raises:
        UsageError: a missing manifest or class file, or an unreadable manifest.
    """
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
    tcfg = cfg.train
    train_ds = AVDataset(train, cfg.data, train=True, seed=tcfg.seed)
    train_loader = make_loader(
        train_ds,
        batch_size=tcfg.batch_size,
        shuffle=True,
        num_workers=tcfg.workers,
        drop_last=len(train_ds) >= 2 * tcfg.batch_size,  # no ragged last step, unless the set is tiny
        seed=tcfg.seed,
    )
    val_loader = None
    if val is not None:
        val_ds = AVDataset(val, cfg.data, train=False, seed=tcfg.seed)
        val_loader = make_loader(val_ds, batch_size=tcfg.batch_size, shuffle=False, num_workers=tcfg.workers)
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
    if report and summary.get("stopped") is None:
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="experiment YAML (configs/experiment/..., configs/smoke/...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, applied in order")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="key=value", help="an override")
    p.add_argument("--out", help="run folder (default: train.out_dir of the config)")
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
    overrides = [*args.overrides, *args.set_]
    for item in overrides:
        if "=" not in item:
            print(f"avformer train: error: override {item!r} is not key=value", file=sys.stderr)
            return 2
    try:
        if not Path(args.config).is_file():
            raise UsageError(f"--config: no such file: {args.config}")
        cfg = apply_overrides(load(args.config), overrides)
        command = shlex.join(["avformer", "train", *(sys.argv[2:] if argv is None else argv)])
        result = run_training(cfg, out_dir=args.out, console=Console(), command=command)
    except (UsageError, ConfigError) as e:
        print(f"avformer train: error: {e}", file=sys.stderr)
        return 2
    stopped = result.summary.get("stopped")
    if stopped is not None:
        print(f"stopped by {stopped} after saving {result.out_dir / 'last.pt'}; run the same command to resume")
        return 128 + int(signal.Signals[stopped])
    print(_headline(result))
    return 0
