"""Audio-only datasets through the same commands: train / eval / predict on manifests of audio files.

Tiny tone datasets in wav, flac, ogg (Opus), mp3 and m4a (AAC); single-label (CE, top-1) and AudioSet-style
multi-label (BCE, mAP). Accuracy is not the point: the path is.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

from avformer.cli import eval as eval_cli
from avformer.cli import predict, train
from avformer.data.dataset import AVDataset
from avformer.data.manifest import read_manifest
from avformer.models.loading import load_run
from tests._paths import shared_path
from tests.cli._audio_data import FORMATS, write_tone_dataset, write_wav
from tests.cli._tiny_run import make_run

ROOT = Path(__file__).resolve().parents[2]
SC_MAT = ROOT / "configs" / "experiment" / "speech_commands_mat_tiny.yaml"


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tone_dataset(tmp_path_factory.mktemp("tones"), formats=FORMATS)


def _tiny_args(train_csv: Path, val_csv: Path, out: Path) -> list[str]:
    """The speech-commands MAT recipe shrunk to seconds: 32 mel bins, 2 epochs of 2 steps."""
    return [
        "--config",
        str(SC_MAT),
        "--out",
        str(out),
        f"train_manifest={train_csv}",
        f"val_manifest={val_csv}",
        "data.audio={num_mel_bins: 32, mean: -8.0, std: 4.0}",
        "model.overrides.input_size=[32, 100]",
        "train.epochs=2",
        "train.steps_per_epoch=2",
        "train.batch_size=4",
        "train.log_every=1",
    ]


def test_every_audio_format_loads_as_an_audio_sample(tones: tuple[Path, Path]) -> None:
    manifest = read_manifest(tones[0])
    exts = {Path(r.path).suffix for r in manifest}
    assert exts == {f".{f}" for f in FORMATS}
    from avformer.config import load

    cfg = load(SC_MAT).data
    ds = AVDataset(manifest, cfg, train=True)
    for i in range(len(ds)):
        s = ds[i]
        assert "__skipped__" not in s, (manifest[i].path, s.get("reason"))
        assert s["audio"].shape == (1, cfg.audio.num_mel_bins, 100) and bool(s["has_audio"])
        assert "video" not in s and "has_video" not in s


def test_train_eval_predict_audio_only(
    tones: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert train.main(_tiny_args(*tones, out)) == 0
    with (out / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "val_top1" in rows[-1] and "val_audio_top1" not in rows[-1]
    run = load_run(out)
    assert run.cfg.data.modalities == ("audio",) and run.classes == ["high", "low", "mid"]
    # SpecAugment and mixup are on in the recipe
    assert run.cfg.data.spec_augment.enabled and run.cfg.task is not None and run.cfg.task.options["mixup_alpha"] > 0
    capsys.readouterr()

    assert eval_cli.main([str(out), "--data", str(tones[1]), "--out", str(tmp_path / "eval")]) == 0
    assert "top-1" in capsys.readouterr().out

    val = read_manifest(tones[1])
    files = [r.path for r in val][:5]  # every format
    assert predict.main([str(out), *files, "--topk", "3"]) == 0
    text = capsys.readouterr().out
    assert len(re.findall(r"\(\d+ clips? of [\d.]+ s, audio; predicted in [\d.]+ s\)", text)) == len(files)


@pytest.mark.parametrize("val_single", [False, True])
def test_multilabel_audio_trains_with_bce_and_reports_map(tmp_path: Path, val_single: bool) -> None:
    train_csv, val_csv = write_tone_dataset(tmp_path / "data", multilabel=True, train_per_class=2)
    if val_single:  # a val split whose rows happen to carry one label each is still multi-label data
        rows = list(csv.DictReader(val_csv.open(newline="")))
        val_csv.write_text("path,labels\n" + "".join(f"{r['path']},{r['labels'].split(';')[0]}\n" for r in rows))
    out = tmp_path / "run"
    args = [*_tiny_args(train_csv, val_csv, out), "train.best_metric=mAP"]
    assert train.main(args) == 0
    with (out / "metrics.csv").open(newline="") as f:
        last = list(csv.DictReader(f))[-1]
    assert 0.0 <= float(last["val_mAP"]) <= 1.0 and "val_top1" not in last
    assert (out / "best.pt").is_file()


def test_predict_prints_top5_with_probabilities_for_a_wav(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classes = ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_"]
    run = make_run(tmp_path / "run", "audio", classes=classes)
    wav = write_wav(tmp_path / "clip.wav", torch.linspace(-0.5, 0.5, 16000).sin().numpy())
    assert predict.main([str(run), str(wav), "--topk", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(str(wav)) and ", audio; predicted in " in lines[0]
    top = [re.fullmatch(r"\s+(\d)\. (\S+)\s+([01]\.\d{3})", line) for line in lines[1:]]
    assert len(top) == 5 and all(top), lines
    assert [int(m[1]) for m in top if m] == [1, 2, 3, 4, 5]
    assert {m[2] for m in top if m} <= set(classes)
    probs = [float(m[3]) for m in top if m]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3


def test_predict_on_a_real_speech_commands_val_wav(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    val = shared_path("speech-commands", "val.csv")
    first = next(csv.DictReader(val.open(newline="")))
    wav = val.parent / first["path"]
    classes = sorted({r["label"] for r in csv.DictReader(val.open(newline=""))})
    run = make_run(tmp_path / "run", "audio", classes=classes)
    assert predict.main([str(run), str(wav), "--topk", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[0].startswith(str(wav))


def test_multilabel_val_with_single_label_train_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_csv, _ = write_tone_dataset(tmp_path / "single")
    _, val_csv = write_tone_dataset(tmp_path / "multi", multilabel=True, train_per_class=1)
    assert train.main(_tiny_args(train_csv, val_csv, tmp_path / "run")) == 2
    assert "has rows with several labels" in capsys.readouterr().err


def test_audioset_style_ast_json_datafiles_train_multilabel(tmp_path: Path) -> None:
    """AST datafiles (`{"data": [{"wav", "labels": "/m/.."}]}`) + class_labels_indices.csv, as the AudioSet recipe."""
    import json

    train_csv, val_csv = write_tone_dataset(tmp_path / "data", multilabel=True, train_per_class=2)
    mids = {name: f"/m/0{i}" for i, name in enumerate(["mid", "low", "high"])}  # an order that is not sorted
    (tmp_path / "data" / "class_labels_indices.csv").write_text(
        "index,mid,display_name\n" + "".join(f'{i},{m},"{n}"\n' for i, (n, m) in enumerate(mids.items()))
    )
    jsons = []
    for path in (train_csv, val_csv):
        rows = list(csv.DictReader(path.open(newline="")))
        items = [{"wav": r["path"], "labels": ",".join(mids[x] for x in r["labels"].split(";"))} for r in rows]
        out = path.with_suffix(".json")
        out.write_text(json.dumps({"data": items}))
        jsons.append(out)
    out = tmp_path / "run"
    classes = tmp_path / "data" / "class_labels_indices.csv"
    args = [*_tiny_args(jsons[0], jsons[1], out), f"classes={classes}", "train.best_metric=mAP"]
    assert train.main(args) == 0
    assert load_run(out).classes == ["mid", "low", "high"]
    with (out / "metrics.csv").open(newline="") as f:
        assert 0.0 <= float(list(csv.DictReader(f))[-1]["val_mAP"]) <= 1.0
