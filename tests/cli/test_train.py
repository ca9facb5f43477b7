"""``avformer train`` end to end on tiny synthetic data: run files, clear errors, and kill-and-resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avformer.cli import train
from avformer.data.synth import SynthConfig, write_dataset
from avformer.models.loading import load_run
from avformer.utils.run_folder import read_classes

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke" / "tiny_av.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """27 one-second clips of 32x32 at 8 fps: 18 train, 9 val (one per class)."""
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=27, seconds=1.0, size=32, fps=8), workers=1)
    return out


def _data_args(synth: Path) -> list[str]:
    return [
        f"train_manifest={synth / 'train.csv'}",
        f"val_manifest={synth / 'val.csv'}",
        f"classes={synth / 'classes.txt'}",
    ]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_smoke_config_trains_and_writes_the_run_folder(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["--config", str(SMOKE), "--out", str(out), *_data_args(synth)]
    args += ["--set", "train.epochs=4", "--set", "optim.lr=2e-3"]
    assert train.main(args) == 0
    for name in ("config.yaml", "classes.txt", "last.pt", "best.pt", "metrics.csv", "train_log.csv", "report.md"):
        assert (out / name).is_file(), name
    for name in ("training_curves", "confusion_matrix", "per_class_accuracy", "modality_comparison"):
        assert (out / f"{name}.png").stat().st_size > 1000, name
    rows = _rows(out / "metrics.csv")
    assert len(rows) == 4
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])  # it learns something
    assert {"val_top1", "val_top5", "val_mean_class_acc", "val_audio_top1", "val_video_top1"} <= set(rows[-1])
    assert read_classes(out) == (synth / "classes.txt").read_text().splitlines()  # synth's order, not sorted
    run = load_run(out)
    assert run.cfg.train.epochs == 4 and run.cfg.optim.lr == 2e-3
    report = (out / "report.md").read_text()
    assert "audio-only" in report and "![confusion matrix](confusion_matrix.png)" in report
    assert "val top-1" in capsys.readouterr().out


def test_progress_lines_when_stdout_is_not_a_terminal(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """stdout captured (not a TTY) and a small progress interval: plain progress lines within the epoch."""
    monkeypatch.setenv("AVFORMER_PROGRESS_INTERVAL", "0")
    args = ["--config", str(SMOKE), "--out", str(tmp_path / "run"), *_data_args(synth), "--set", "train.epochs=1"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out  # no bar, no colour
    steps = [line for line in out.splitlines() if line.startswith("epoch 1/1: ") and " steps (" in line]
    assert steps and steps[0].startswith("epoch 1/1: 1/2 steps (50%)") and "ETA " in steps[0] and "loss " in steps[0]
    assert any(line.startswith("validation: ") for line in out.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train_manifest=/nonexistent/train.csv"], "train_manifest: no such file"),
        (["train.epoch=3"], "did you mean 'train.epochs'"),
        (["--set", "optim.lr=-1"], "lr must be > 0"),
        (["model.name=no_such_model"], "no_such_model"),
        (["model.overrides.bogus=1"], "bogus"),
        (["train.epochs"], "not key=value"),
        (["train.resume=/nonexistent/last.pt"], "train.resume: no checkpoint at /nonexistent/last.pt"),
    ],
)
def test_errors_are_one_line_and_exit_2(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = train.main(["--config", str(SMOKE), "--out", str(tmp_path), *_data_args(synth), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err and err.startswith("avformer train: error:")


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert train.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


# ---- kill and resume --------------------------------------------------------------------------------------------


def _tiny_args(synth: Path, out: Path, epochs: int) -> list[str]:
    """A fast run: 2 batches of 6 per epoch, a checkpoint after every step, one thread."""
    return [
        "--config",
        str(SMOKE),
        "--out",
        str(out),
        *_data_args(synth),
        f"train.epochs={epochs}",
        "train.batch_size=6",
        "train.steps_per_epoch=2",
        "train.checkpoint_every=1",
        "data.spec_augment={freq_mask_param: 4, time_mask_param: 10}",
        "loss.mixup_alpha=0.4",  # global-RNG draws in the task: resume must restore the RNG too
    ]


def _kill_after_first_checkpoint(args: list[str], out: Path, timeout: float = 300.0) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, as this process (conftest): the same float sums
    cmd = [sys.executable, "-m", "avformer", "train", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not (out / "last.pt").exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited ({proc.returncode}) before its first checkpoint: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no last.pt within the timeout")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.csv").exists() or len(_rows(out / "metrics.csv")) < 3  # killed early


def _check_kill_and_resume(synth: Path, tmp_path: Path, epochs: int) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert train.main(_tiny_args(synth, reference, epochs)) == 0
    _kill_after_first_checkpoint(_tiny_args(synth, killed, epochs), killed)
    assert train.main(_tiny_args(synth, killed, epochs)) == 0  # same command: resumes from last.pt
    ref_rows, rows = _rows(reference / "metrics.csv"), _rows(killed / "metrics.csv")
    assert len(rows) == len(ref_rows) == epochs
    assert rows[-1] == ref_rows[-1] | {"clips_per_s": rows[-1]["clips_per_s"]}  # all but the speed: bit-identical


def test_sigkill_then_resume_gives_the_same_final_metrics(synth: Path, tmp_path: Path) -> None:
    _check_kill_and_resume(synth, tmp_path, epochs=3)


@pytest.mark.slow
def test_sigkill_then_resume_longer_run(synth: Path, tmp_path: Path) -> None:
    """The same with more epochs, so the kill lands earlier relative to the run."""
    _check_kill_and_resume(synth, tmp_path, epochs=6)


def test_train_from_shards_through_the_config(synth: Path, tmp_path: Path) -> None:
    """``train_shards`` / ``val_shards`` in the config instead of the manifests: a full run with the same classes
    and every validation clip scored."""
    from avformer.data.manifest import read_manifest
    from avformer.data.shards import PrepareConfig, write_shards

    prep = PrepareConfig(fps=4.0, size=32, sample_rate=16000, shard_size=6, audio_dtype="float32")
    for split in ("train", "val"):
        m = read_manifest(synth / f"{split}.csv", classes=synth / "classes.txt")
        write_shards(m, tmp_path / f"{split}_shards", prep, workers=1)
    sets = ["train.epochs=2", f"classes={synth / 'classes.txt'}", "train.batch_size=6", "train.shuffle_buffer=4"]
    sets += [f"train_shards={tmp_path / 'train_shards'}", f"val_shards={tmp_path / 'val_shards'}"]
    args = ["--config", str(SMOKE), "--out", str(tmp_path / "shards")] + [a for s in sets for a in ("--set", s)]
    assert train.main(args) == 0
    rows = _rows(tmp_path / "shards" / "metrics.csv")
    assert len(rows) == 2 and {"val_top1", "val_audio_top1"} <= set(rows[-1])
    assert read_classes(tmp_path / "shards") == (synth / "classes.txt").read_text().splitlines()
    outputs = load_run(tmp_path / "shards")
    assert outputs.epoch == 2 or outputs.epoch == 1
    log = _rows(tmp_path / "shards" / "train_log.csv")
    assert len(log) == 2 * 3  # 18 clips / 6 per batch, 2 epochs
    cfg_text = (tmp_path / "shards" / "config.yaml").read_text()
    assert "train_shards:" in cfg_text and "train_shards: null" not in cfg_text
