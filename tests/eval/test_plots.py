"""Report plots: each writes a valid PNG of the expected pixel size, without opening a window."""

from __future__ import annotations

import csv
import struct
import sys
from pathlib import Path

import pytest
import torch

from avformer.eval.plots import (
    confusion_figsize,
    plot_confusion_matrix,
    plot_modality_comparison,
    plot_per_class_accuracy,
    plot_training_curves,
)
from avformer.metrics.classification import confusion_matrix, per_class_accuracy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the 8-byte PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _rows(num_epochs: int = 4, steps_per_epoch: int = 5) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    step = 0
    for epoch in range(num_epochs):
        for _ in range(steps_per_epoch):
            step += 1
            rows.append({"epoch": epoch, "step": step, "train_loss": 2.0 / step, "lr": 1e-3 * min(1, step / 5)})
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "val_loss": 1.5 - 0.1 * epoch,
                "val_top1": 0.2 + 0.1 * epoch,
                "val_mean_class_acc": 0.18 + 0.1 * epoch,
            }
        )
    return rows


def test_training_curves_from_rows_and_csv(tmp_path: Path) -> None:
    rows = _rows()
    out = plot_training_curves(rows, tmp_path / "curves.png", figsize=(12, 4), dpi=50)
    assert png_size(out) == (600, 200)

    csv_path = tmp_path / "metrics.csv"
    fields = ["epoch", "step", "train_loss", "lr", "val_loss", "val_top1", "val_mean_class_acc"]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)  # missing values become empty cells
        writer.writeheader()
        writer.writerows(rows)
    out = plot_training_curves(csv_path, tmp_path / "sub" / "curves_csv.png")
    assert png_size(out) == (1500, 400)  # default 15 × 4 in at 100 dpi


def test_training_curves_before_any_validation(tmp_path: Path) -> None:
    rows = [{"step": 1, "loss": 0.0, "lr": 0.0, "note": "warmup"}, {"step": 2, "loss": 1.0, "lr": 1e-4}]
    assert png_size(plot_training_curves(rows, tmp_path / "early.png", dpi=40)) == (600, 160)
    assert png_size(plot_training_curves([], tmp_path / "empty.png", dpi=40)) == (600, 160)


@pytest.mark.parametrize("num_classes", [10, 31, 300])
def test_confusion_matrix_sizes(tmp_path: Path, num_classes: int) -> None:
    target = torch.randint(0, num_classes, (2000,))
    pred = torch.where(torch.rand(2000) < 0.6, target, torch.randint(0, num_classes, (2000,)))
    cm = confusion_matrix(pred, target, num_classes)
    names = [f"class_{i}" for i in range(num_classes)]
    dpi = 30 if num_classes == 300 else 60
    out = plot_confusion_matrix(cm, names, tmp_path / f"cm{num_classes}.png", dpi=dpi)
    w, h = confusion_figsize(num_classes)
    assert png_size(out) == (round(w * dpi), round(h * dpi))


def test_confusion_matrix_counts_absent_class_and_explicit_size(tmp_path: Path) -> None:
    cm = torch.tensor([[3, 1, 0], [0, 0, 0], [1, 0, 5]])  # class 1 absent: a blank row when normalised
    names = ["dog", "cat", "car"]
    assert png_size(plot_confusion_matrix(cm, names, tmp_path / "n.png", figsize=(4, 3), dpi=50)) == (200, 150)
    assert png_size(plot_confusion_matrix(cm.numpy(), names, tmp_path / "c.png", normalize=False, dpi=20)) == (120, 120)
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(cm, names[:2], tmp_path / "bad.png")


@pytest.mark.parametrize("num_classes", [10, 300])
def test_per_class_accuracy(tmp_path: Path, num_classes: int) -> None:
    target = torch.randint(0, num_classes, (3000,))
    pred = torch.where(torch.rand(3000) < 0.5, target, torch.randint(0, num_classes, (3000,)))
    acc = per_class_accuracy(pred, target, num_classes)
    acc[0] = float("nan")  # an absent class is left out
    names = [f"c{i}" for i in range(num_classes)]
    out = plot_per_class_accuracy(acc, names, tmp_path / "acc.png", figsize=(8, 3), dpi=50)
    assert png_size(out) == (400, 150)
    assert png_size(plot_per_class_accuracy(acc.tolist(), names, tmp_path / "acc2.png", dpi=20))[1] == 90


