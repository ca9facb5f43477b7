"""Report plots written as PNG files: training curves, confusion matrix, per-class accuracy, modality comparison.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas directly, never through ``pyplot``: no
window opens, no global backend is switched under the user's feet, and nothing leaks between calls. Every function
takes the output path, writes one PNG of a fixed, predictable pixel size (``figsize × dpi``, no tight bounding box)
and returns the path.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avformer.metrics.classification import VIEW_LABELS

__all__ = [
    "confusion_figsize",
    "plot_confusion_matrix",
    "plot_modality_comparison",
    "plot_per_class_accuracy",
    "plot_training_curves",
]

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]

_MAX_ANNOTATED = 30  # classes above which confusion cells carry no text
_MAX_TICK_LABELS = 60  # class names shown on an axis; above, every n-th


def _new_figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")  # fits labels inside the fixed canvas
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=fig.dpi)  # no bbox_inches="tight": the pixel size stays figsize × dpi
    return out


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


# ---- training curves ---------------------------------------------------------------------------


def _read_rows(metrics: str | Path | Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Rows as {column: float}, dropping empty and non-numeric cells."""
    if isinstance(metrics, str | Path):
        with Path(metrics).open(newline="") as f:
            raw: Sequence[Mapping[str, Any]] = list(csv.DictReader(f))
    else:
        raw = metrics
    rows = []
    for r in raw:
        row = {}
        for k, v in r.items():
            if k is None or v is None or v == "":
                continue
            try:
                row[str(k).strip()] = float(v)
            except (TypeError, ValueError):
                continue
        rows.append(row)
    return rows


