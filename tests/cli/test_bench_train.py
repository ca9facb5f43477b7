"""``avformer bench train``: the CPU path end to end (synthetic model-only rate, and source files vs shards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avformer import profiling
from avformer.cli import bench
from avformer.data.manifest import read_manifest
from avformer.data.shards import PrepareConfig, write_shards
from avformer.data.synth import SynthConfig, write_dataset
from avformer.train import speed
from avformer.utils.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke" / "tiny_av.yaml"


def test_bench_train_model_name(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "mat_tiny", "--set", "model.overrides.input_size=[32, 100]", "--batch-size", "2"]
    args += ["--matmul-seconds", "0", "--matmul-size", "256"]
    assert bench.main([*args, "--steps", "1", "--warmup", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    auto = resolve_precision("auto", "cpu")  # the default, as train.precision's
    assert res["device"] == "cpu" and res["precision"] == auto.used and res["precision_reason"] == auto.reason
    assert res["mfu"] is None  # no data-sheet peak for a CPU; MFU against the measured matmul rate instead
    assert res["matmul_size"] == 256 and min(res["matmul_tflops"].values()) > 0 and res["mfu_matmul"] > 0
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


def test_matmul_rate_is_measured() -> None:
    assert profiling.matmul_rate("cpu", torch.float32, size=64, seconds=0.01, warmup=1) > 0
    clock = iter([10.0, 10.5, 12.0])  # t0, then two calls: 0.5 s is short of 1 s, 2 s is not
    rate = profiling.matmul_rate("cpu", torch.bfloat16, size=64, seconds=1.0, warmup=0, timer=lambda: next(clock))
    assert rate == pytest.approx(2 * 64**3 * 2 / 2.0)
    assert profiling.mfu(6e9, 0.5, 24e9) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        profiling.mfu(1.0, 0.0, 1.0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bench_train_mfu_from_its_measured_pieces(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], precision: str
) -> None:
    rates = {torch.bfloat16: 2e12, torch.float32: 5e11}
    monkeypatch.setattr(profiling, "matmul_rate", lambda device, dtype, **kw: rates[dtype])
    monkeypatch.setattr(speed, "train_step_rate", lambda *a, **kw: speed.StepRate(4 / 0.25, 0.25, 1, 4))
    args = ["train", "mat_tiny", "--set", "model.overrides.input_size=[32, 100]", "--batch-size", "4"]
    assert bench.main([*args, "--precision", precision, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["matmul_tflops"] == {"bf16": 2.0, "fp32": 0.5} and res["precision"] == precision
    flops_step = 4 * res["train_flops_per_clip"]  # counted on the model, 3 x forward per clip
    assert res["train_flops_per_step"] == flops_step
    used = 2e12 if precision == "bf16" else 5e11
    assert res["mfu_matmul"] == pytest.approx(flops_step / 0.25 / used)
    assert bench.main([*args, "--precision", precision]) == 0
    out = capsys.readouterr().out
    assert "bf16 2000 GFLOP/s, fp32 500 GFLOP/s (4.0x)" in out
    assert f"MFU {100 * res['mfu_matmul']:.1f}% of the {precision} matmul rate" in out
