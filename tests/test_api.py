"""The Python API (avformer.load / predict / embed): the README's snippet as written, the same numbers as
``avformer predict``, per-file errors, the audio-only and video-only views, embeddings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import avformer
from avformer.cli import predict as predict_cli
from tests._paths import shared_path
from tests.cli._tiny_run import make_run, make_synth, write_wav

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("api") / "run", "mmt")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    manifest = make_synth(tmp_path_factory.mktemp("clips"))
    return sorted(manifest.parent.glob("**/*.mp4"))[:3]


def test_the_readme_snippet_runs_as_written(run: Path, tmp_path: Path) -> None:
    """The README's Python block, unchanged, in a folder where ``runs/demo/fused`` is a (tiny) run and
    ``../shared`` the team's data, as after ``make demo`` in a clone."""
    shared_path("media", "labeled", "grid__bbaf2n.mpg")
    readme = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "avformer.load(" in b)
    work = tmp_path / "repo"
    (work / "runs" / "demo").mkdir(parents=True)
    (work / "runs" / "demo" / "fused").symlink_to(run)
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", block], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("../shared/data/media/labeled/grid__bbaf2n.mpg: ")
    assert re.search(r": \w+ \d\.\d{3}, .* \| audio-only: \w+ \d\.\d{3}.* \| video-only: \w+ \d\.\d{3}", lines[0])
    assert lines[1] == "no_such_file.mp4: error: file not found"
    assert lines[2].startswith("['circle_hum'") and lines[2].endswith("False file not found")


def test_predict_gives_the_numbers_of_the_predict_command(
    run: Path, clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = avformer.load(run, device="cpu")
    ours = model.predict(clips[:2], topk=3, per_modality=False)
    assert predict_cli.main([str(run), *map(str, clips[:2]), "--topk", "3", "--json"]) == 0
    theirs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p.to_dict()["top"] for p in ours] == [t["top"] for t in theirs]
    assert [p.path for p in ours] == [str(c) for c in clips[:2]]


def test_bad_files_get_an_error_and_the_rest_are_predicted(run: Path, clips: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not media\n")
    results = avformer.load(run, device="cpu").predict([clips[0], tmp_path / "missing.mp4", text, clips[1]])
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error == "file not found" and results[2].error and "\n" not in results[2].error
    assert str(results[1]).endswith(": error: file not found")
    assert all(len(r.top) == 5 for r in (results[0], results[3]))


def test_the_audio_and_video_only_views_are_the_model_with_one_stream_masked(run: Path, clips: list[Path]) -> None:
    model = avformer.load(run, device="cpu")
    (result,) = model.predict(clips[0], topk=9, clips=1)
    assert set(result.views) == {"audio", "video"}
    audio, video, fused = dict(result.views["audio"]), dict(result.views["video"]), dict(result.top)
    assert audio != fused and video != fused and audio != video  # three different forward passes
    assert abs(sum(audio.values()) - 1) < 1e-4 and abs(sum(video.values()) - 1) < 1e-4
    (no_views,) = model.predict(clips[0], topk=9, clips=1, per_modality=False)
    assert no_views.views == {} and dict(no_views.top) == fused  # the fused view does not depend on the others


def test_an_audio_file_gets_no_video_view(run: Path, tmp_path: Path) -> None:
    (result,) = avformer.load(run, device="cpu").predict([write_wav(tmp_path / "tone.wav")])
    assert result.ok and set(result.views) == {"audio"} and any("no video" in n for n in result.notes)


def test_embed_returns_features_of_the_files_that_load(run: Path, clips: list[Path], tmp_path: Path) -> None:
    emb = avformer.load(run, device="cpu").embed([clips[0], tmp_path / "missing.mp4", clips[1]])
    assert emb.index.tolist() == [0, 2] and emb.ids == [str(clips[0]), str(clips[1])]
    assert emb.video_pooled is not None and emb.audio_pooled is not None
    assert emb.video_pooled.shape[0] == 2 and torch.isfinite(emb.video_pooled).all()


def test_create_and_list_models_from_the_package() -> None:
    assert "mat_tiny" in avformer.list_models("mat")
    net = avformer.create_model("mat_tiny", num_classes=4, input_size=(64, 100))
    assert net(torch.zeros(1, 1, 64, 100)).shape == (1, 4)
    with pytest.raises(AttributeError):
        avformer.no_such_thing
