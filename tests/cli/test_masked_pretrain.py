"""Masked pretraining through `avformer pretrain`: one config, two MAViL stages, exact resume, pictures, probes."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from avformer.cli import pretrain, probe_linear
from avformer.config import ConfigError, load
from avformer.data.synth import SynthConfig, write_dataset
from avformer.tasks.masked import MaskedAVTask
from avformer.utils.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
MODEL = {
    "name": "vatt_tiny",
    "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32,
                  "tubelet_size": [2, 16, 16], "audio_input": "spectrogram", "spec_size": [64, 100],
                  "spec_patch": [16, 25], "pool": "mean", "va_head": "mlp", "vocab_size": 97, "text_word_dim": 8,
                  "va_dim": 16, "vt_dim": 8},
}  # fmt: skip
SMALL = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic clips of 1 s: train.csv (8), val.csv (4)."""
    root = tmp_path_factory.mktemp("masked")
    write_dataset(root, SynthConfig(num_clips=12, seconds=1.0, size=32, fps=8), workers=1)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    for name, part in (("train", rows[:8]), ("val", rows[8:])):
        with (root / f"{name}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["path", "label"])
            w.writeheader()
            w.writerows({"path": r["path"], "label": r["label"]} for r in part)
    return root


def _config(tmp: Path, root: Path, task: dict[str, Any], **top: Any) -> Path:
    cfg: dict[str, Any] = {
        "name": f"tiny_{task['name']}",
        "train_manifest": str(root / "train.csv"),
        "val_manifest": str(root / "val.csv"),
        "model": MODEL,
        "data": {
            "clip_seconds": 1.0,
            "video": {"num_frames": 4, "fps": 4.0, "size": 32, "short_side": 32},
            "audio": {"kind": "logmel", "num_mel_bins": 64, "num_frames": 100, "mean": -2.8, "std": 3.8},
        },
        "task": task,
        "optim": {"lr": 1e-3},
        "train": {"epochs": 1, "batch_size": 4, "best_metric": "a2v_mAP", "tensorboard": False, "workers": 0},
        **top,
    }
    path = tmp / f"{task['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


MAVIL_STAGES = [
    {"name": "stage1", "overrides": {"task": {"options": {"stage": 1}}}},
    {"name": "stage2", "init": "previous", "overrides": {"task": {"options": {"stage": 2}}, "train": {"epochs": 2}}},
]


def _mavil(tmp: Path, root: Path) -> Path:
    return _config(tmp, root, {"name": "mavil", "options": SMALL}, stages=MAVIL_STAGES)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


@pytest.mark.slow
def test_two_stages_from_one_config_resume_exactly_after_a_stop_in_stage_2(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _mavil(tmp_path, data)
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert pretrain.main(["--config", str(cfg), "--out", str(ref)]) == 0
    assert (ref / "stages.yaml").is_file() and load(ref / "stages.yaml").stages[1].name == "stage2"
    for stage in ("stage1", "stage2"):
        assert load(ref / stage / "config.yaml").stages == ()  # each stage folder is a plain run
    assert load(ref / "stage2" / "config.yaml").task.options["stage"] == 2
    assert (ref / "stage1" / "reconstruction_audio.png").is_file()
    assert (ref / "stage1" / "reconstruction_video.png").is_file()
    # stage 2 started from stage 1's final weights: its teacher is them, frozen (checked through the task hook)
    s1 = _weights(ref / "stage1" / "last.pt")
    s2 = _weights(ref / "stage2" / "last.pt")
    assert not torch.equal(s1["encoders.video.blocks.0.attn.qkv.weight"], s2["encoders.video.blocks.0.attn.qkv.weight"])
    rows = list(csv.DictReader((ref / "stage2" / "metrics.csv").open()))
    assert len(rows) == 2 and "train_feat_video" in rows[-1] and "train_recon_video" not in rows[-1]

    real_step = MaskedAVTask.training_step
    calls = {"stage2": 0}

    def stop_in_stage_2(self: MaskedAVTask, batch: dict[str, Any]) -> Any:
        out = real_step(self, batch)
        if self.stage == 2:
            calls["stage2"] += 1
            if calls["stage2"] == 3:  # epoch 2, batch 1 of stage 2
                os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(MaskedAVTask, "training_step", stop_in_stage_2)
    assert pretrain.main(["--config", str(cfg), "--out", str(run)]) == 128 + signal.SIGTERM
    state = load_checkpoint(run / "stage2" / "last.pt")["trainer"]
    assert (state["epoch"], state["batches_done"]) == (1, 1)
    monkeypatch.setattr(MaskedAVTask, "training_step", real_step)
    stage1_before = _weights(run / "stage1" / "last.pt")
    assert pretrain.main(["--config", str(cfg), "--out", str(run)]) == 0  # the same command resumes
    after = _weights(run / "stage1" / "last.pt")
    assert all(torch.equal(stage1_before[k], after[k]) for k in after)  # the finished stage 1 trained nothing
    final, expected = _weights(run / "stage2" / "last.pt"), s2
    assert final.keys() == expected.keys()
    assert all(torch.equal(final[k], expected[k]) for k in final), "stage 2 resumed differently"

    out = tmp_path / "probe.json"
    argv = [str(run / "stage2"), "--train", str(data / "train.csv"), "--val", str(data / "val.csv")]
    assert probe_linear.main([*argv, "--json", str(out)]) == 0
    probe = json.loads(out.read_text())
    assert probe and "video" in json.dumps(probe) and "audio" in json.dumps(probe)


def test_bench_gives_a_row_per_stage_and_keeps_finished_rows(data: Path, tmp_path: Path) -> None:
    from avformer.cli import vatt_bench

    cfg, mae = _mavil(tmp_path, data), _config(tmp_path, data, {"name": "mae", "options": SMALL})
    out = tmp_path / "bench"
    args = ["--configs", str(mae), str(cfg), "--out", str(out), "--bench-steps", "0"]
    assert vatt_bench.main(args) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["tiny_mae", "tiny_mavil stage1", "tiny_mavil stage2"]
    assert rows[1]["probe"]["checkpoint"].startswith(str(out / "tiny_mavil" / "stage1"))
    assert rows[2]["probe"]["checkpoint"].startswith(str(out / "tiny_mavil" / "stage2"))
    assert rows[2]["pretrain_s"] > rows[1]["pretrain_s"] > 0  # stage 2's row: the budget of both stages
    assert "tiny_mavil stage2" in (out / "table.md").read_text()
    stamp = (out / "tiny_mavil" / "stage1" / "last.pt").stat().st_mtime_ns
    assert vatt_bench.main(args) == 0  # finished rows are kept, nothing is pretrained or probed again
    assert json.loads((out / "results.json").read_text())["rows"] == rows
    assert (out / "tiny_mavil" / "stage1" / "last.pt").stat().st_mtime_ns == stamp
    assert vatt_bench.main([*args, "--set", "train.epochs=2"]) == 0  # other overrides: pretrained again
    again = json.loads((out / "results.json").read_text())["rows"]
    assert [r["set"] for r in again] == [["train.epochs=2"]] * 3 and all(r["resumed"] for r in again)
    # a second call with other configs that shares the folder adds its rows and keeps these
    cav_mae = _config(tmp_path, data, {"name": "cav_mae", "options": SMALL})
    assert vatt_bench.main(["--configs", str(cav_mae), *args[3:]]) == 0
    shared = json.loads((out / "results.json").read_text())["rows"]
    assert [r["label"] for r in shared] == ["tiny_mae", "tiny_mavil stage1", "tiny_mavil stage2", "tiny_cav_mae"]
    assert "tiny_mavil stage1" in (out / "table.md").read_text()


def test_stage_mistakes_are_caught_before_anything_trains(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _mavil(tmp_path, data)
    out = tmp_path / "bad"
    assert pretrain.main(["--config", str(cfg), "--out", str(out), "stages.1.overrides.task.options.stag=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stages[1] (stage2)" in err[0] and "stag" in err[0]
    assert not out.exists()  # stage 1 did not train first
    assert pretrain.main(["--config", str(cfg), "--out", str(out), "stages.1.overrides.train.epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "stages[1] (stage2).overrides: unknown key 'train.epoch'" in err and "did you mean 'train.epochs'" in err
    bad = yaml.safe_load(cfg.read_text())
    bad["stages"][0]["overrides"]["train"] = {"out_dir": "elsewhere"}
    cfg.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"train.out_dir is set per stage"):
        load(cfg)
    bad["stages"] = [MAVIL_STAGES[0], MAVIL_STAGES[0]]
    cfg.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="stage names must differ"):
        load(cfg)


def test_masking_an_unsupported_encoder_is_one_clear_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, data, {"name": "mae", "options": SMALL})
    argv = ["--config", str(cfg), "--out", str(tmp_path / "conv"), "model.overrides.video_stem=conv"]
    assert pretrain.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conv stem" in err[0] and "supported: ViT-family" in err[0]


def test_mae_run_writes_reconstruction_pictures(data: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, data, {"name": "mae", "options": SMALL})
    run = tmp_path / "mae"
    assert pretrain.main(["--config", str(cfg), "--out", str(run), "train.best_metric=recon_video"]) == 0
    for m in ("audio", "video"):
        png = run / f"reconstruction_{m}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"val_recon_audio", "val_recon_video", "val_a2v_mAP"} <= rows[-1].keys()


def test_recipes_load_and_keep_the_vatt_recipe_sizes() -> None:
    vatt = load(ROOT / "configs/experiment/av_digits_vatt_tiny.yaml")
    for name in ("av_digits_mae", "av_digits_cav_mae", "av_digits_mavil"):
        cfg = load(ROOT / f"configs/experiment/ssl/{name}.yaml")
        assert cfg.model.name == vatt.model.name and cfg.train.batch_size == vatt.train.batch_size
        assert cfg.data == vatt.data and cfg.optim == vatt.optim and cfg.train.epochs == vatt.train.epochs
        same = {k: v for k, v in vatt.model.overrides.items() if k != "drop_token_rate"}
        assert cfg.model.overrides == same | {"drop_token_rate": 0.0}  # the VATT towers and tokenizers
    mavil = load(ROOT / "configs/experiment/ssl/av_digits_mavil.yaml")
    assert [s.name for s in mavil.stages] == ["stage1", "stage2"]
    from avformer.config import stage_config

    epochs = [stage_config(mavil, i).train.epochs for i in range(2)]
    assert sum(epochs) == load(ROOT / "configs/experiment/ssl/av_digits_mae.yaml").train.epochs
