"""Run reports: PNG plots and a short ``report.md`` written into a run folder after training.

:func:`write_run_report` reads what the trainer left in the folder (``metrics.csv``, ``train_log.csv``) plus the
validation outputs of the final evaluation (``logits`` (N, K), ``label``, and for audio-visual models
``audio_logits`` / ``video_logits`` from masking the other modality) and writes:

- ``training_curves.png``: losses, learning rate and validation metrics over training;
- ``confusion_matrix.png`` and ``per_class_accuracy.png`` (single-label data);
- ``modality_comparison.png``: fused / audio-only / video-only top-1 (or mAP) of an audio-visual model;
- ``report.md``: the numbers, the plots and the command that reproduces the run.

Every view's number comes from :func:`avformer.metrics.classification.score_outputs` over the same outputs the
training log was computed from, so ``report.md``, ``metrics.csv`` and ``avformer eval`` (on the same weights) print
the same numbers; each view counts the clips the rule of :mod:`avformer.metrics.classification` says (fused: every
labelled clip; audio-only: those with audio; video-only: those with video), and the report gives those counts.
Views are labelled ``fused`` / ``audio-only`` / ``video-only``; an audio-only model's one row is ``audio-only``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from avformer.config import ExperimentConfig
from avformer.metrics.classification import (
    confusion_matrix,
    counted_clips,
    per_class_from_confusion,
    score_outputs,
    view_label,
)
from avformer.tasks.base import CHANCE_TOLERANCE, at_chance
from avformer.train.logging import SKIPPED_FILE

__all__ = ["modality_scores", "read_csv_rows", "write_run_report"]


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV log, or [] when the file does not exist."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def modality_scores(
    outputs: Mapping[str, torch.Tensor], multilabel: bool = False, num_classes: int | None = None
) -> dict[str, dict[str, float]]:
    """Metrics of each view in the validation outputs (``fused``, ``audio``, ``video``, those present; a single
    encoder's one view is named after its modality): :func:`avformer.metrics.classification.score_outputs`, with
    ``num_samples`` the clips the view counted."""
    return score_outputs(outputs, num_classes=num_classes, multilabel=multilabel)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else "n/a"
    return str(v)


def write_curves(run_dir: str | Path, title: str | None = None) -> Path | None:
    """``training_curves.png`` (losses, learning rate, validation metrics) from the run folder's logs, ``title``
    above it (the run and its model); None when there is nothing logged. Every finished run gets it, a
    self-supervised one too (its NMI or retrieval curves)."""
    from avformer.eval import plots  # matplotlib only when a figure is drawn

    run = Path(run_dir)
    rows: list[dict[str, Any]] = [*read_csv_rows(run / "train_log.csv"), *read_csv_rows(run / "metrics.csv")]
    if not rows:
        return None
    return plots.plot_training_curves(rows, run / "training_curves.png", title=title)


def run_title(cfg: ExperimentConfig) -> str:
    """How every chart of a run names it: the run's name and its model."""
    return f"{cfg.name} ({cfg.model.name})"


def _chance_section(summary: Mapping[str, Any], chance: Mapping[str, float]) -> list[str]:
    """``## Loss terms against chance``: each term's last epoch mean beside its chance value (the loss of a model
    that cannot tell the candidates apart: ln of their number for a contrastive term)."""
    rows = [(t, summary.get(f"train_{t}"), c) for t, c in chance.items()]
    rows = [(t, float(v), c) for t, v, c in rows if isinstance(v, int | float) and c > 0]
    if not rows:
        return []
    lines = ["## Loss terms against chance", "", "| term | last epoch | chance | ratio |", "|---|---|---|---|"]
    for term, value, c in rows:
        flag = " **at chance: learned nothing**" if at_chance(value, c) else ""
        lines.append(f"| {term} | {value:.4f} | {c:.4f} | {value / c:.3f}{flag} |")
    note = f"A term within {CHANCE_TOLERANCE:.0%} of its chance value has not learned to tell its candidates apart."
    lines += ["", note, ""]
    return lines


def _skipped_section(run: Path, notes: Sequence[str] = (), first: int = 5) -> list[str]:
    """``## Skipped clips``: the data notes (rows ``prepare`` could not write), then per split the clips skipped
    in the last epoch that logged the split (from ``skipped.csv``) with the first few reasons; nothing when no clip
    was skipped."""
    rows = read_csv_rows(run / SKIPPED_FILE)
    if not rows and not notes:
        return []
    lines = ["## Skipped clips", "", *(f"- {n}" for n in notes)]
    for split in ("train", "val"):
        mine = [r for r in rows if r.get("split") == split]
        if not mine:
            continue
        last = max(int(r["epoch"]) for r in mine)
        mine = [r for r in mine if int(r["epoch"]) == last]
        lines.append(f"- {split}: {len(mine)} clips skipped in epoch {last}; first:")
        lines += [f"  - `{r['id']}`: {r['reason']}" for r in mine[:first]]
    if rows:
        lines += ["", f"Every skipped clip with its reason is in `{SKIPPED_FILE}`."]
    return [*lines, ""]


def write_run_report(
    run_dir: str | Path,
    *,
    cfg: ExperimentConfig,
    classes: Sequence[str],
    summary: Mapping[str, Any],
    outputs: Mapping[str, torch.Tensor] | None,
    multilabel: bool = False,
    num_params: int | None = None,
    train_seconds: float | None = None,
    command: str | None = None,
    notes: Sequence[str] = (),
    chance: Mapping[str, float] | None = None,
) -> Path:
    """Plots and ``report.md`` for a finished run, supervised or self-supervised (no classes, no outputs: the
    curves, the final metrics row such as retrieval mAP, and each loss term against its chance value); returns the
    report's path.

    Args:
        run_dir: the run folder (holds ``metrics.csv`` / ``train_log.csv``).
        cfg: the run's config.
        classes: class names in logit order.
        summary: the trainer's final summary (last metrics row + best metric).
        outputs: the final validation outputs (None: no validation set; only the curves are drawn).
        multilabel: multi-label data (no confusion matrix; mAP instead of top-1).
        num_params: model parameters, for the report.
        train_seconds: wall time of training.
        command: the command line that made the run.
        notes: data notes (e.g. rows ``prepare`` could not write), listed under "Skipped clips".
        chance: the task's loss terms and their chance values (``Task.chance_losses``), for self-supervised runs.
    """
    from avformer.eval import plots  # matplotlib only when a report is written

    run = Path(run_dir)
    figures: list[tuple[str, str]] = []
    if write_curves(run, run_title(cfg)) is not None:
        figures.append(("training curves", "training_curves.png"))

    views: dict[str, dict[str, float]] = {}
    metric, key = ("mAP", "mAP") if multilabel else ("top-1", "top1")
    if outputs is not None and outputs["label"].numel():
        views = modality_scores(outputs, multilabel, len(classes))
        main = next(iter(views))  # the model's own view: fused, or a single encoder's modality
        if not multilabel:
            logits = outputs["logits" if main == "fused" else f"{main}_logits"]
            label = outputs["label"]
            present = None if main == "fused" else ~logits.isnan().all(dim=1)
            keep = counted_clips(main, label, has_audio=present, has_video=present)
            cm = confusion_matrix(logits[keep], label[keep], len(classes))
            name = f"{run_title(cfg)}, {view_label(main)}"
            plots.plot_confusion_matrix(cm, list(classes), run / "confusion_matrix.png", title=f"{name}: val confusion")
            plots.plot_per_class_accuracy(
                per_class_from_confusion(cm),
                list(classes),
                run / "per_class_accuracy.png",
                title=f"{name}: val per-class accuracy",
            )
            figures += [("confusion matrix", "confusion_matrix.png"), ("per-class accuracy", "per_class_accuracy.png")]
        if len(views) > 1:
            plots.plot_modality_comparison(
                {view_label(v): m[key] for v, m in views.items()},
                run / "modality_comparison.png",
                metric=metric,
                title=f"{run_title(cfg)}: val {metric}, fused vs one modality",
            )
            figures.append(("modality comparison", "modality_comparison.png"))

    lines = [f"# {cfg.name}", ""]
    lines += [
        f"- model: `{cfg.model.name}`" + (f" ({num_params / 1e6:.2f} M parameters)" if num_params else ""),
        f"- data: train `{cfg.train_manifest}`, val `{cfg.val_manifest}`, "
        + (f"{len(classes)} classes" if classes else "labels unused (self-supervised)"),
        f"- epochs: {summary.get('epoch', '?')} of {cfg.train.epochs}, {summary.get('step', '?')} optimizer steps",
    ]
    if train_seconds is not None:
        lines.append(f"- training time: {train_seconds / 60:.1f} min")
    if command:
        lines.append(f"- command: `{command}`")
    lines.append("")
    if views:
        lines += [f"## Validation ({metric}, final model)", "", f"| view | {metric} | clips |", "|---|---|---|"]
        lines += [f"| {view_label(v)} | {_fmt(m[key])} | {int(m['num_samples'])} |" for v, m in views.items()]
        note = "A view counts the labelled clips that have its stream (fused: every clip), as the training log and "
        note += "`avformer eval` do."
        if len(views) > 1:
            note = "Audio-only and video-only come from the same model with the other modality masked out. " + note
        lines += ["", note, ""]
    val = {k.removeprefix("val_"): v for k, v in summary.items() if k.startswith("val_")}
    if val:
        lines += ["## Final metrics row", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in val.items()]
        lines += ["", f"Best `{summary.get('best_metric')}`: {_fmt(summary.get('best_value'))} "]
        lines[-1] += f"(epoch {summary.get('best_epoch')}, saved as `best.pt`)."
        lines.append("")
    lines += _chance_section(summary, chance or {})
    lines += _skipped_section(run, notes)
    if figures:
        lines += ["## Plots", ""]
        lines += [f"![{title}]({name})" for title, name in figures]
        lines.append("")
    path = run / "report.md"
    path.write_text("\n".join(lines))
    return path
