"""What ``avformer train`` and ``avformer pretrain`` share: config arguments, the process group, exit statuses."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch.distributed as dist
from rich.console import Console

from avformer.config import ConfigError, ExperimentConfig, apply_overrides, load
from avformer.train.experiment import RunResult, run_experiment
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.distributed import init_distributed, is_main
from avformer.utils.errors import EnvironmentFailure, TrainingDiverged, UsageError, debug_enabled, describe

__all__ = ["add_config_args", "config_from_args", "exit_status", "run_and_report", "run_in_group"]

T = TypeVar("T")


def add_config_args(p: argparse.ArgumentParser, example: str) -> None:
    """``--config``, ``key=value`` overrides (positional or ``--set``) and ``--out``; :func:`config_from_args`
    turns them into the config."""
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


def run_in_group(prog: str, device: str, fn: Callable[[], T]) -> T | int:
    """Run ``fn`` inside the ``torchrun`` process group (joined here, left after), turning a user's mistake (exit
    status 2), an environment failure or a diverged run (1) into one line on stderr and that status (returned
    instead of ``fn``'s result; :func:`avformer.utils.errors.describe`)."""
    owns_group = init_distributed(device)
    try:
        return fn()
    except (UsageError, ConfigError, CheckpointError, EnvironmentFailure, TrainingDiverged, OSError) as e:
        if debug_enabled():  # `avformer --debug` / AVFORMER_DEBUG=1: the traceback
            raise
        status, message = describe(e)  # e.g. a bad resume path (2), a full disk (1), a diverged loss (1)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return status
    finally:
        if owns_group:
            dist.destroy_process_group()


def exit_status(stopped: str | None) -> int:
    """0 for a finished run, 128 + N when signal N stopped it (after saving ``last.pt``)."""
    return 0 if stopped is None else 128 + int(signal.Signals[stopped])


def run_and_report(prog: str, cfg: ExperimentConfig, headline: Callable[[RunResult], str], **kwargs: Any) -> int:
    """``run_experiment(cfg, **kwargs)`` inside the process group; rank 0 prints ``headline(result)`` (or how to
    resume a run a signal stopped). Returns the exit status."""

    def run() -> tuple[bool, RunResult]:
        main = is_main()  # rank 0 alone prints
        return main, run_experiment(cfg, console=Console(quiet=not main), **kwargs)

    out = run_in_group(prog, cfg.train.device, run)
    if isinstance(out, int):
        return out
    main, result = out
    stopped = result.summary.get("stopped")
    if main:
        if stopped is not None:
            print(f"stopped by {stopped} after saving {result.out_dir / 'last.pt'}; run the same command to resume")
        else:
            print(headline(result))
    return exit_status(stopped)