def test_modality_comparison(tmp_path: Path) -> None:
    flat = plot_modality_comparison({"audio": 0.41, "video": torch.tensor(0.33), "fused": 0.52}, tmp_path / "m.png")
    assert png_size(flat) == (600, 400)
    nested = {"audio": {"top1": 0.41, "top5": 0.7}, "video": {"top1": 0.33, "top5": 0.6}, "fused": {"top1": 0.5}}
    assert png_size(plot_modality_comparison(nested, tmp_path / "g.png", figsize=(5, 5), dpi=40)) == (200, 200)
    with pytest.raises(ValueError):
        plot_modality_comparison({"audio": 0.4, "video": {"top1": 0.3}}, tmp_path / "bad.png")


def test_plots_do_not_touch_pyplot(tmp_path: Path) -> None:
    plot_modality_comparison({"audio": 0.1}, tmp_path / "x.png")
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []  # nothing registered with pyplot's figure manager


def test_training_curves_trainer_files_combined(tmp_path: Path) -> None:
    # the trainer's two files: train_log.csv (per logged step) and metrics.csv (per epoch, val_* columns)
    step_rows = [{"step": s, "epoch": s // 10, "loss": 3.0 / s, "lr": 1e-4, "clips_per_s": 50.0} for s in range(1, 31)]
    epoch_rows = [
        {
            "epoch": e,
            "step": 10 * e,
            "train_loss": 3.0 / (10 * e),
            "lr": 1e-4,
            "val_mAP": 0.1 * e,
            "val_AUC": 0.6,
            "val_d_prime": 0.4 * e,
            "val_num_samples": 1000,
            "val_mAP_excluded_classes": 2,
        }
        for e in (1, 2, 3)
    ]
    out = plot_training_curves(step_rows + epoch_rows, tmp_path / "both.png", dpi=30)
    assert png_size(out) == (450, 120)


def _captured(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Figures given to the PNG writer, so a test can read what was drawn."""
    from avformer.eval import plots

    figures: list[object] = []
    real = plots._save

    def keep(fig: object, out_png: str | Path) -> Path:
        figures.append(fig)
        return real(fig, out_png)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def test_training_curves_name_views_and_loss_terms_as_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Legends say fused / audio-only / video-only and what the training loss sums; equal curves stay visible;
    a top-5 saturated at 1.0 is left out with a note; the title names the run."""
    rows = []
    for epoch in range(1, 4):
        ce, avc, imc = 2.0 / epoch, 0.3 / epoch, 0.2 / epoch
        acc = 0.3 + 0.1 * epoch
        rows.append(
            {
                "epoch": epoch,
                "step": 10 * epoch,
                "train_loss": ce + avc + imc,
                "train_ce": ce,
                "train_avc": avc,
                "train_imc": imc,
                "train_top1": 0.5,
                "val_loss": 1.0 / epoch,
                "val_top1": acc,
                "val_mean_class_acc": acc,  # equal to top-1 on balanced data
                "val_top5": 1.0,
                "val_audio_top1": acc - 0.1,
                "val_video_top1": acc - 0.2,
            }
        )
    figures = _captured(monkeypatch)
    plot_training_curves(rows, tmp_path / "c.png", dpi=30, title="demo_fused (mmt_tiny)")
    fig = figures[-1]
    ax_loss, _, ax_val = fig.axes[:3]  # type: ignore[attr-defined]
    assert fig._suptitle.get_text() == "demo_fused (mmt_tiny)"  # type: ignore[attr-defined]
    loss_labels = {line.get_label() for line in ax_loss.get_lines()}
    assert loss_labels == {"train loss = ce + avc + imc", "val loss (ce only)"}
    val_lines = {line.get_label(): line for line in ax_val.get_lines()}
    assert set(val_lines) == {"val top-1", "val mean class acc.", "val top-1, audio-only", "val top-1, video-only"}
    styles = {(line.get_linestyle(), line.get_marker()) for line in val_lines.values()}
    assert len(styles) == len(val_lines)  # top-1 is not hidden under the equal mean class accuracy
    notes = [t.get_text() for t in ax_val.texts]
    assert notes == ["val top-5 = 1.0 throughout (not drawn)"]
