"""One run, one number per view: the training log, ``report.md`` and ``avformer eval`` agree to the printed digit.

A tiny MMT run is trained for one epoch (so the final model, ``last.pt``, is what the last ``metrics.csv`` row and the
report score) on a validation set that holds a video-only clip (an MP4 without an audio track) and an audio-only clip
(a WAV). Each view counts the clips the rule of :mod:`avformer.metrics.classification` says it counts: the fused view
every clip, the audio-only view the clips with audio, the video-only view the clips with video. The three places
must print the same top-1 for every view, and ``report.md`` and ``eval`` the same clip counts. An audio-only model's
report names its one row ``audio-only``.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from avformer.cli import eval as eval_cli
from avformer.cli import train
from avformer.metrics.classification import ClassificationMetrics, counted_clips, hide_absent, score_outputs
from tests.cli._tiny_run import make_synth, write_video_only, write_wav

ROOT = Path(__file__).resolve().parents[1]
SMOKE_AV = ROOT / "configs" / "smoke" / "tiny_av.yaml"
SC_MAT = ROOT / "configs" / "experiment" / "speech_commands_mat_tiny.yaml"

# metrics.csv column of each view's top-1 (an AV model); a single encoder's own view is ``val_top1``
CSV_KEYS = {"fused": "val_top1", "audio-only": "val_audio_top1", "video-only": "val_video_top1"}
EVAL_KEYS = {"fused": "fused", "audio-only": "audio", "video-only": "video"}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(synth folder, val manifest): 6 AV clips, one video-only MP4 and one audio-only WAV (absolute paths)."""
    base = tmp_path_factory.mktemp("agree")
    synth = make_synth(base / "synth").parent
    clips = _rows(synth / "manifest.csv")
    val = base / "val.csv"
    with val.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows([str(synth / r["path"]), r["label"]] for r in clips[:6])
        w.writerow([str(write_video_only(base / "silent.mp4", 0)), clips[0]["label"]])
        w.writerow([str(write_wav(base / "sound.wav", index=1)), clips[1]["label"]])
    return synth, val


def _report_tables(report: str) -> tuple[dict[str, tuple[str, int | None]], dict[str, str]]:
    """(``Validation`` section: view label -> (top-1 as printed, clips; None when not given), ``Final metrics
    row``: metric -> value)."""
    views: dict[str, tuple[str, int | None]] = {}
    final: dict[str, str] = {}
    section = ""
    for line in report.splitlines():
        if line.startswith("## "):
            section = line
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells or cells[0] in ("view", "metric") or set(cells[0]) <= {"-"}:
            continue
        if section.startswith("## Validation"):
            views[cells[0]] = (cells[1], int(cells[2]) if len(cells) > 2 else None)
        elif section.startswith("## Final metrics row"):
            final[cells[0]] = cells[1]
    return views, final


