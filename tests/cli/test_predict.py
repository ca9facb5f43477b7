"""avformer predict: top-k per file, missing streams, one-line errors, exit status, PNGs, real files."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from avformer.cli.predict import main
from avformer.data.dataset import AVDataset, collate
from avformer.data.manifest import read_manifest
from avformer.eval.predict import FilePredictor
from avformer.models.loading import load_run
from tests._paths import shared_path
from tests.cli._tiny_run import make_run, make_synth, write_video_only, write_wav


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    manifest = make_synth(d / "synth")
    with manifest.open(newline="") as f:
        first = next(csv.DictReader(f))["path"]
    garbage = d / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad\xbe\xef" * 500)
    return {
        "manifest": manifest,
        "good": manifest.parent / first,
        "silent": write_video_only(d / "silent.mp4"),
        "wav": write_wav(d / "tone.wav"),
        "short_wav": write_wav(d / "short.wav", seconds=0.3),
        "garbage": garbage,
        "missing": d / "missing.mp4",
    }


@pytest.fixture(scope="module")
def av_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run_av"), "av")


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_good_file(av_run: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(av_run), str(files["good"]), "--topk", "3"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[0].startswith(f"{files['good']}  (") and "audio+video" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["1.", "2.", "3."]
    assert out.err == ""
    assert main([str(av_run), str(files["good"]), "--json"]) == 0
    (result,) = _json_lines(capsys.readouterr().out)
    assert result["ok"] and result["error"] is None and result["notes"] == []
    assert result["has_audio"] and result["has_video"]
    assert len(result["top"]) == 5 and len(result["windows"]) == 3  # 1.5-s file, 1-s windows, 3 clips
    probs = [t["prob"] for t in result["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5


def test_missing_audio_is_said_and_video_predicts(
    av_run: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(av_run), str(files["silent"])]) == 0
    out = capsys.readouterr().out
    assert "note: no audio track — predicting from video only" in out
    # the fused prediction of a file without audio is the model's video-only prediction
    run = load_run(av_run)
    predictor = FilePredictor(run, num_clips=1)
    pred = predictor.predict(files["silent"])
    assert pred.ok and not pred.has_audio and pred.has_video
    sample = predictor._sample(predictor._decode(str(files["silent"]), *pred.windows[0], None))
    batch = collate([sample])
    logits = run.model(batch["audio"], batch["video"], torch.tensor([False]), torch.tensor([True])).logits
    torch.testing.assert_close(pred.probs, logits.softmax(-1)[0])


def test_bad_files_one_line_each_and_exit_1(
    av_run: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    paths = [files["garbage"], files["good"], files["missing"]]
    assert main([str(av_run), *map(str, paths)]) == 1
    out = capsys.readouterr()
    err = out.err.splitlines()
    assert len(err) == 2
    assert err[0].startswith(f"{files['garbage']}: error: ")
    assert err[1] == f"{files['missing']}: error: file not found"
    assert str(files["good"]) in out.out  # the command went on past the bad file
    assert "3 files: 1 predicted, 2 failed" in out.out
    assert main([str(av_run), str(files["missing"]), "--json"]) == 1
    (result,) = _json_lines(capsys.readouterr().out)
    assert result["ok"] is False and result["error"] == "file not found" and result["top"] == []


def test_audio_model_on_wav_and_on_a_silent_video(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "audio_run", "audio")
    assert main([str(run), str(files["wav"]), str(files["short_wav"])]) == 0
    out = capsys.readouterr().out
    assert out.count("(") >= 2 and "audio;" in out and "note:" not in out
    assert main([str(run), str(files["silent"])]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"{files['silent']}: error: no audio track; this model reads audio only"


def test_av_model_on_audio_file(av_run: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(av_run), str(files["short_wav"]), "--json"]) == 0
    (result,) = _json_lines(capsys.readouterr().out)
    assert result["has_audio"] and not result["has_video"]
    assert "no video track — predicting from audio only" in result["notes"]
    assert result["windows"] == [[0.0, 0.3]]  # shorter than the 1-s window: read whole (and padded), once


def test_png(av_run: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "png"
    paths = [files["good"], files["silent"], files["wav"], files["garbage"]]
    assert main([str(av_run), *map(str, paths), "--png", str(out)]) == 1
    capsys.readouterr()
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{p.name}.png" for p in paths[:3])  # none for the file that failed
    assert all((out / name).stat().st_size > 5000 for name in written)


def test_windows_are_bounded_and_uniform(av_run: Path) -> None:
    predictor = FilePredictor(load_run(av_run), num_clips=3)
    assert predictor.windows(360.0) == [(0.0, 1.0), (179.5, 180.5), (359.0, 360.0)]  # a 6-min file: 3 s read
    assert predictor.windows(0.5) == [(0.0, 0.5)]
    assert predictor.windows(None) == [(0.0, 1.0)]  # no duration in the header: from the start
    assert predictor.windows(0.0) == [(0.0, 1.0)]


def test_same_inputs_as_the_evaluation_dataset(av_run: Path, files: dict[str, Path]) -> None:
    """One clip per file: predict feeds the model exactly what `avformer eval` (AVDataset, eval mode) feeds it."""
    run = load_run(av_run)
    predictor = FilePredictor(run, num_clips=1)
    manifest = read_manifest(files["manifest"], classes=run.classes)
    ds = AVDataset(manifest.subset([0, 1]), replace(run.cfg.data, num_test_clips=1), train=False)
    for i in range(2):
        path = manifest[i].path
        pred = predictor.predict(path)
        sample = ds[i]
        batch = collate([sample])
        logits = run.model(batch["audio"], batch["video"], batch["has_audio"], batch["has_video"]).logits
        torch.testing.assert_close(pred.probs, logits.softmax(-1)[0], atol=1e-5, rtol=1e-4)


def _predict_folder(run: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[list[dict], float]:
    files = sorted(p for p in folder.iterdir() if p.is_file())
    t0 = time.perf_counter()
    status = main([str(run), *map(str, files), "--json"])
    dt = time.perf_counter() - t0
    captured = capsys.readouterr()
    results = _json_lines(captured.out)
    assert [r["path"] for r in results] == list(map(str, files))  # one result per file, nothing lost
    errors = captured.err.splitlines()
    assert len(errors) == sum(not r["ok"] for r in results)  # exactly one stderr line per failed file
    for r in results:
        if r["ok"]:
            assert len(r["top"]) == 5 and (r["has_audio"] or r["has_video"])
        else:
            assert r["error"] and "\n" not in r["error"]
            assert f"{r['path']}: error: {r['error']}" in errors
        assert r["seconds"] < 30  # bounded work per file (8K, 6-minute, 1080p60 files included)
    assert status == (1 if errors else 0)
    return results, dt


def test_real_files_labeled_and_robust(av_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every file of the shared media folders: a usable prediction or one clear line, never a crash."""
    labeled, _ = _predict_folder(av_run, shared_path("media", "labeled"), capsys)
    robust, _ = _predict_folder(av_run, shared_path("media", "robust"), capsys)
    by_name = {Path(r["path"]).name: r for r in labeled + robust}
    media = [r for r in labeled if Path(r["path"]).suffix not in {".csv", ".txt", ".align"}]
    assert all(r["ok"] for r in media)  # every labeled media file predicts
    assert sum(r["ok"] for r in robust) >= 45
    # what must be said about missing streams
    assert (
        "no video track — predicting from audio only" in by_name["androidx-media__mp4__sample_audio_only.mp4"]["notes"]
    )
    assert (
        "no audio track — predicting from video only" in by_name["androidx-media__mp4__sample_video_only.mp4"]["notes"]
    )
    assert by_name["androidx-media__mp4__long_1080p_lowbitrate.mp4"]["ok"]
    assert by_name["androidx-media__mp4__8k24fps_300ms.mp4"]["ok"]
    for bad in ("androidx-media__mp4__sample_ac4.mp4", "androidx-media__vp9__invalid-bitstream.webm", "index.csv"):
        assert not by_name[bad]["ok"]


def test_bottleneck_model_with_missing_streams(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "mmt_run", "mmt")
    assert main([str(run), str(files["good"]), str(files["silent"]), str(files["wav"]), "--json"]) == 0
    good, silent, wav = _json_lines(capsys.readouterr().out)
    assert good["ok"] and good["notes"] == []
    assert silent["ok"] and silent["notes"] == ["no audio track — predicting from video only"]
    assert wav["ok"] and wav["notes"] == ["no video track — predicting from audio only"]
