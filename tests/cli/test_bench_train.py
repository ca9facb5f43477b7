"""``avformer bench train``: the CPU path end to end (synthetic model-only rate, and source files vs shards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avformer.cli import bench
from avformer.data.manifest import read_manifest
from avformer.data.shards import PrepareConfig, write_shards
from avformer.data.synth import SynthConfig, write_dataset

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke" / "tiny_av.yaml"


def test_bench_train_model_name(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "mat_tiny", "--set", "model.overrides.input_size=[32, 100]", "--batch-size", "2"]
    assert bench.main([*args, "--steps", "1", "--warmup", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["device"] == "cpu" and res["precision"] == "fp32" and res["mfu"] is None
    assert res["input_shapes"] == {"audio": [1, 32, 100]} and res["train_clips_per_s"] > 0
    assert res["train_flops_per_clip"] > 0
    # a peak given by hand gives an MFU on any device
    assert bench.main([*args, "--steps", "1", "--warmup", "0", "--peak-tflops", "1", "--json"]) == 0
    assert 0 < json.loads(capsys.readouterr().out)["mfu"] < 1


def test_bench_train_config_files_vs_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "synth"
    write_dataset(data, SynthConfig(num_clips=12, seconds=1.0, size=32, fps=8), workers=1)
    m = read_manifest(data / "manifest.csv", classes=data / "classes.txt")
    write_shards(m, tmp_path / "shards", PrepareConfig(fps=4.0, size=32, sample_rate=16000), workers=1)
    args = ["train", "--config", str(SMOKE), "--batch-size", "4", "--steps", "1", "--warmup", "1"]
    args += ["--set", f"train_manifest={data / 'manifest.csv'}", "--set", f"classes={data / 'classes.txt'}"]
    args += ["--shards", str(tmp_path / "shards"), "--data-steps", "2", "--rounds", "1", "--workers", "0"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "source files" in out and "shards / source files" in out and "loader alone" in out
    assert bench.main(["train", "mat_tiny", "--config", str(SMOKE)]) == 2  # MODEL or --config, not both
