"""``avformer bench predict``: one table of clips/s for every backend and precision, measured in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from avformer.cli import bench
from tests.cli._tiny_run import make_run, write_wav


@pytest.mark.slow  # exports to TorchScript and ONNX, then 2 passes of 5 variants: ~10 s
def test_bench_predict_prints_every_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")
    run = make_run(tmp_path / "run", "audio")  # mat_tiny: no model.onnx / .torchscript.pt, exported on the fly
    files = [str(write_wav(tmp_path / f"{i}.wav", seconds=1.0, index=i)) for i in range(2)]
    assert bench.main(["predict", str(run), *files, "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("bench predict: mat_tiny, 2 files x 1 clip(s) = 2 clips per pass")
    rows = [line.split() for line in lines[2:7]]
    assert [r[:2] for r in rows] == [
        ["eager", "fp32"],
        ["eager", "bf16"],
        ["torchscript", "fp32"],
        ["torchscript", "bf16"],
        ["onnxruntime", "fp32"],
    ]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)  # clips/s, model ms/clip
    assert rows[0][4] == "1.00x" and [r[5] for r in rows if r[1] == "fp32"] == ["2/2"] * 3  # fp32: same top-1
    assert "onnxruntime bf16: n/a" in out and "exported for this bench" in out and "load average" in out


def test_bench_predict_eager_vs_torchscript(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run", "audio")
    files = [str(write_wav(tmp_path / f"{i}.wav", seconds=1.0, index=i)) for i in range(2)]
    argv = ["predict", str(run), *files, "--repeats", "1", "--backend", "eager", "--backend", "torchscript"]
    assert bench.main([*argv, "--precision", "fp32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[2:4]] == [["eager", "fp32"], ["torchscript", "fp32"]]
    assert lines[3].split()[-1] == "2/2" and "exported for this bench into a temporary folder: torchscript" in lines[4]


def test_bench_predict_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run", "audio")
    assert bench.main(["predict", str(run), str(tmp_path / "missing.wav"), "--backend", "eager"]) == 2
    assert bench.main(["predict", str(tmp_path / "nothing"), str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("avformer bench predict: ") for line in err), err
    assert "missing.wav" in err[0]
