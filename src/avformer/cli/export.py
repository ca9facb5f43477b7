"""``avformer export RUN_OR_CKPT --out DIR``: the weights-only form of a trained run, for sharing and deployment.

    avformer export runs/esc50/ast --out exports/esc50_ast [--format safetensors|torchscript|onnx]
        [--dtype fp32|bf16|fp16] [--checkpoint best|last] [--no-ema] [--check FILE]

Writes ``DIR/model.safetensors`` (the model's weights only: no optimizer, scheduler, RNG or trainer state; the EMA
weights when the run kept them, as ``eval`` uses), ``DIR/config.yaml`` (the run's resolved config) and
``DIR/classes.txt`` (absent for a self-supervised run). ``avformer eval``, ``predict``, ``embed`` and
``avformer.load()`` take that folder wherever they take a run folder. ``--dtype bf16`` or ``fp16`` halves the file
(floating tensors only; loading casts them back to fp32, so outputs differ from the run's by the rounding).
The last line compares the file's size with the checkpoint's. Reading an export never runs code (safetensors is
raw tensors; the config is YAML).

``--format torchscript`` / ``onnx`` (classifiers; fp32) also write ``DIR/model.torchscript.pt`` (traced) or
``DIR/model.onnx`` (ONNX Runtime), which ``avformer predict --backend torchscript|onnxruntime`` runs (see
:mod:`avformer.models.export_formats`). The export is then checked: the exported model and the eager one run on
the same inputs, a real file's windows decoded as ``predict`` decodes them (``--check FILE``) or random inputs of
the run's shapes, and the largest absolute logit difference is printed; above 1e-3 x max(1, largest |logit|)
(:func:`~avformer.models.export_formats.check_tolerance`) the exported file is removed and the command fails.
Loading such a model file runs its graph (TorchScript: code), so run only your own.

Exit status: 0 done; 1 the exported model does not match the eager one; 2 a bad run, folder or argument (a model
or dtype the format cannot export).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from avformer.cli._help import plain
from avformer.config import ConfigError
from avformer.models.export_formats import (
    FORMAT_FILES,
    EagerBackend,
    check_tolerance,
    example_inputs,
    load_backend,
)
from avformer.models.loading import EXPORT_DTYPES, EXPORTERS, LoadedRun, export_run, load_run
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
    p.add_argument("--check", metavar="FILE", help="torchscript/onnx: compare with eager on FILE's windows "
                   "(default: random inputs of the run's shapes)")  # fmt: skip
    return p


class _Compare:
    """A backend that runs the exported model and the eager one on the same inputs and keeps the largest
    absolute logit difference and the tolerance for those logits (it returns the exported model's logits)."""

    def __init__(self, eager: EagerBackend, exported: Callable[..., torch.Tensor]) -> None:
        self.eager, self.exported, self.max_diff, self.tolerance, self.rows = eager, exported, 0.0, -1.0, 0
        self.name, self.precision = "compare", "fp32"

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        out, ref = self.exported(*inputs), self.eager(*inputs)
        self.max_diff = max(self.max_diff, float((out - ref).abs().max()))
        self.tolerance = max(self.tolerance, check_tolerance(ref))
        self.rows += len(out)
        return out


def check_export(run: LoadedRun, fmt: str, folder: Path, file: str | None = None) -> tuple[float, float, str]:
    """``(max |exported - eager| logit, the tolerance, what it ran on)`` for the ``fmt`` model file in ``folder``.

    Raises:
        UsageError: ``file`` gives no prediction (missing, no usable stream...).
    """
    backend_name = {"torchscript": "torchscript", "onnx": "onnxruntime"}[fmt]
    compare = _Compare(EagerBackend(run.model), load_backend(backend_name, run.model, folder))
    if file is not None:
        from avformer.eval.predict import FilePredictor

        pred = FilePredictor(run, num_clips=3, backend=compare).predict(file)
        if not pred.ok:
            raise UsageError(f"--check {file}: {pred.error}")
        return compare.max_diff, compare.tolerance, f"{file}, {compare.rows} window(s)"
    inputs = example_inputs(run.model, batch=3, seed=1)
    if len(inputs) == 4:  # audio-visual: also a sample without video and one without audio
        inputs = (*inputs[:2], torch.tensor([True, True, False]), torch.tensor([True, False, True]))
    compare(*inputs)
    return compare.max_diff, compare.tolerance, "random inputs of the run's shapes, batch 3"


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run = load_run(args.run, prefer=args.checkpoint, use_ema=not args.no_ema, require_classes=False)
        if Path(args.out).resolve() == run.checkpoint.parent.resolve():
            raise UsageError(f"--out {args.out}: that is the folder of {run.checkpoint.name}; export elsewhere")
        if args.check is not None and args.format not in FORMAT_FILES:
            raise UsageError(f"--check compares an exported graph (--format {' or '.join(FORMAT_FILES)})")
        weights = export_run(run, args.out, fmt=args.format, dtype=args.dtype)
        checked = check_export(run, args.format, weights.parent, args.check) if args.format in FORMAT_FILES else None
    except (UsageError, FileNotFoundError, CheckpointError, ConfigError, ValueError) as e:
        return report("avformer export", e)
    ratio = run.checkpoint.stat().st_size / max(weights.stat().st_size, 1)
    n = sum(p.numel() for p in run.model.parameters())
    print(f"exported {run.spec.name} ({n / 1e6:.2f} M params, {args.dtype}) -> {weights.parent}")
    print(f"  {weights.name}: {_mb(weights)}; {run.checkpoint.name}: {_mb(run.checkpoint)} ({ratio:.1f}x the export)")
    if checked is not None:
        diff, tolerance, where = checked
        print(f"  check: max |logit difference| vs eager {diff:.2e} on {where} (tolerance {tolerance:.2g})")
        if not diff <= tolerance:  # NaN fails too
            weights.unlink()
            print(
                f"avformer export: error: {weights.name} differs from the eager model by {diff:.2e} > "
                f"{tolerance:.2g}; removed it",
                file=sys.stderr,
            )
            return 1
    return 0
