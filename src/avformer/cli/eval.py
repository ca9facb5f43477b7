"""``avformer eval RUN_OR_CKPT --data MANIFEST``: score a trained run on a labelled manifest.

The data transforms are rebuilt from the run's ``config.yaml`` in eval mode (short-side resize + centre crop, no
augmentation); ``--clips N`` reads N uniformly spaced windows per file and ``--crops M`` takes M spatial crops of
each window (3 = left / centre / right along the long side), and the N × M views' probabilities are averaged
(multi-clip × multi-crop testing, as SlowFast / MViT evaluate). Labels are mapped through the run's
``classes.txt``; a label the model does not know is an error that names it. Files that cannot be loaded are
skipped, counted and listed in ``eval.json``.

For audio-visual models the table shows the fused prediction and the audio-only and video-only predictions of the
same model (the other modality masked out) side by side, columns ``fused`` / ``audio-only`` / ``video-only`` (a
single encoder's one column: ``audio-only`` or ``video-only``). Each view counts the clips the rule of
:mod:`avformer.metrics.classification` says, the rule training validation and ``report.md`` follow: the fused view
every clip, the audio-only view the clips that have audio, the video-only view those with video; the ``clips`` row
gives the counts. On the same weights (``--checkpoint last`` is the model of the last ``metrics.csv`` row and of
``report.md``; ``best.pt`` may be another epoch) the numbers are the training log's. Single-label data: top-1,
top-5, mean per-class accuracy; multi-label data (several labels on a row, or an AudioSet JSON manifest;
``--multilabel`` forces it): mAP, AUC, d'.

``--by CSV:COLUMN`` adds top-1 per group of rows, for every view: COLUMN of a CSV keyed by the manifest's ``id`` or
``path`` (e.g. AV-Digits' ``val_meta.csv:condition``: clean / audio degraded / video degraded). Written into
``eval.json`` under ``groups`` too.

Writes ``eval.json``, ``predictions.csv``, ``confusion_matrix.png``, ``per_class_accuracy.png`` (``per_class_ap.png``
for multi-label) and ``modality_comparison.png`` (AV models) into ``--out`` (default
``<run folder>/eval_<manifest stem>/``), the plots into ``--png DIR`` when given; the last lines name every file
written. ``--json`` prints ``eval.json`` instead of the table.

Exit status: 0 on success; 1 when no file of the manifest could be loaded; 2 for a bad run, manifest or argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from avformer.data.manifest import Manifest, ManifestError, read_manifest
from avformer.eval.report import (
    EvalResult,
    evaluate,
    format_groups,
    format_table,
    group_accuracy,
    read_groups,
    write_report,
)
from avformer.models.loading import LoadedRun, load_run
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.device import resolve_device
from avformer.utils.run_folder import CLASSES_FILE

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer eval",
        description="Evaluate a trained run on a labelled manifest: metrics table, eval.json and plots.",
    )
    p.add_argument("run", metavar="RUN_OR_CKPT", help="run folder (best.pt, else last.pt) or a checkpoint file")
    p.add_argument("--data", required=True, metavar="MANIFEST", help="labelled manifest (csv, jsonl, vggsound, ...)")
    p.add_argument("--root", metavar="DIR", help="folder that relative manifest paths start from (default: its own)")
    p.add_argument("--format", default="auto", help="manifest format (default: auto)")
    p.add_argument("--clips", type=int, metavar="N", help="test windows per file (default: the run's num_test_clips)")
    p.add_argument(
        "--crops", type=int, metavar="M", help="spatial crops per window, 1 or 3 usually (default: the run's, 1)"
    )
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="samples per forward pass (default 8)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="DataLoader worker processes (default 0)")
    p.add_argument("--out", metavar="DIR", help="report folder (default: <run>/eval_<manifest stem>)")
    p.add_argument("--png", metavar="DIR", help="write the plots into DIR instead of the report folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even when the checkpoint has EMA ones")
    p.add_argument("--multilabel", action="store_true", help="multi-label metrics even if no row has two labels")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--json", action="store_true", help="print eval.json instead of the table")
    p.add_argument(
        "--by",
        metavar="CSV:COLUMN",
        help="also top-1 per group: COLUMN of a CSV keyed by the manifest's id/path (e.g. val_meta.csv:condition)",
    )
    return p


def _fail(msg: str) -> int:
    print(f"avformer eval: error: {msg}", file=sys.stderr)
    return 2


def _read(args: argparse.Namespace, run: LoadedRun) -> Manifest:
    """The manifest with the run's class order; a label outside the run's classes is an error that names it."""
    manifest = read_manifest(args.data, args.root, fmt=args.format)
    known = set(run.classes)
    unknown = sorted({lab for r in manifest for lab in r.labels if lab not in known})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
        classes_file = run.checkpoint.parent / CLASSES_FILE
        raise ManifestError(
            f"{args.data}: {len(unknown)} label(s) the model does not know: {shown}; "
            f"its {len(run.classes)} classes are listed in {classes_file}"
        )
    return Manifest(list(manifest.rows), list(run.classes), manifest.multilabel, manifest.source)


def _summary(result: EvalResult, written: list[Path]) -> str:
    lines = [format_table(result), ""]
    loaded = f"{result.num_loaded}/{result.num_rows} files evaluated"
    if result.skipped:
        loaded += f", {len(result.skipped)} skipped:"
        lines.append(loaded)
        for row_id, reason in result.skipped[:10]:
            lines.append(f"  {row_id}: {reason}")
        if len(result.skipped) > 10:
            lines.append(f"  ... and {len(result.skipped) - 10} more (see eval.json)")
    else:
        lines.append(loaded + ", none skipped")
    folders = dict.fromkeys(p.parent for p in written)
    for folder in folders:
        lines.append(f"wrote {', '.join(p.name for p in written if p.parent == folder)} into {folder}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("clips", "crops"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return _fail(f"--{name} must be >= 1, got {value}")
    if args.batch_size < 1 or args.workers < 0:
        return _fail("--batch-size must be >= 1 and --workers >= 0")
    try:
        run = load_run(args.run, prefer=args.checkpoint, use_ema=not args.no_ema)
    except (FileNotFoundError, CheckpointError, ValueError, TypeError, KeyError, RuntimeError) as e:
        return _fail(f"cannot load the run {args.run}: {e}")
    try:
        manifest = _read(args, run)
        by = read_groups(args.by) if args.by else None
    except (FileNotFoundError, ManifestError, ValueError) as e:
        return _fail(str(e))
    if len(manifest) == 0:
        return _fail(f"{args.data}: no rows")
    data = run.cfg.data
    if args.clips is not None:
        data = replace(data, num_test_clips=args.clips)
    if args.crops is not None:
        data = replace(data, num_test_crops=args.crops)
    run_dir = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.out) if args.out else run_dir / f"eval_{Path(args.data).stem}"
    if not args.json:
        print(
            f"evaluating {run.cfg.model.name} ({run.checkpoint}, epoch {run.epoch}) on {len(manifest)} files of "
            f"{args.data}: {data.num_test_clips} clip(s) of {data.window_seconds:g} s"
            + (f" x {data.num_test_crops} crops" if data.num_test_crops > 1 and "video" in data.modalities else "")
            + " per file",
            flush=True,
        )
    try:
        result = evaluate(
            run,
            manifest,
            data,
            batch_size=args.batch_size,
            workers=args.workers,
            device=resolve_device(args.device),
            multilabel=True if args.multilabel else None,
            progress=not args.json,
        )
    except ValueError as e:
        return _fail(str(e))
    result.info["run"] = str(run_dir)
    groups = None
    if by is not None:
        try:
            groups = group_accuracy(result, by[1])
        except ValueError as e:
            return _fail(str(e))
        result.info["groups"] = {"column": by[0], "top1": groups}
    written = write_report(result, out, png_dir=args.png, name=f"{run.cfg.name} ({run.cfg.model.name})")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(_summary(result, written))
        if groups is not None:
            print("\n" + format_groups(by[0], groups, result.views))
    return 0 if result.num_loaded else 1


if __name__ == "__main__":
    sys.exit(main())
