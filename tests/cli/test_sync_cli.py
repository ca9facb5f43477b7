"""``avformer sync``: offsets of files from a trained av_sync run; one-line errors; exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avformer.cli.sync import main
from avformer.config import ExperimentConfig, ModelSpec, TaskSpec, to_dict
from avformer.data.audio import AudioFeatureConfig
from avformer.data.config import DataConfig, ViewConfig
from avformer.data.synth import SynthConfig, _encode_mp4
from avformer.data.synth_events import render_event_clip
from avformer.data.video import VideoTransformConfig
from avformer.eval.sync import SyncEstimator
from avformer.metrics.sync import offset_grid
from avformer.models.loading import load_run
from avformer.tasks.registry import TaskData, get_task
from tests._paths import shared_path

GRID = offset_grid(0.5, 9)
_OVERRIDES = {
    "num_classes": 9,
    "audio_overrides": {
        "embed_dim": 32, "depth": 1, "num_heads": 2, "num_mel_bins": 32, "num_frames": 200, "stem": "linear",
        "patch_size": [32, 8], "freq_stride": 32, "time_stride": 8, "pos_embed": "joint",
    },
    "video_overrides": {
        "embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 32, "img_size": 32, "stem": "linear",
        "tubelet_size": [1, 16, 16],
    },
    "fusion_config": {"depth": 1, "num_heads": 2},
}  # fmt: skip


def _config() -> ExperimentConfig:
    data = DataConfig(
        clip_seconds=2.0,
        video=VideoTransformConfig(num_frames=32, fps=16.0, size=32, short_side=32, hflip=0.0),
        audio=AudioFeatureConfig(num_mel_bins=32, num_frames=200),
        views=ViewConfig(audio_offset_grid=GRID),
    )
    return ExperimentConfig(
        name="sync_test",
        model=ModelSpec("xattn_tiny", _OVERRIDES),
        data=data,
        task=TaskSpec("av_sync", {"offsets": list(GRID), "window_seconds": 2.0}),
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained sync run folder (random weights) written as the trainer writes checkpoints."""
    from avformer.models import create_model
    from avformer.utils.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("sync_run")
    torch.manual_seed(0)
    model = create_model("xattn_tiny", **_OVERRIDES)
    entry = get_task("av_sync")
    entry.build(model, entry.parse_options(_config().task.options), TaskData())  # attaches the correlation head
    save_checkpoint(root / "best.pt", _checkpoint(model.state_dict(), _config()))
    return root


def _checkpoint(state: dict, cfg: ExperimentConfig) -> dict:
    """The trainer's checkpoint keys (tests/cli/_tiny_run.py)."""
    return {"format": 1, "model": state, "ema": None, "trainer": {"epoch": 1}, "config": to_dict(cfg)}


def _event_file(path: Path, delay: float) -> Path:
    """A 3-s event clip whose sound comes ``delay`` seconds after its picture (the audio track moved)."""
    cfg = SynthConfig(seconds=3.0, size=32, events=True, difficulty=0.2)
    frames, audio, _, _ = render_event_clip(cfg, 5)
    shift = round(delay * cfg.sample_rate)
    moved = np.roll(audio, shift)  # the wrapped part is bursts-free noise more often than not; fine for a check
    _encode_mp4(path, frames, moved, cfg)
    return path


def test_sync_prints_estimate_and_writes_png(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = _event_file(tmp_path / "late.mp4", 0.25)
    out = tmp_path / "plots"
    assert main([str(clip), "--run", str(run_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{clip}: sound ") and "confidence" in text and "baseline +0.250 s" in text
    png = out / "late.mp4.sync.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert main([str(clip), "--run", str(run_dir), "--json", "--no-png", "--clips", "2"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["ok"] and len(rec["probs"]) == 9 and abs(sum(rec["probs"]) - 1) < 1e-4 and len(rec["windows"]) == 2
    assert rec["baseline_delay"] == pytest.approx(0.25) and rec["png"] is None


def test_sign_of_the_delay(run_dir: Path, tmp_path: Path) -> None:
    """The estimator's convention, checked with the baseline (no training needed): a sound moved later reads as a
    positive delay, earlier as negative."""
    est = SyncEstimator(load_run(run_dir, require_classes=False))
    for delay in (-0.375, 0.0, 0.25):
        res = est.estimate(_event_file(tmp_path / f"d{delay}.mp4", delay))
        assert res.ok, res.error
        assert res.baseline_delay == pytest.approx(delay)


def test_file_errors_are_one_line_and_exit_1(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = tmp_path / "short.mp4"
    cfg = SynthConfig(seconds=1.0, size=32)
    _encode_mp4(short, np.zeros((16, 32, 32, 3), np.uint8), np.zeros(16000, np.float32), cfg)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    files = [str(short), str(bad), str(tmp_path / "missing.mp4")]
    assert main([*files, "--run", str(run_dir), "--no-png"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3 and all(line.split(": error: ")[0] in files for line in lines)
    assert "shorter than the run's 2 s window" in lines[0]
    assert "3 files: 0 estimated, 3 failed" in captured.out


def test_run_errors_exit_2(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["x.mp4", "--run", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avformer sync: error: cannot use the run") and err.count("\n") == 1
    assert main(["x.mp4", "--run", str(run_dir), "--clips", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        main(["x.mp4"])  # --run is required
    assert info.value.code == 2


def test_not_a_sync_run_or_no_head_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from avformer.models import create_model
    from avformer.utils.checkpoint import save_checkpoint

    state = create_model("xattn_tiny", **_OVERRIDES).state_dict()  # no correlation head
    cfg = _config()
    no_grid = ExperimentConfig(name="x", model=cfg.model, data=DataConfig(), task=cfg.task)
    save_checkpoint(tmp_path / "a" / "best.pt", _checkpoint(state, no_grid))
    assert main(["x.mp4", "--run", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "not a synchronisation run" in err and err.count("\n") == 1
    save_checkpoint(tmp_path / "b" / "best.pt", _checkpoint(state, cfg))
    assert main(["x.mp4", "--run", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "correlation head" in err and err.count("\n") == 1


def test_shared_media_never_crash(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few files of ../shared/data/media/labeled/: an estimate or a one-line error each, never a traceback."""
    folder = shared_path("media", "labeled")
    files = sorted(str(p) for p in folder.iterdir() if p.is_file())[:4]
    code = main([*files, "--run", str(run_dir), "--out", str(tmp_path), "--timeout", "20"])
    assert code in (0, 1)
    captured = capsys.readouterr()
    estimated = [line for line in captured.out.splitlines() if ": sound " in line]
    errors = captured.err.strip().splitlines() if captured.err.strip() else []
    assert len(estimated) + len(errors) == len(files)
    assert all(": error: " in line for line in errors)
