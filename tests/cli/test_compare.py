"""avformer compare: configs x seeds trained as separate processes, one table and one JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avformer.cli import compare, train
from avformer.cli.main import COMMANDS
from avformer.train.compare import RunResult, Summary, format_table
from tests.cli._audio_data import write_tone_dataset

EXPERIMENT = Path(__file__).resolve().parents[2] / "configs" / "experiment"


def _tiny_configs(tmp: Path, train_csv: Path, val_csv: Path) -> list[Path]:
    """The speech-commands recipes on a tone dataset, 32 mel bins, 2 steps."""
    common = (
        f"train_manifest: {train_csv}\nval_manifest: {val_csv}\n"
        "data: {audio: {num_mel_bins: 32, mean: -8.0, std: 4.0}}\n"
        "train: {epochs: 1, steps_per_epoch: 2, batch_size: 4, log_every: 1}\n"
    )
    mat = tmp / "mat.yaml"
    mat.write_text(
        f"inherit: {EXPERIMENT / 'speech_commands_mat_tiny.yaml'}\n{common}"
        "model: {overrides: {input_size: [32, 100]}}\n"
    )
    ast = tmp / "ast.yaml"
    ast.write_text(
        f"inherit: {EXPERIMENT / 'speech_commands_ast_tiny.yaml'}\n{common}"
        "model: {overrides: {num_mel_bins: 32, embed_dim: 32, depth: 2, num_heads: 2}}\n"
    )
    return [mat, ast]


@pytest.mark.slow
def test_compare_trains_every_seed_and_writes_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert COMMANDS["compare"][0] == "avformer.cli.compare"
    train_csv, val_csv = write_tone_dataset(tmp_path / "data", train_per_class=3, val_per_class=2)
    configs = _tiny_configs(tmp_path, train_csv, val_csv)
    out = tmp_path / "cmp"
    args = ["--configs", *map(str, configs), "--seeds", "0", "1", "--out", str(out), "--jobs", "2"]
    assert compare.main(args) == 0
    for name in ("speech_commands_mat_tiny", "speech_commands_ast_tiny"):
        for seed in (0, 1):
            run = out / name / f"seed{seed}"
            assert (run / "metrics.csv").is_file() and (run / "train.out").is_file()
            assert f"train.seed={seed}" in (run / "train.out").read_text()
    results = json.loads((out / "results.json").read_text())
    mat, ast = results["configs"]
    assert mat["model"] == "mat_tiny" and ast["model"] == "ast_tiny"
    assert mat["n"] == 2 and 0.0 <= mat["mean"] <= 1.0 and mat["std"] >= 0.0
    assert {r["seed"] for r in mat["runs"]} == {0, 1} and all(r["returncode"] == 0 for r in mat["runs"])
    assert mat["cost"]["input_shape"] == [[1, 32, 100]] and mat["cost"]["flops_per_clip"] > 0
    assert mat["cost"]["params"] > ast["cost"]["params"] > 0
    assert mat["cost"]["peak_train_memory_bytes"] > 0 and mat["cost"]["train_batch_size"] == 4
    assert mat["train_clips_per_s"] > 0 and results["train_wall_s"] > 0
    table = (out / "table.md").read_text()
    assert table.startswith("| config | model | val top1 (mean ± std) | params | FLOPs / clip |")
    assert "speech_commands_mat_tiny" in table and "(n=2)" in table and "avformer compare --configs" in table
    assert "speech_commands_mat_tiny beat" in table or "lost to" in table or "tied with" in table

    # the same command again trains nothing: every run is finished (a new seed would train only that seed)
    before = (out / "speech_commands_mat_tiny" / "seed0" / "train.out").read_text()
    capsys.readouterr()
    assert compare.main(args) == 0
    assert capsys.readouterr().out.count("already finished") == 4
    assert (out / "speech_commands_mat_tiny" / "seed0" / "train.out").read_text() == before

    # the table again from the run folders, without training
    (out / "table.md").unlink()
    assert compare.main([*args, "--table-only"]) == 0
    assert (out / "table.md").read_text().splitlines()[2] == table.splitlines()[2]


def test_table_only_reads_run_folders_trained_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fast path: run folders from `avformer train` (in-process), then the table without training."""
    train_csv, val_csv = write_tone_dataset(tmp_path / "data", train_per_class=3, val_per_class=2)
    configs = _tiny_configs(tmp_path, train_csv, val_csv)
    out = tmp_path / "cmp"
    names = ("speech_commands_mat_tiny", "speech_commands_ast_tiny")
    for name, cfg in zip(names, configs, strict=True):
        assert train.main(["--config", str(cfg), "--out", str(out / name / "seed3"), "train.seed=3"]) == 0
    args = ["--configs", *map(str, configs), "--seeds", "3", "--out", str(out), "--table-only"]
    assert compare.main(args) == 0
    results = json.loads((out / "results.json").read_text())
    mat, ast = results["configs"]
    assert mat["n"] == ast["n"] == 1 and mat["std"] == 0.0 and results["train_wall_s"] is None
    assert mat["cost"]["input_shape"] == [[1, 32, 100]] and ast["cost"]["flops_per_clip"] > 0
    table = (out / "table.md").read_text()
    assert "| speech_commands_mat_tiny | mat_tiny |" in table and "(n=1)" in table
    # a seed that was never trained: no value, exit 1, the table still written
    assert compare.main([*args[:-1], "--seeds", "3", "4", "--table-only"]) == 1
    assert "4: n/a" in (out / "table.md").read_text()


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(EXPERIMENT / "speech_commands_mat_tiny.yaml")
    assert compare.main(["--configs", str(tmp_path / "none.yaml"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert compare.main(["--configs", cfg, "--out", str(tmp_path), "--seeds", "0", "0"]) == 2
    assert compare.main(["--configs", cfg, "--out", str(tmp_path), "--set", "train.epoch=3"]) == 2
    assert "did you mean 'train.epochs'" in capsys.readouterr().err


def _summary(name: str, values: list[float], flops: float, speed: float) -> Summary:
    from avformer.train.compare import ModelCost

    runs = [RunResult(name, i, "", "val_top1", v, v, 3, speed) for i, v in enumerate(values)]
    cost = ModelCost(((1, 64, 100),), 1_000_000, int(flops), 32, 2**27, False)
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return Summary(name, "", name, runs, cost, "val_top1", mean, std, n, speed)


def test_verdict_states_winner_margin_noise_and_cost_ratios() -> None:
    a = _summary("A", [0.80, 0.82, 0.84], 1e8, 60.0)
    b = _summary("B", [0.60, 0.61, 0.62], 2e8, 30.0)
    text = format_table([a, b])
    assert "| A | A | 82.0 ± 2.0 % (n=3) | 1.00 M | 0.100 G | 128 MiB (batch 32) | 60.0 |" in text
    assert "A beat B by 21.0 points of val_top1" in text and "more than the sum" in text
    assert "FLOPs per clip 0.50×" in text and "training clips/s 2.00×" in text
    close = format_table([_summary("A", [0.60, 0.70], 1e8, 1.0), _summary("B", [0.66, 0.62], 1e8, 1.0)])
    assert "A beat B by 1.0 points" in close and "within the sum" in close


def test_sigterm_stops_the_running_children(tmp_path: Path) -> None:
    """Regression: SIGTERM killed `compare` and left its training processes running (orphans on a shared machine)."""
    sleeper = tmp_path / "sleeper.py"
    pid_file = tmp_path / "child.pid"
    sleeper.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from avformer.cli import compare\n"
        f"compare._Job.commands = lambda self, overrides: [('train', [sys.executable, {str(sleeper)!r}])]\n"
        "compare._stop_on_sigterm()\n"
        f"job = compare._Job('x', 'x.yaml', 0, Path({str(tmp_path / 'out')!r}), 1)\n"
        "try:\n"
        "    compare._run_jobs([job], [], 1, 1)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while not pid_file.is_file() or not pid_file.read_text():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    child = int(pid_file.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    with pytest.raises(ProcessLookupError):  # the child was stopped and reaped, not orphaned
        os.kill(child, 0)