def _series(rows: list[dict[str, float]], x_key: str | None, y_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(rows):
        if y_key in r and math.isfinite(r[y_key]) and (x_key is None or x_key in r):
            xs.append(r[x_key] if x_key is not None else float(i))
            ys.append(r[y_key])
    order = sorted(range(len(xs)), key=xs.__getitem__)  # rows of two files concatenated: draw left to right
    return [xs[i] for i in order], [ys[i] for i in order]


def _last_step_of_epoch(rows: list[dict[str, float]]) -> dict[float, float]:
    last: dict[float, float] = {}
    for r in rows:
        if "epoch" in r and "step" in r:
            last[r["epoch"]] = max(last.get(r["epoch"], r["step"]), r["step"])
    return last


def _is_bookkeeping(col: str) -> bool:
    """Counts and timings logged beside the validation metrics (``val_num_samples``, ``val_seconds``, ...)."""
    name = col.lower()
    return any(part in name for part in ("num_", "excluded", "seconds", "time", "per_s"))


def _is_val(col: str) -> bool:
    return col.startswith(("val_", "val/", "val.", "valid_", "eval_", "test_"))


def plot_training_curves(
    metrics: str | Path | Sequence[Mapping[str, Any]],
    out_png: str | Path,
    *,
    figsize: tuple[float, float] = (15.0, 4.0),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Three panels: losses, learning rate, validation metrics; ``title`` (e.g. the run and its model) above them.

    The input is a metrics CSV (or its rows as dicts): one row per logging event, numeric cells, empty cells where
    a value was not logged. Columns are read by name:

    - x axis: ``step`` when present, else ``epoch``, else the row number; validation metrics use ``epoch`` when
      present; validation losses share the loss panel's x axis (an epoch-only row is placed at that epoch's
      last step);
    - losses: every column whose name contains ``loss`` (validation losses drawn with markers);
    - learning rate: ``lr`` and columns starting with ``lr`` (``lr_group0``, ...);
    - validation metrics: other columns starting with ``val_`` / ``val/`` / ``valid_`` / ``eval_`` / ``test_``
      (counts and timings such as ``val_num_samples`` are skipped; metrics outside [0, 1], such as ``val_d_prime``,
      go on a second y axis).

    This reads both files of :mod:`avformer.train.logging`: ``metrics.csv`` (one row per epoch) and
    ``train_log.csv`` (one row per logged step); pass the rows of both, concatenated, for the full picture.

    Unknown columns (``time``, ``samples_per_s``, ...) are ignored. A panel with nothing to show says so, so an
    early call (before the first validation) still writes a complete figure.

    Legends name views as the tables do (``val_audio_top1`` -> "val top-1, audio-only"). The training loss is
    named with the logged terms it sums (``train_ce`` + ``train_avc`` ..., found as the columns whose sum is
    ``train_loss``), and the validation loss as the classification loss when those terms include ``ce``. Each
    validation curve has its own line style, so two curves with equal values (top-1 and mean class accuracy on
    balanced data) stay visible; a top-k curve that is 1.0 throughout (top-5 of a handful of classes) is left out
    and the panel says so.

    Returns:
        ``out_png`` as a Path.
    """
    rows = _read_rows(metrics)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    x_key = "step" if "step" in columns else ("epoch" if "epoch" in columns else None)
    epoch_key = "epoch" if "epoch" in columns else x_key
    x_label = x_key or "log row"

    losses = [c for c in columns if "loss" in c.lower()]
    lrs = [c for c in columns if c == "lr" or c.startswith(("lr_", "lr/"))]
    vals = [c for c in columns if _is_val(c) and c not in losses and not _is_bookkeeping(c)]

    saturated = [c for c in vals if _is_topk(c) and (ys := _series(rows, epoch_key, c)[1]) and min(ys) >= 0.9995]
    vals = [c for c in vals if c not in saturated]
    names = _legend_names(rows, losses + vals + saturated)

    fig = _new_figure(figsize, dpi)
    ax_loss, ax_lr, ax_val = fig.subplots(1, 3)
    if title:
        fig.suptitle(title, fontsize=10)

    for col in losses:
        val = _is_val(col)
        xs, ys = _series(rows, x_key, col)
        if not xs and x_key == "step" and epoch_key == "epoch":  # validation rows logged with an epoch only
            xs, ys = _series(rows, "epoch", col)
            xs = [_last_step_of_epoch(rows).get(x, x) for x in xs]
        if xs:
            ax_loss.plot(xs, ys, marker="o" if val else None, markersize=3, label=names[col])
    _finish_panel(ax_loss, "loss", x_label, bool(losses))
    if losses and all(y > 0 for c in losses for y in _series(rows, None, c)[1]):
        ax_loss.set_yscale("log")

    for col in lrs:
        xs, ys = _series(rows, x_key, col)
        ax_lr.plot(xs, ys, label=col)
    _finish_panel(ax_lr, "learning rate", x_label, bool(lrs))
    if lrs:
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))

    # Fractions (accuracy, mAP, AUC) share the left axis; metrics on other scales (d', ranks, %) go on a right axis.
    series = {col: _series(rows, epoch_key, col) for col in vals}
    unit = [c for c in vals if all(0.0 <= y <= 1.0 for y in series[c][1])]
    other = [c for c in vals if c not in unit]
    for i, col in enumerate(unit):
        style = _STYLES[i % len(_STYLES)]
        ax_val.plot(*series[col], marker=style[1], markersize=4, linestyle=style[0], label=names[col], color=f"C{i}")
    _finish_panel(ax_val, "validation", epoch_key or "log row", bool(vals))
    if saturated:
        note = ", ".join(names[c] for c in saturated) + " = 1.0 throughout (not drawn)"
        ax_val.text(0.01, 0.01, note, transform=ax_val.transAxes, fontsize=7, color="gray", va="bottom")
    if other:
        ax_right = ax_val.twinx() if unit else ax_val
        for i, col in enumerate(other, start=len(unit)):
            ax_right.plot(*series[col], marker="s", markersize=3, linestyle="--", label=names[col], color=f"C{i}")
        if unit:
            ax_right.legend(fontsize=7, loc="lower right")
        else:
            ax_val.legend(fontsize=7, loc="best")

    return _save(fig, out_png)


_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))  # (line, marker) per validation curve
_METRIC_WORDS = {"top1": "top-1", "top5": "top-5", "mean_class_acc": "mean class acc.", "loss": "loss"}


def _is_topk(col: str) -> bool:
    return col.removeprefix("val_").split("_")[-1] in {"top5", "top3", "top10"}


def _loss_terms(rows: list[dict[str, float]]) -> list[str]:
    """The ``train_*`` columns whose sum is ``train_loss`` in every row that has them all (the task's weighted
    terms), smallest such set; [] when none is found (the loss is then named plainly)."""
    full = [r for r in rows if "train_loss" in r]
    if not full:
        return []
    cand = [c for c in full[-1] if c.startswith("train_") and c != "train_loss" and "top" not in c][:10]
    for size in range(1, len(cand) + 1):
        for combo in itertools.combinations(cand, size):
            have = [r for r in full if all(c in r for c in combo)]
            if have and all(
                abs(sum(r[c] for c in combo) - r["train_loss"]) <= 1e-4 * max(1.0, abs(r["train_loss"])) for r in have
            ):
                return list(combo)
    return []


def _legend_names(rows: list[dict[str, float]], cols: Sequence[str]) -> dict[str, str]:
    """Legend text per column: views and metrics as the report's tables name them, the loss with its terms."""
    terms = [t.removeprefix("train_") for t in _loss_terms(rows)]
    names: dict[str, str] = {}
    for col in cols:
        if col == "train_loss" and len(terms) > 1:
            names[col] = "train loss = " + " + ".join(terms)
        elif col == "val_loss" and len(terms) > 1 and "ce" in terms:
            names[col] = "val loss (ce only)"
        elif col.startswith("val_"):
            rest = col.removeprefix("val_")
            view, _, metric = rest.partition("_")
            if view in VIEW_LABELS and metric in _METRIC_WORDS:
                names[col] = f"val {_METRIC_WORDS[metric]}, {VIEW_LABELS[view]}"
            else:
                names[col] = f"val {_METRIC_WORDS.get(rest, rest)}"
        else:
            names[col] = col.replace("_", " ", 1)
    return names


def _finish_panel(ax: Any, title: str, x_label: str, has_data: bool) -> None:
    ax.set_title(title)
    ax.set_xlabel(x_label)
    if has_data:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="gray")


