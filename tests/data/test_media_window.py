"""decode_clip(window=...): the window is chosen from the header duration in the same open."""

from __future__ import annotations

from pathlib import Path

import pytest

import avformer.data.media as media
from avformer.data.dataset import AVDataset, DataConfig
from avformer.data.manifest import read_manifest
from avformer.data.media import decode as media_decode
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.video import VideoTransformConfig


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clips")
    write_dataset(out, SynthConfig(num_clips=3, seconds=2.0, size=32, fps=8), workers=1)
    return out


def test_window_from_duration_equals_explicit_window(clips: Path) -> None:
    path = str(clips / "clips" / "000000.mp4")
    seen: list[float | None] = []

    def last_second(duration: float | None) -> tuple[float, float | None]:
        seen.append(duration)
        assert duration is not None
        return duration - 1.0, duration

    chosen = media.decode_clip(path, window=last_second, fps=8)
    assert seen and seen[0] == pytest.approx(2.0, abs=0.1)
    explicit = media.decode_clip(path, seen[0] - 1.0, seen[0], fps=8)
    assert chosen.start == explicit.start and (chosen.video == explicit.video).all()
    assert (chosen.audio == explicit.audio).all()


def test_dataset_opens_each_file_once(clips: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_open = media_decode._open

    def counting_open(path: str, deadline: float) -> object:
        calls.append(path)
        return real_open(path, deadline)

    monkeypatch.setattr(media_decode, "_open", counting_open)  # where decode_clip looks it up
    cfg = DataConfig(clip_seconds=1.0, video=VideoTransformConfig(num_frames=4, fps=4.0, size=32, short_side=32))
    ds = AVDataset(read_manifest(clips / "manifest.csv"), cfg, train=True)
    for i in range(len(ds)):
        assert "__skipped__" not in ds[i]
    assert len(calls) == len(ds)  # the random window is chosen inside the one open
    calls.clear()
    ds[0]
    assert len(calls) == 1
