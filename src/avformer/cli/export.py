"""``avformer export RUN_OR_CKPT --out DIR``: the weights-only form of a trained run, for sharing and deployment.

    avformer export runs/esc50/ast --out exports/esc50_ast [--format safetensors] [--dtype fp32|bf16|fp16]
        [--checkpoint best|last] [--no-ema]

Writes ``DIR/model.safetensors`` (the model's weights only: no optimizer, scheduler, RNG or trainer state; the EMA
weights when the run kept them, as ``eval`` uses), ``DIR/config.yaml`` (the run's resolved config) and
``DIR/classes.txt`` (absent for a self-supervised run). ``avformer eval``, ``predict``, ``embed`` and
``avformer.load()`` take that folder wherever they take a run folder. ``--dtype bf16`` or ``fp16`` halves the file
(floating tensors only; loading casts them back to fp32, so outputs differ from the run's by the rounding).
The last line compares the file's size with the checkpoint's. Reading an export never runs code (safetensors is
raw tensors; the config is YAML).

Exit status: 0 done; 2 a bad run, folder or argument.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avformer.cli._help import plain
from avformer.config import ConfigError
from avformer.models.loading import EXPORT_DTYPES, EXPORTERS, export_run, load_run
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.errors import UsageError, report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer export", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", metavar="RUN_OR_CKPT", help="run folder (best.pt, else last.pt), checkpoint or export")
    p.add_argument("--out", required=True, metavar="DIR", help="export folder (created; not the run folder)")
    p.add_argument("--format", choices=sorted(EXPORTERS), default="safetensors", help="weights format")
    p.add_argument("--dtype", choices=list(EXPORT_DTYPES), default="fp32", help="floating weights' type (fp32)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder")
    p.add_argument("--no-ema", action="store_true", help="the raw weights even when the run kept an EMA copy")
    return p


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run = load_run(args.run, prefer=args.checkpoint, use_ema=not args.no_ema, require_classes=False)
        if Path(args.out).resolve() == run.checkpoint.parent.resolve():
            raise UsageError(f"--out {args.out}: that is the folder of {run.checkpoint.name}; export elsewhere")
        weights = export_run(run, args.out, fmt=args.format, dtype=args.dtype)
    except (UsageError, FileNotFoundError, CheckpointError, ConfigError, ValueError) as e:
        return report("avformer export", e)
    ratio = run.checkpoint.stat().st_size / max(weights.stat().st_size, 1)
    n = sum(p.numel() for p in run.model.parameters())
    print(f"exported {run.spec.name} ({n / 1e6:.2f} M params, {args.dtype}) -> {weights.parent}")
    print(f"  {weights.name}: {_mb(weights)}; {run.checkpoint.name}: {_mb(run.checkpoint)} ({ratio:.1f}x the export)")
    return 0
