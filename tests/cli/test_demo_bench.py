"""The demo and the data benchmark run end to end in-process on small inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avformer.cli import bench, demo
from avformer.data.config import WaveAugmentConfig
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.wave_augment import WaveAugment, WaveAugmentParams


def test_demo_runs_and_writes_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick demo: synth, three short trainings, the side-by-side table and the report (numbers mean nothing);
    each training shows its progress."""
    monkeypatch.setenv("AVFORMER_PROGRESS_INTERVAL", "0")  # a progress line per step (stdout is not a terminal)
    assert demo.main(["--out", str(tmp_path), "--quick", "--workers", "0"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["results"]) == {"fused", "audio", "video"}
    fused = summary["results"]["fused"]
    assert {"top1", "audio_only_top1", "video_only_top1", "params", "seconds"} <= set(fused)
    assert summary["results"]["audio"]["params"] < fused["params"]
    for name in ("fused", "audio", "video"):
        assert (tmp_path / name / "best.pt").is_file()
        assert (tmp_path / name / "report.md").is_file()
        # fp32 as asked, not the default auto: the README's demo figures were measured in fp32
        assert json.loads((tmp_path / name / "precision.json").read_text())["used"] == "fp32"
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "| MMT-Tiny (audio + video) |" in report and "fused/report.md" in report
    out = capsys.readouterr().out
    assert "[5/5] results" in out and "video-only (MViTv2-tiny)" in out
    assert out.count("epoch 1/1: 1/") == 3 and "\x1b" not in out  # one training per model, plain lines


def test_bench_data_reports_stages_and_speedup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_dataset(tmp_path, SynthConfig(num_clips=6, seconds=1.0, size=32, fps=8), workers=1)
    args = [str(manifest), "--limit", "6", "--workers", "0", "--repeats", "1", "--size", "32", "--json"]
    assert bench.main(["data", *args]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["clips"] == 6
    assert set(res["stages_ms_per_clip"]) == {"open", "demux", "decode", "convert+resample", "features"}
    assert res["ours_clips_per_s"] > 0 and res["naive_clips_per_s"] > 0
    assert res["loader_summary"] is None or "0 skipped" in res["loader_summary"]
    assert set(res["wave_augment_ms_per_clip"]) == {*bench._WAVE_SETTINGS, "all six"}
    assert all(v > 0 for v in res["wave_augment_ms_per_clip"].values())
    assert bench.main(["data", *args[:-1]]) == 0  # the text form names every transform and their share
    out = capsys.readouterr().out
    assert "wave augmentations (ms per clip" in out and "pitch +2 st" in out and "all six add" in out
    assert bench.main(["data", *args, "--no-wave-augment"]) == 0
    assert json.loads(capsys.readouterr().out)["wave_augment_ms_per_clip"] is None


def test_bench_wave_settings_each_change_the_audio() -> None:
    """Each timed setting does its work (a no-op would time nothing): it changes a clip, alone."""
    sr = 16000
    t = torch.arange(sr) / sr
    wav = 0.1 * torch.sin(2 * torch.pi * 440 * t) * (t < 0.6)
    aug = WaveAugment(WaveAugmentConfig(), sr)
    for name, kw in bench._WAVE_SETTINGS.items():
        out = aug.apply(wav, WaveAugmentParams(**kw))
        assert out.shape == wav.shape and (out - wav).abs().max() > 1e-3, name


def test_bench_missing_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["data", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