# ---- confusion matrix --------------------------------------------------------------------------


def confusion_figsize(num_classes: int) -> tuple[float, float]:
    """Default square figure size (inches) for a K-class confusion matrix: 6 in for K ≤ 10, 24 in from K ≈ 220."""
    side = min(max(6.0, 2.5 + 0.1 * num_classes), 24.0)
    return side, side


def _tick_positions(num: int) -> np.ndarray:
    step = max(1, math.ceil(num / _MAX_TICK_LABELS))
    return np.arange(0, num, step)


def _tick_fontsize(num_shown: int) -> float:
    return float(min(10.0, max(4.0, 300.0 / max(num_shown, 1))))


def plot_confusion_matrix(
    cm: torch.Tensor | np.ndarray,
    class_names: Sequence[str],
    out_png: str | Path,
    normalize: bool = True,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Heat map of a (K, K) confusion matrix (rows: true class, columns: predicted class).

    Args:
        cm: (K, K) counts, e.g. from :func:`avformer.metrics.classification.confusion_matrix`.
        class_names: K names.
        out_png: where to write.
        normalize: divide each row by its count (each row then shows recall and confusions of one true class);
            rows of absent classes stay blank.
        figsize: inches; default :func:`confusion_figsize` (grows with K).
        dpi: pixels per inch.
        title: default "confusion matrix (row-normalised)" or "(counts)".

    Readability from 10 to 300 classes: cells carry their value only up to 30 classes, and above 60 classes
    only every n-th class name is shown on the axes.
    """
    m = _to_numpy(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"cm must be (K, K), got shape {m.shape}")
    num = m.shape[0]
    if len(class_names) != num:
        raise ValueError(f"{len(class_names)} class names for a {num}-class confusion matrix")
    if normalize:
        support = m.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(support > 0, m / support, np.nan)

    fig = _new_figure(figsize or confusion_figsize(num), dpi)
    ax = fig.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(float(np.nanmax(m)) if np.isfinite(m).any() else 1.0, 1.0)
    image = ax.imshow(np.ma.masked_invalid(m), cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, aspect=40, pad=0.02)

    ticks = _tick_positions(num)
    fontsize = _tick_fontsize(len(ticks))
    names = [class_names[i] for i in ticks]
    ax.set_xticks(ticks, names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"confusion matrix ({'row-normalised' if normalize else 'counts'})")

    if num <= _MAX_ANNOTATED:
        cell_font = min(9.0, max(4.0, 120.0 / num))
        for i in range(num):
            for j in range(num):
                v = m[i, j]
                if not np.isfinite(v) or (normalize and v == 0):
                    continue
                text = f"{v:.2f}" if normalize else f"{v:.0f}"
                color = "white" if v > 0.6 * vmax else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=cell_font, color=color)

    return _save(fig, out_png)


# ---- per-class accuracy ------------------------------------------------------------------------


def plot_per_class_accuracy(
    acc: ArrayLike,
    class_names: Sequence[str],
    out_png: str | Path,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    title: str = "per-class accuracy",
) -> Path:
    """Bars of per-class accuracy sorted from best to worst, with the mean as a line.

    Args:
        acc: (K,) accuracies in [0, 1] (NaN for classes absent from the evaluated set: left out, and counted in
            the title), e.g. from :func:`avformer.metrics.classification.per_class_accuracy`.
        class_names: K names.
        figsize: inches; default widens with K (6 to 24 in wide, 4.5 in high).
    """
    a = _to_numpy(acc)
    if a.ndim != 1 or len(class_names) != a.shape[0]:
        raise ValueError(f"acc must be (K,) with K = len(class_names), got {a.shape} and {len(class_names)} names")
    present = np.flatnonzero(np.isfinite(a))
    order = present[np.argsort(-a[present], kind="stable")]
    values = a[order]
    names = [class_names[i] for i in order]

    num = len(order)
    fig = _new_figure(figsize or (min(max(6.0, 2.0 + 0.12 * num), 24.0), 4.5), dpi)
    ax = fig.add_subplot(1, 1, 1)
    xs = np.arange(num)
    ax.bar(xs, values, width=0.85 if num <= 100 else 1.0, color="tab:blue")
    if num:
        mean = float(values.mean())
        ax.axhline(mean, color="tab:red", linewidth=1, linestyle="--", label=f"mean {mean:.3f}")
        ax.legend(fontsize=8, loc="upper right")
    ticks = _tick_positions(num)
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=_tick_fontsize(len(ticks)))
    ax.set_xlim(-0.6, max(num, 1) - 0.4)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy")
    missing = a.shape[0] - num
    ax.set_title(title + (f" ({missing} classes absent)" if missing else ""))
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out_png)


# ---- modality comparison -----------------------------------------------------------------------


def plot_modality_comparison(
    results: Mapping[str, float | torch.Tensor | Mapping[str, float]],
    out_png: str | Path,
    *,
    metric: str = "accuracy",
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
    title: str = "modality comparison",
) -> Path:
    """Bars comparing models or modalities, e.g. ``{"audio": 0.41, "video": 0.33, "fused": 0.52}``.

    Args:
        results: modality → one number (one bar each, labelled with its value), or modality → {metric: number}
            (grouped bars, one group per metric, e.g. ``{"audio": {"top1": .4, "top5": .7}, ...}``).
        metric: y-axis label for single numbers.
    """
    if not results:
        raise ValueError("results is empty")
    modalities = list(results)
    nested = [isinstance(v, Mapping) for v in results.values()]
    if any(nested) and not all(nested):
        raise ValueError("results must map every modality to a number, or every modality to a {metric: number}")

    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    colors = [f"C{i}" for i in range(len(modalities))]
    if all(nested):
        metrics = list(dict.fromkeys(k for v in results.values() for k in v))  # type: ignore[union-attr]
        width = 0.8 / len(modalities)
        for i, name in enumerate(modalities):
            row = results[name]
            assert isinstance(row, Mapping)
            ys = [float(row.get(k, math.nan)) for k in metrics]
            xs = np.arange(len(metrics)) + (i - (len(modalities) - 1) / 2) * width
            bars = ax.bar(xs, ys, width=width, label=name, color=colors[i])
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_xticks(np.arange(len(metrics)), metrics)
        ax.legend(fontsize=8)
        ax.set_ylabel("value")
    else:
        ys = [float(v) for v in results.values()]  # type: ignore[arg-type]
        bars = ax.bar(np.arange(len(modalities)), ys, color=colors)
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
        ax.set_xticks(np.arange(len(modalities)), modalities)
        ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.margins(y=0.15)
    return _save(fig, out_png)