def _eval_table(text: str) -> dict[str, tuple[str, int]]:
    """``avformer eval``'s printed table: view label -> (top-1 as printed, clips)."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("top-1"))
    header = lines[top - 1].split()
    top1 = lines[top].split()[1:]
    count = next(line for line in lines[top:] if line.startswith(("samples", "clips"))).split()[1:]
    assert len(header) == len(top1) == len(count), text
    return {v: (t, int(n)) for v, t, n in zip(header, top1, count, strict=True)}


def _train(out: Path, args: list[str]) -> dict[str, str]:
    assert train.main(["--out", str(out), *args]) == 0
    rows = _rows(out / "metrics.csv")
    assert len(rows) == 1
    return rows[-1]


def _eval(
    run: Path, val: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, tuple[str, int]], dict[str, Any]]:
    capsys.readouterr()
    out = run / "eval_last"
    assert eval_cli.main([str(run), "--data", str(val), "--checkpoint", "last", "--out", str(out)]) == 0
    printed = _eval_table(capsys.readouterr().out)
    return printed, json.loads((out / "eval.json").read_text())


def test_log_report_and_eval_agree_for_every_view(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synth, val = data
    run = tmp_path / "run"
    args = ["--config", str(SMOKE_AV), f"train_manifest={synth / 'train.csv'}", f"val_manifest={val}"]
    args += [f"classes={synth / 'classes.txt'}", "train.epochs=1"]
    row = _train(run, args)
    views, final = _report_tables((run / "report.md").read_text())
    printed, report = _eval(run, val, capsys)

    # the rule: fused counts all 8 clips, audio-only the 7 with audio, video-only the 7 with video
    expected = {"fused": 8, "audio-only": 7, "video-only": 7}
    disagree: list[str] = []
    for label, n in expected.items():
        ev = report["metrics"][EVAL_KEYS[label]]
        on_screen = printed.get(label, printed.get(EVAL_KEYS[label], ("?", -1)))  # looked up by name, checked below
        numbers = {
            "metrics.csv": f"{float(row[CSV_KEYS[label]]):.4f}",
            "report.md validation": views[label][0],
            "report.md final row": final[CSV_KEYS[label].removeprefix("val_")],
            "eval (printed)": on_screen[0],
            "eval.json": f"{ev['top1']:.4f}",
        }
        counts = {"report.md": views[label][1], "eval (printed)": on_screen[1], "eval.json": ev["num_samples"]}
        if len(set(numbers.values())) != 1 or set(counts.values()) != {n}:
            disagree.append(f"{label}: top-1 {numbers}, clips {counts} (expected {n})")
    assert not disagree, "\n".join(disagree)
    # one name per view everywhere
    assert list(views) == list(printed) == ["fused", "audio-only", "video-only"]
    # the other fused metrics of the last row agree with eval too
    for key in ("top5", "mean_class_acc"):
        assert f"{float(row[f'val_{key}']):.4f}" == final[key] == f"{report['metrics']['fused'][key]:.4f}", key


def test_audio_only_model_names_its_row_audio_only(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synth, val = data
    run = tmp_path / "audio_run"
    args = ["--config", str(SC_MAT), f"train_manifest={synth / 'train.csv'}", f"val_manifest={val}"]
    args += [f"classes={synth / 'classes.txt'}", "data.audio={num_mel_bins: 32, mean: -8.0, std: 4.0}"]
    args += ["model.overrides.input_size=[32, 100]", "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4"]
    row = _train(run, args)
    text = (run / "report.md").read_text()
    views, _ = _report_tables(text)
    assert list(views) == ["audio-only"], text
    assert not re.search(r"^\| fused \|", text, flags=re.MULTILINE)
    printed, report = _eval(run, val, capsys)
    assert list(printed) == ["audio-only"]
    # the video-only MP4 has no audio to score: neither training nor eval counts it
    n = report["metrics"]["audio"]["num_samples"]
    assert n == 7 and views["audio-only"][1] == printed["audio-only"][1] == n
    assert f"{float(row['val_top1']):.4f}" == views["audio-only"][0] == printed["audio-only"][0]


def test_the_rule_and_ties() -> None:
    """Which clips each view counts, read back from NaN rows; top-1 counts the argmax's hits even among ties."""
    label = torch.tensor([0, 1, 2, -1])
    has_audio = torch.tensor([True, False, True, True])
    has_video = torch.tensor([True, True, False, True])
    assert counted_clips("fused", label, has_audio=has_audio, has_video=has_video).tolist() == [1, 1, 1, 0]
    assert counted_clips("audio", label, has_audio=has_audio, has_video=has_video).tolist() == [1, 0, 1, 0]
    assert counted_clips("video", label, has_audio=has_audio, has_video=has_video).tolist() == [1, 1, 0, 0]
    tied = torch.zeros(4, 3)  # the prior of a clip with nothing to see: every class tied, argmax = class 0
    views = score_outputs(
        {"logits": tied, "audio_logits": hide_absent(tied, has_audio), "video_logits": hide_absent(tied, has_video),
         "label": label}
    )  # fmt: skip
    assert {v: m["num_samples"] for v, m in views.items()} == {"fused": 3, "audio": 2, "video": 2}
    assert views["fused"]["top1"] == pytest.approx(1 / 3) and views["audio"]["top1"] == 0.5
    acc = ClassificationMetrics(3)
    acc.update(tied[:3], label[:3])
    assert acc.compute()["top1"] == int(acc.confusion.trace()) / 3
