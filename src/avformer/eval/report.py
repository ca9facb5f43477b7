"""Evaluation of a trained run on a manifest, and the report it writes (``avformer eval``, ``avformer predict --png``).

:func:`evaluate` runs a :class:`~avformer.models.loading.LoadedRun` over every row of a manifest (the run's data config
in eval mode, ``num_test_clips`` uniform windows per file, ``num_test_crops`` spatial crops of each) and scores each
**view of the data**: ``fused`` plus, for audio-visual models, ``audio`` (video masked out) and ``video`` (audio masked
out), side by side (:func:`avformer.tasks.inference.predict_batch`). Which clips each view counts is the rule of
:mod:`avformer.metrics.classification` (:func:`~avformer.metrics.classification.counted_clips`), the one training
validation and ``report.md`` follow: the fused view counts every clip, the audio-only view the clips that have audio,
the video-only view those with video (a masked-out modality would otherwise score the model's prior); the clip counts
are printed. Views are labelled ``fused`` / ``audio-only`` / ``video-only`` (a single encoder's one column is named
after its modality: ``audio-only`` or ``video-only``). Files that cannot be loaded are skipped and counted, never fatal.

:func:`write_report` writes ``eval.json`` (every number, the skipped files with their reasons, per-class values),
``predictions.csv`` (one row per sample) and PNGs: ``confusion_matrix.png`` and ``per_class_accuracy.png`` of the
fused prediction (``per_class_ap.png`` for multi-label data) and, for audio-visual models,
``modality_comparison.png``. :func:`format_table` prints the side-by-side table.

:func:`plot_prediction` draws the ``avformer predict --png`` figure: a strip of frames, the log-mel spectrogram and
the top-k bars of one file.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avformer.data.dataset import AVDataset, DataConfig, LoadStats, make_loader
from avformer.data.manifest import Manifest
from avformer.eval.plots import plot_confusion_matrix, plot_modality_comparison, plot_per_class_accuracy
from avformer.metrics.classification import (
    ClassificationMetrics,
    counted_clips,
    mean_average_precision,
    per_class_from_confusion,
    view_label,
)
from avformer.models.loading import LoadedRun
from avformer.tasks.inference import input_modality, predict_batch
from avformer.utils.progress import track

__all__ = [
    "EvalResult",
    "evaluate",
    "format_groups",
    "format_table",
    "group_accuracy",
    "plot_prediction",
    "read_groups",
    "write_report",
]

# rows of the printed table, in order, with their labels
_SINGLE_ROWS = (("top1", "top-1"), ("top5", "top-5"), ("mean_class_acc", "mean class acc"))
_MULTI_ROWS = (("mAP", "mAP"), ("AUC", "AUC"), ("d_prime", "d'"))


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measured.

    Attributes:
        metrics: view (``fused`` / ``audio`` / ``video``, or the modality of a single encoder) -> metric -> value
            (:meth:`ClassificationMetrics.compute` keys).
        classes: class names in logit order.
        multilabel: multi-label metrics (mAP, AUC, d') instead of top-k accuracies.
        confusion: view -> (K, K) int64 confusion (single-label only).
        per_class: view -> (K,) accuracy (single-label) or AP (multi-label); NaN for classes absent from the data.
        rows: one dict per evaluated sample (id, label, per-view prediction and probability, has_audio/has_video).
        num_rows: rows of the manifest evaluated.
        skipped: ``(id, reason)`` of the files that could not be loaded.
        info: run, checkpoint, manifest, data settings, timings.
    """

    metrics: dict[str, dict[str, float]]
    classes: list[str]
    multilabel: bool
    confusion: dict[str, torch.Tensor] = field(default_factory=dict)
    per_class: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    num_rows: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def views(self) -> list[str]:
        return list(self.metrics)

    @property
    def num_loaded(self) -> int:
        return self.num_rows - len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``eval.json`` (NaN written as null)."""
        return _finite(
            {
                **self.info,
                "multilabel": self.multilabel,
                "num_rows": self.num_rows,
                "num_loaded": self.num_loaded,
                "num_skipped": len(self.skipped),
                "skipped": [{"id": i, "reason": r} for i, r in self.skipped],
                "metrics": self.metrics,
                "classes": list(self.classes),
                "per_class": {v: t.tolist() for v, t in self.per_class.items()},
                "confusion": {v: t.tolist() for v, t in self.confusion.items()},
            }
        )


def _finite(x: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _view_names(model: torch.nn.Module) -> list[str]:
    kind = input_modality(model)
    return ["fused", "audio", "video"] if kind == "av" else [kind]


@torch.no_grad()
def evaluate(
    run: LoadedRun,
    manifest: Manifest,
    data: DataConfig,
    *,
    batch_size: int = 8,
    workers: int = 0,
    device: str | torch.device = "cpu",
    multilabel: bool | None = None,
    progress: bool = False,
) -> EvalResult:
    """Score a run on every labelled row of ``manifest``.

    Args:
        run: the model and its classes (``manifest.classes`` must equal ``run.classes``: build the manifest with
            ``classes=run.classes``).
        manifest: the rows to evaluate; each must have a label.
        data: the data config (usually ``run.cfg.data`` with ``num_test_clips`` / ``num_test_crops`` set).
        batch_size: samples per forward pass.
        workers: DataLoader worker processes.
        device: where the model runs.
        multilabel: multi-label metrics; None = ``manifest.multilabel``.
        progress: show the batches done (a bar on a terminal, else a line every 30 s:
            :mod:`avformer.utils.progress`).

    Returns:
        An :class:`EvalResult`.
    """
    if list(manifest.classes) != list(run.classes):
        raise ValueError("manifest.classes must be the run's classes (read the manifest with classes=run.classes)")
    unlabeled = [r.id for r in manifest if not r.labels]
    if unlabeled:
        raise ValueError(f"{len(unlabeled)} rows have no label (first: {unlabeled[0]!r}); eval needs labelled rows")
    multilabel = manifest.multilabel if multilabel is None else multilabel
    if multilabel != manifest.multilabel:
        manifest = Manifest(list(manifest.rows), list(manifest.classes), multilabel, manifest.source)
    device = torch.device(device)
    model = run.model.to(device).eval()
    views = _view_names(model)
    num_classes = len(run.classes)
    acc = {v: ClassificationMetrics(num_classes, multi_label=multilabel) for v in views}
    scores_ml: dict[str, list[torch.Tensor]] = {v: [] for v in views}
    targets_ml: dict[str, list[torch.Tensor]] = {v: [] for v in views}
    dataset = AVDataset(manifest, data, train=False)
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    stats = LoadStats()
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for batch in track(loader, "eval", unit="batches", enabled=progress):
        stats.update(batch)
        n = int(batch["batch_size"])
        if n == 0:
            continue
        on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = {k: v.float().cpu() for k, v in predict_batch(model, on_device, multilabel=multilabel).items()}
        label = batch["label"]
        has = {"has_audio": batch.get("has_audio"), "has_video": batch.get("has_video")}
        present = {v: counted_clips(v, label, **has, multilabel=multilabel) for v in views}
        for v in views:
            keep = present[v]
            if keep.any():
                acc[v].update(out[v][keep], label[keep])
                if multilabel:
                    scores_ml[v].append(out[v][keep])
                    targets_ml[v].append(label[keep])
        probs = {v: (out[v].sigmoid() if multilabel else out[v].softmax(dim=-1)) for v in views}
        for i in range(n):
            row: dict[str, Any] = {"id": batch["id"][i]}
            if multilabel:
                row["labels"] = ";".join(run.classes[j] for j in torch.nonzero(label[i] > 0).flatten().tolist())
            else:
                row["label"] = run.classes[int(label[i])]
            for v in views:
                p, j = probs[v][i].max(dim=0)
                row[f"{v}_pred"] = run.classes[int(j)] if bool(present[v][i]) else ""
                row[f"{v}_prob"] = round(float(p), 6) if bool(present[v][i]) else ""
            for m in ("has_audio", "has_video"):
                if m in batch:
                    row[m] = bool(batch[m][i])
            rows.append(row)

    metrics = {v: acc[v].compute() for v in views}
    result = EvalResult(
        metrics=metrics,
        classes=list(run.classes),
        multilabel=multilabel,
        rows=rows,
        num_rows=len(manifest),
        skipped=list(stats.skipped),
    )
    for v in views:
        if multilabel:
            if scores_ml[v]:
                ap = mean_average_precision(torch.cat(scores_ml[v]), torch.cat(targets_ml[v]) > 0)
                result.per_class[v] = ap.per_class
        else:
            result.confusion[v] = acc[v].confusion.clone()
            result.per_class[v] = per_class_from_confusion(acc[v].confusion)
    result.info = {
        "checkpoint": str(run.checkpoint),
        "epoch": run.epoch,
        "model": run.cfg.model.name,
        "manifest": manifest.source,
        "num_test_clips": data.num_test_clips,
        "num_test_crops": data.num_test_crops if "video" in data.modalities else 1,
        "window_seconds": data.window_seconds,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return result


def format_table(result: EvalResult) -> str:
    """The side-by-side table: one column per view (``fused`` / ``audio-only`` / ``video-only``), one row per metric,
    plus the number of clips each view counted."""
    views = result.views
    rows = _MULTI_ROWS if result.multilabel else _SINGLE_ROWS
    width = max(len(label) for _, label in rows) + 2
    heads = [view_label(v) for v in views]
    col = max(8, *(len(h) + 2 for h in heads))
    lines = [" " * width + "".join(h.rjust(col) for h in heads)]
    for key, label in rows:
        cells = []
        for v in views:
            x = result.metrics[v].get(key, math.nan)
            cells.append(("-" if not math.isfinite(x) else f"{x:.4f}").rjust(col))
        lines.append(label.ljust(width) + "".join(cells))
    counts = [str(int(result.metrics[v].get("num_samples", 0))).rjust(col) for v in views]
    lines.append("clips".ljust(width) + "".join(counts))
    return "\n".join(lines)


def read_groups(spec: str) -> tuple[str, dict[str, str]]:
    """``CSV:COLUMN`` -> ``(COLUMN, {row id: value})`` from a CSV keyed by ``id`` or ``path`` (as in the manifest).

    Raises:
        ValueError: a malformed spec, or a CSV without the key or the column.
        FileNotFoundError: no such CSV.
    """
    path, sep, column = spec.rpartition(":")
    if not sep or not path or not column:
        raise ValueError(f"--by {spec!r}: expected CSV:COLUMN, e.g. ../shared/data/av-digits/val_meta.csv:condition")
    with Path(path).open(newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        key = next((k for k in ("id", "path") if k in fields), None)
        if key is None or column not in fields:
            raise ValueError(f"{path}: needs an 'id' or 'path' column and {column!r}; it has {fields}")
        return column, {r[key]: r[column] for r in reader}


def group_accuracy(result: EvalResult, groups: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Top-1 of every view within each group of rows (single-label): ``{group: {"n": rows, view: top-1}}``.

    A view counts the rows where its stream is present (as the overall metrics do); rows whose id is not in
    ``groups`` fall in the group ``"?"``. Groups are sorted by name.
    """
    if result.multilabel:
        raise ValueError("per-group accuracy is for single-label data")
    hits: dict[str, dict[str, list[bool]]] = {}
    for row in result.rows:
        g = groups.get(str(row["id"]), "?")
        per_view = hits.setdefault(g, {v: [] for v in result.views})
        for v in result.views:
            if row[f"{v}_pred"] != "":
                per_view[v].append(row[f"{v}_pred"] == row["label"])
    out: dict[str, dict[str, Any]] = {}
    for g in sorted(hits):
        out[g] = {"n": max(len(h) for h in hits[g].values())}
        out[g] |= {v: (sum(h) / len(h) if h else math.nan) for v, h in hits[g].items()}
    return out


