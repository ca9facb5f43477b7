"""The own-data recipe as a user runs it: copied into their project folder, pointed at their manifest of real
clips, trained from that folder."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from avformer.cli import train
from avformer.config import BUILTIN_CONFIGS
from tests._paths import shared_path

# four GRID talking-face clips (3 s, 25 fps, 44.1 kHz), labelled by the colour word of their sentence
CLIPS = {"grid__bbaf2n.mpg": "blue", "grid__brbk7n.mpg": "red", "grid__lbax4n.mpg": "blue", "grid__lrwp9a.mpg": "red"}


def test_the_own_data_recipe_trains_from_a_copy_in_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    labeled = shared_path("media", "labeled")
    project = tmp_path / "myproj"
    project.mkdir()
    recipe = project / "my.yaml"
    recipe.write_text((BUILTIN_CONFIGS / "experiment" / "own_data_tiny.yaml").read_text())
    with (project / "clips.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([str(labeled / name), label] for name, label in CLIPS.items())
    monkeypatch.chdir(project)  # manifests and out_dir are relative to the working directory
    args = ["--config", "my.yaml", "train_manifest=clips.csv", "val_manifest=clips.csv"]
    args += ["train.epochs=1", "train.workers=0", "train.tensorboard=false", "train.batch_size=4"]
    assert train.main(args) == 0, capsys.readouterr().err
    run = project / "runs" / "own_data_tiny"
    assert (run / "report.md").is_file() and (run / "best.pt").is_file()
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    # the recipe's sizes agree with each other: 2-s windows = 200 audio frames, 8 frames at 4 fps
    assert resolved["model"]["overrides"]["audio_overrides"]["input_size"] == [64, 200]
    data = resolved["data"]
    assert data["clip_seconds"] * data["video"]["fps"] == data["video"]["num_frames"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 1 and float(rows[0]["skipped_train"]) == 0
