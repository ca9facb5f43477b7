"""Views of one clip and audio shifted against the video: window placement, and the dataset reading real audio at
the shifted time (a ramp WAV whose sample values are the time)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from avformer.data.audio import AudioFeatureConfig
from avformer.data.config import DataConfig, ViewConfig
from avformer.data.dataset import AVDataset, collate
from avformer.data.manifest import Manifest, ManifestRow
from avformer.data.video import VideoTransformConfig
from avformer.data.views import ViewError, place_views
from tests.cli._tiny_run import make_synth, write_video_only

SR = 16000
SECONDS = 3.0


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(20))
def test_random_offsets_keep_both_windows_inside_the_span(seed: int) -> None:
    cfg = ViewConfig(num_views=3, max_audio_offset=0.8, min_audio_offset=0.2)
    for w in place_views(1.0, 4.0, 1.0, cfg, _gen(seed), train=True):
        assert 0.2 - 1e-9 <= abs(w.offset) <= 0.8 + 1e-9
        for s in (w.video_start, w.audio_start):
            assert s >= 1.0 - 1e-9 and s + 1.0 <= 4.0 + 1e-9


def test_placement_is_seeded_centred_at_eval_and_shares_windows_on_request() -> None:
    cfg = ViewConfig(num_views=2, max_audio_offset=0.5)
    a = place_views(0.0, 3.0, 1.0, cfg, _gen(1), train=True)
    assert a == place_views(0.0, 3.0, 1.0, cfg, _gen(1), train=True)  # a function of the sample's generator
    assert a[0] != a[1]  # two views, two windows
    (ev,) = place_views(0.0, 3.0, 1.0, ViewConfig(audio_offset=0.5), _gen(1), train=False)
    assert ev.offset == 0.5 and ev.video_start == pytest.approx(0.75)  # centred in [0, 1.5]: the room left
    shared = place_views(0.0, 3.0, 1.0, ViewConfig(num_views=2, same_window=True), _gen(1), train=True)
    assert shared[0] == shared[1]


def test_an_offset_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ViewError, match="does not fit"):
        place_views(0.0, 1.5, 1.0, ViewConfig(audio_offset=0.6), _gen(), train=True)
    with pytest.raises(ViewError, match=r"at least 0\.8"):
        place_views(0.0, 1.5, 1.0, ViewConfig(max_audio_offset=1.0, min_audio_offset=0.8), _gen(), train=True)
    with pytest.raises(ValueError, match="not both"):
        ViewConfig(audio_offset=0.1, max_audio_offset=0.5)
    with pytest.raises(ValueError, match="needs audio"):
        DataConfig(modalities=("video",), views=ViewConfig(audio_offset=0.5))


@pytest.mark.parametrize(("gap", "step"), [("overlapped", 0.5), ("adjacent", 1.0), ("far", 2.0)])
@pytest.mark.parametrize("seed", range(5))
def test_view_gaps_place_the_views_that_far_apart_inside_the_span(gap: str, step: float, seed: int) -> None:
    views = place_views(1.0, 5.0, 1.0, ViewConfig(num_views=2, view_gap=gap), _gen(seed), train=True)
    assert len(views) == 2 and all(w.offset == 0.0 for w in views)
    assert views[1].video_start - views[0].video_start == pytest.approx(step)  # far: half the 4-s span
    assert views[0].video_start >= 1.0 - 1e-9 and views[1].video_start + 1.0 <= 5.0 + 1e-9
    (centred,) = place_views(1.0, 5.0, 1.0, ViewConfig(num_views=2, view_gap=gap), _gen(seed), train=False)
    assert centred.video_start == pytest.approx(2.5)


def test_random_gap_draws_the_windows_independently() -> None:
    starts = [place_views(0.0, 5.0, 1.0, ViewConfig(num_views=2), _gen(s), train=True) for s in range(10)]
    gaps = {round(b.video_start - a.video_start, 6) for a, b in starts}
    assert len(gaps) == 10  # no fixed spacing


@pytest.mark.parametrize(("gap", "span"), [("overlapped", 1.4), ("adjacent", 1.9), ("far", 1.9)])
def test_a_clip_too_short_for_the_gap_is_refused(gap: str, span: float) -> None:
    with pytest.raises(ViewError, match="need"):
        place_views(0.0, span, 1.0, ViewConfig(num_views=2, view_gap=gap), _gen(), train=True)


def test_view_gap_options_are_checked() -> None:
    with pytest.raises(ValueError, match="view_gap must be one of"):
        ViewConfig(view_gap="near")
    with pytest.raises(ValueError, match="takes neither same_window nor audio offsets"):
        ViewConfig(num_views=2, view_gap="adjacent", max_audio_offset=0.5)
    with pytest.raises(ValueError, match="takes neither"):
        ViewConfig(num_views=2, view_gap="far", same_window=True)


def test_adjacent_views_read_consecutive_audio(ramp: Path) -> None:
    ds = _audio_ds(ramp, ViewConfig(num_views=2, view_gap="adjacent"), train=True)
    sample = ds[0]
    first, second = (_time_of(sample["audio"][i]) for i in range(2))
    assert second - first == pytest.approx(1.0, abs=2e-3)  # the second window starts where the first ends


@pytest.fixture(scope="module")
def ramp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of mono 16-bit audio whose value at time t is 0.9 t / 3 (a clock in the samples)."""
    path = tmp_path_factory.mktemp("ramp") / "ramp.wav"
    t = np.arange(round(SECONDS * SR)) / SR
    pcm = np.round(0.9 * t / SECONDS * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return path


def _audio_ds(path: Path, views: ViewConfig, *, train: bool = False) -> AVDataset:
    data = DataConfig(
        modalities=("audio",),
        clip_seconds=1.0,
        audio=AudioFeatureConfig(kind="waveform", num_samples=SR),
        views=views,
    )
    return AVDataset(Manifest([ManifestRow(path=str(path), id="ramp")]), data, train=train)


def _time_of(x: torch.Tensor) -> float:
    """The ramp's clock at the first sample of a waveform view."""
    return float(x.flatten()[0]) * SECONDS / 0.9


@pytest.mark.parametrize("offset", [0.5, -0.5, 0.0])
def test_the_shifted_audio_is_read_from_the_file_at_the_shifted_time(ramp: Path, offset: float) -> None:
    sample = _audio_ds(ramp, ViewConfig(audio_offset=offset))[0]
    assert "__skipped__" not in sample
    video_start = (max(0.0, -offset) + SECONDS - 1.0 - max(0.0, offset)) / 2  # centred at evaluation
    assert _time_of(sample["audio"]) == pytest.approx(video_start + offset, abs=2e-3)
    if offset != 0.0:
        assert float(sample["audio_offset"]) == offset
    tail = sample["audio"].flatten()[-1]
    assert _time_of(tail[None]) == pytest.approx(video_start + offset + 1.0, abs=2e-3)  # real audio to the end


def test_random_offsets_per_view_in_training(ramp: Path) -> None:
    ds = _audio_ds(ramp, ViewConfig(num_views=2, max_audio_offset=0.7, min_audio_offset=0.3), train=True)
    sample = ds[0]
    assert sample["audio"].shape == (2, 1, SR) and sample["audio_offset"].shape == (2,)
    assert all(0.3 - 1e-6 <= abs(float(o)) <= 0.7 + 1e-6 for o in sample["audio_offset"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["audio_offset"], sample["audio_offset"])  # new draws each epoch
    batch = collate([sample, ds[0]])
    assert batch["audio"].shape == (2, 2, 1, SR) and batch["has_audio"].shape == (2, 2)


def test_rows_that_cannot_hold_the_offset_are_skipped_with_the_reason(ramp: Path, tmp_path: Path) -> None:
    too_far = _audio_ds(ramp, ViewConfig(audio_offset=2.5))[0]
    assert too_far["__skipped__"] and "does not fit" in too_far["reason"]
    silent = write_video_only(tmp_path / "no_audio.mp4")
    data = DataConfig(
        clip_seconds=0.5,
        video=VideoTransformConfig(num_frames=2, fps=4, size=32, short_side=32),
        views=ViewConfig(audio_offset=0.25),
    )
    sample = AVDataset(Manifest([ManifestRow(path=str(silent), id="v")]), data)[0]
    assert sample["__skipped__"] and "no audio for the window shifted by +0.250 s" in sample["reason"]


def test_two_views_of_a_video_clip(tmp_path: Path) -> None:
    manifest = make_synth(tmp_path)
    rows = Manifest([ManifestRow(path=str(manifest.parent / "clips" / p.name), id=p.name)
                     for p in sorted((manifest.parent / "clips").glob("*.mp4"))[:1]])  # fmt: skip
    data = DataConfig(
        clip_seconds=0.5,
        video=VideoTransformConfig(num_frames=2, fps=4, size=32, short_side=32),
        audio=AudioFeatureConfig(num_mel_bins=32, num_frames=50),
        views=ViewConfig(num_views=2),
    )
    sample = AVDataset(rows, data, train=True, seed=3)[0]
    assert sample["video"].shape == (2, 3, 2, 32, 32) and sample["audio"].shape == (2, 1, 32, 50)
    assert sample["has_video"].tolist() == [True, True] and "audio_offset" not in sample
    assert not torch.equal(sample["video"][0], sample["video"][1])  # two windows / augmentations