def format_groups(column: str, table: Mapping[str, Mapping[str, Any]], views: list[str]) -> str:
    """The per-group top-1 table (one row per group, one column per view)."""
    width = max(len(column), *(len(g) for g in table)) + 2
    heads = [view_label(v) for v in views]
    col = max(8, *(len(h) + 2 for h in heads))
    lines = [f"top-1 by {column}", column.ljust(width) + "n".rjust(6) + "".join(h.rjust(col) for h in heads)]
    for g, cells in table.items():
        vals = ["-" if not math.isfinite(cells[v]) else f"{cells[v]:.4f}" for v in views]
        lines.append(g.ljust(width) + str(cells["n"]).rjust(6) + "".join(x.rjust(col) for x in vals))
    return "\n".join(lines)


def write_report(
    result: EvalResult, out_dir: str | Path, *, png_dir: str | Path | None = None, name: str | None = None
) -> list[Path]:
    """Write ``eval.json``, ``predictions.csv`` into ``out_dir`` and the PNGs into ``png_dir`` (default
    ``out_dir``); ``name`` (the run and its model) heads each chart. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = Path(png_dir) if png_dir is not None else out
    pngs.mkdir(parents=True, exist_ok=True)
    written = []
    path = out / "eval.json"
    path.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    written.append(path)
    path = out / "predictions.csv"
    columns = list(dict.fromkeys(k for r in result.rows for k in r)) or ["id"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.rows)
    written.append(path)

    main = result.views[0]  # "fused", or the single encoder's modality
    if result.num_loaded == 0:
        return written
    head = f"{name}, " if name else ""
    if result.multilabel:
        if main in result.per_class:
            ap = result.per_class[main]
            title = f"{head}{view_label(main)}: per-class AP"
            written.append(plot_per_class_accuracy(ap, result.classes, pngs / "per_class_ap.png", title=title))
        keys = ("mAP", "AUC")
    else:
        written.append(
            plot_confusion_matrix(
                result.confusion[main],
                result.classes,
                pngs / "confusion_matrix.png",
                title=f"{head}{view_label(main)}: confusion",
            )
        )
        written.append(
            plot_per_class_accuracy(
                result.per_class[main],
                result.classes,
                pngs / "per_class_accuracy.png",
                title=f"{head}{view_label(main)}: per-class accuracy",
            )
        )
        keys = ("top1", "top5", "mean_class_acc")
    if len(result.views) > 1:
        comparison = {view_label(v): {k: result.metrics[v].get(k, math.nan) for k in keys} for v in result.views}
        written.append(
            plot_modality_comparison(
                comparison, pngs / "modality_comparison.png", title=f"{head}fused vs audio-only vs video-only"
            )
        )
    return written


def plot_prediction(
    out_png: str | Path,
    top: Sequence[tuple[str, float]],
    *,
    frames: np.ndarray | None = None,
    spectrogram: np.ndarray | None = None,
    title: str = "",
    num_frames: int = 8,
    dpi: int = 100,
) -> Path:
    """One file's prediction: a strip of frames, the log-mel spectrogram and the top-k bars.

    Args:
        out_png: where to write.
        top: ``(label, probability)`` best first.
        frames: (T, H, W, 3) uint8; up to ``num_frames`` evenly spaced ones are shown. None: "no video".
        spectrogram: (F, T) log-mel (low frequencies in row 0). None: "no audio".
        title: figure title (e.g. the file name).
        num_frames: frames in the strip.
        dpi: pixels per inch (the figure is 10 × 7.5 in).
    """
    fig = Figure(figsize=(10.0, 7.5), dpi=dpi, layout="constrained")  # Agg canvas, never pyplot (see eval.plots)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 2, height_ratios=(1.0, 1.0, 1.2), width_ratios=(1.0, 1.0))
    ax_frames = fig.add_subplot(grid[0, :])
    if frames is not None and len(frames):
        idx = np.linspace(0, len(frames) - 1, min(num_frames, len(frames))).round().astype(int)
        strip = np.concatenate([frames[i] for i in idx], axis=1)  # (H, n*W, 3)
        ax_frames.imshow(strip, interpolation="nearest")
        ax_frames.set_title(f"{len(idx)} of {len(frames)} frames", fontsize=9)
    else:
        ax_frames.text(0.5, 0.5, "no video", ha="center", va="center", fontsize=12, color="gray")
    ax_frames.set_axis_off()

    ax_spec = fig.add_subplot(grid[1, :])
    if spectrogram is not None and spectrogram.size:
        image = ax_spec.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        fig.colorbar(image, ax=ax_spec, pad=0.01, aspect=15)
        ax_spec.set_xlabel("frame")
        ax_spec.set_ylabel("mel bin")
        ax_spec.set_title("log-mel spectrogram (model input)", fontsize=9)
    else:
        ax_spec.text(0.5, 0.5, "no audio", ha="center", va="center", fontsize=12, color="gray")
        ax_spec.set_axis_off()

    ax_bar = fig.add_subplot(grid[2, :])
    if top:
        labels = [name for name, _ in top][::-1]
        values = [p for _, p in top][::-1]
        bars = ax_bar.barh(np.arange(len(top)), values, color="tab:blue")
        ax_bar.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
        ax_bar.set_yticks(np.arange(len(top)), labels, fontsize=9)
        ax_bar.set_xlim(0.0, 1.1)
        ax_bar.set_xlabel("probability")
    else:
        ax_bar.text(0.5, 0.5, "no prediction", ha="center", va="center", fontsize=12, color="gray")
        ax_bar.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi)
    return out
