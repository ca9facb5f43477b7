"""Audio-visual synchronisation: the offset grid of the data, the envelope baseline, and the av_sync task."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from avformer.data.audio import AudioFeatureConfig
from avformer.data.config import DataConfig, ViewConfig
from avformer.data.dataset import AVDataset, collate
from avformer.data.manifest import read_manifest
from avformer.data.synth import SynthConfig, _encode_mp4, write_dataset
from avformer.data.synth_events import render_event_clip
from avformer.data.video import VideoTransformConfig
from avformer.data.views import ViewError, place_views
from avformer.metrics.sync import envelope_baseline_scores, offset_accuracy, offset_grid, offset_shifts
from avformer.models import create_model
from avformer.models.base import EncoderOutput
from avformer.tasks.registry import TaskData, get_task
from avformer.tasks.sync import CorrelationHead, SyncOptions, SyncTask, time_sequence

GRID = offset_grid(0.5, 9)
SR = 16000


def test_offset_grid_and_accuracy() -> None:
    assert GRID == (-0.5, -0.375, -0.25, -0.125, 0.0, 0.125, 0.25, 0.375, 0.5)
    assert offset_shifts(GRID, 16) == [-8, -6, -4, -2, 0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="whole steps"):
        offset_shifts(GRID, 4)  # 0.125 s is half a frame at 4 fps
    with pytest.raises(ValueError, match="whole steps"):
        offset_shifts(GRID, 25)
    pred, target = torch.tensor([0, 3, 5, 8]), torch.tensor([0, 4, 7, 8])
    assert offset_accuracy(pred, target) == 0.5 and offset_accuracy(pred, target, 1) == 0.75
    with pytest.raises(ValueError):
        offset_grid(0.5, 1)


def test_view_config_grid_validation() -> None:
    cfg = ViewConfig(audio_offset_grid=[-1, 0, 1])  # type: ignore[arg-type]  # YAML: a list of ints
    assert cfg.audio_offset_grid == (-1.0, 0.0, 1.0) and cfg.shifted and cfg.active
    for bad in ((0.5, 0.0), (0.1,), (0.0, float("nan"))):
        with pytest.raises(ValueError, match="ascending"):
            ViewConfig(audio_offset_grid=bad)
    with pytest.raises(ValueError, match="not both"):
        ViewConfig(audio_offset_grid=GRID, max_audio_offset=0.5)
    with pytest.raises(ValueError, match="view_gap"):
        ViewConfig(audio_offset_grid=GRID, view_gap="adjacent", num_views=2)


@pytest.mark.parametrize("anchor", ["audio", "video"])
def test_grid_views_anchor_window_does_not_depend_on_the_offset(anchor: str) -> None:
    """Where the anchor stream's window lies must say nothing about the class: training and evaluation draw it from
    one range for every offset (a centred eval anchor would put the moved window at one place per class); the other
    window is moved by the offset."""
    cfg = ViewConfig(audio_offset_grid=GRID, grid_anchor=anchor)
    starts: dict[int, list[float]] = {}
    for seed in range(600):
        train = seed % 2 == 0
        (w,) = place_views(0.0, 4.0, 2.0, cfg, torch.Generator().manual_seed(seed), train=train)
        assert w.offset_class is not None and w.offset == GRID[w.offset_class]
        assert w.audio_start == pytest.approx(w.video_start + w.offset)
        fixed = w.video_start if anchor == "video" else w.audio_start
        assert 0.5 - 1e-9 <= fixed <= 1.5 + 1e-9  # every offset fits: [0.5, 4 - 2 - 0.5]
        for t in (w.video_start, w.audio_start):
            assert t >= 0.0 and t + 2.0 <= 4.0 + 1e-9
        starts.setdefault(w.offset_class, []).append(fixed)
    assert set(starts) == set(range(9))  # every class is drawn
    means = [np.mean(v) for v in starts.values()]
    assert max(means) - min(means) < 0.25  # the same distribution for every class (mean ~1.0)
    evals = [place_views(0.0, 4.0, 2.0, cfg, torch.Generator().manual_seed(s), train=False)[0] for s in range(200)]
    moved = [(w.audio_start if anchor == "video" else w.video_start, w.offset_class) for w in evals]
    # the moved window's place alone must not give the class away: several classes share each place
    by_place: dict[float, set[int | None]] = {}
    for t, k in moved:
        by_place.setdefault(round(t * 4) / 4, set()).add(k)  # quarter-second bins
    assert np.mean([len(ks) for ks in by_place.values()]) > 2
    again = place_views(0.0, 4.0, 2.0, cfg, torch.Generator().manual_seed(7), train=False)[0]
    assert again == evals[7]  # evaluation stays deterministic per generator
    with pytest.raises(ViewError, match="shorter than the 2 s window plus the offset grid"):
        place_views(0.0, 2.9, 2.0, cfg, torch.Generator(), train=True)


def test_grid_margin_keeps_windows_off_the_ends() -> None:
    """A one-frame margin: no window reads the first or the last frame of the row, whatever the class (an edge
    frame would tell which offset moved the window there)."""
    cfg = ViewConfig(audio_offset_grid=GRID, grid_margin=0.0625)
    for seed in range(100):
        for train in (True, False):
            (w,) = place_views(0.0, 3.0, 1.875, cfg, torch.Generator().manual_seed(seed), train=train)
            for t in (w.video_start, w.audio_start):
                assert t >= 0.0625 - 1e-9 and t + 1.875 <= 3.0 - 0.0625 + 1e-9
    with pytest.raises(ViewError, match="margin"):
        place_views(0.0, 3.0, 2.0, cfg, torch.Generator(), train=True)
    with pytest.raises(ValueError, match="grid_margin"):
        ViewConfig(grid_margin=0.1)


def _marked_clip(path: Path, click_s: float, flash_frame: int, seconds: float = 3.0) -> None:
    """An MP4 of quiet noise with one click at ``click_s`` and a grey picture that is white on ``flash_frame``."""
    cfg = SynthConfig(seconds=seconds, size=32, fps=16)
    rng = np.random.default_rng(0)
    audio = (0.002 * rng.standard_normal(cfg.num_samples)).astype(np.float32)
    i = round(click_s * SR)
    audio[i : i + 16] = np.hanning(16).astype(np.float32) * 0.9
    frames = np.full((cfg.num_frames, 32, 32, 3), 128, dtype=np.uint8)
    frames[flash_frame] = 255
    _encode_mp4(path, frames, audio, cfg)


def _waveform_cfg(
    seconds: float = 2.0, grid: tuple[float, ...] = GRID, fps: float = 16.0, anchor: str = "audio"
) -> DataConfig:
    return DataConfig(
        clip_seconds=seconds,
        video=VideoTransformConfig(
            num_frames=round(seconds * fps), fps=fps, size=32, short_side=32, train_scale=(1.0, 1.0), hflip=0.0
        ),
        audio=AudioFeatureConfig(kind="waveform", num_frames=None, mean=None, std=None),
        views=ViewConfig(audio_offset_grid=grid, grid_anchor=anchor),
    )


@pytest.mark.parametrize("anchor", ["audio", "video"])
def test_offset_moves_the_streams_apart_by_the_class(tmp_path: Path, anchor: str) -> None:
    """A click at 1.3 s and a white frame at 1.25 s of the file: in every sample the click lands at sample
    (1.3 - audio_start) * sr and the flash at frame (1.25 - video_start) * fps, with audio_start - video_start the
    class's offset; the moved window is real media up to its last sample (no padding, even at the largest offset)."""
    clip = tmp_path / "marked.mp4"
    _marked_clip(clip, 1.3, 20)
    (tmp_path / "m.csv").write_text("path,label\nmarked.mp4,a\n")
    ds = AVDataset(read_manifest(tmp_path / "m.csv"), _waveform_cfg(anchor=anchor), train=True, seed=0)
    seen = set()
    for epoch in range(40):
        ds.set_epoch(epoch)
        s = ds[0]
        assert "reason" not in s, s.get("reason")
        k = int(s["audio_offset_class"])
        o = GRID[k]
        assert float(s["audio_offset"]) == pytest.approx(o)
        a0, v0 = (0.5, 0.5 - o) if anchor == "audio" else (0.5 + o, 0.5)  # 3-s clip, 2-s window, 1-s grid span
        wave = s["audio"][0].numpy()
        assert wave.shape == (32000,)
        assert abs(int(np.abs(wave).argmax()) - (1.3 - a0) * SR) <= 8, (k, np.abs(wave).argmax())
        assert np.sqrt(np.mean(wave[-160:] ** 2)) > 5e-4  # the last 10 ms are the file's noise, not zeros
        video = s["video"]  # (C, T, H, W), normalised: the white frame is the brightest
        assert int(video.mean(dim=(0, 2, 3)).argmax()) == round((1.25 - v0) * 16), (k, anchor)
        seen.add(k)
    assert len(seen) >= 7


def test_evaluation_offsets_are_fixed_per_clip(tmp_path: Path) -> None:
    clip = tmp_path / "marked.mp4"
    _marked_clip(clip, 1.0, 10)
    (tmp_path / "m.csv").write_text("path,label\n" + "marked.mp4,a\n" * 12)
    ds = AVDataset(read_manifest(tmp_path / "m.csv"), _waveform_cfg(), train=False, seed=3)
    first = [int(ds[i]["audio_offset_class"]) for i in range(12)]
    assert first == [int(ds[i]["audio_offset_class"]) for i in range(12)]
    assert len(set(first)) > 2


@pytest.fixture(scope="module")
def event_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sync_events")
    write_dataset(root, SynthConfig(num_clips=8, seconds=3.0, size=32, events=True, difficulty=0.3), workers=1)
    return root


def _spec_cfg() -> DataConfig:
    cfg = _waveform_cfg()
    return replace(cfg, audio=AudioFeatureConfig(num_mel_bins=32, num_frames=200))


def test_baseline_recovers_known_offsets(event_clips: Path) -> None:
    """On clean one-object event clips the envelope correlation finds the offset; with the audio of other clips it
    cannot (so it reads the timing, not something else of the window)."""
    ds = AVDataset(read_manifest(event_clips / "manifest.csv"), _spec_cfg(), train=True, seed=0)
    samples = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        samples += [ds[i] for i in range(len(ds))]
    batch = collate(samples)
    assert batch["batch_size"] == 24
    target = batch["audio_offset_class"]
    shifts = offset_shifts(GRID, 16.0)
    pred = envelope_baseline_scores(batch["audio"], batch["video"], shifts).argmax(dim=1)
    assert offset_accuracy(pred, target) >= 0.75 and offset_accuracy(pred, target, 1) >= 0.85
    # roll by 1, not by 8: the 24 samples are 8 clips x 3 epochs, so a roll by 8 pairs a clip with its own audio
    other = envelope_baseline_scores(batch["audio"].roll(1, dims=0), batch["video"], shifts).argmax(dim=1)
    assert offset_accuracy(other, target) <= 0.35


def test_baseline_on_hand_made_tensors() -> None:
    """Flashes at frames 5, 12, 20 of the video; audio bursts at frames 5 - s: the best score is shift s."""
    B, T = 9, 32
    video = torch.zeros(B, 3, T, 8, 8)
    audio = torch.zeros(B, 1, 16, 200)
    for b, s in enumerate(offset_shifts(GRID, 16.0)):
        for f in (9, 14, 21):
            video[b, :, f] = 1.0  # a one-frame flash
            a = f - s  # audio frame tau pairs with video frame tau + s
            audio[b, 0, :, round(a * 200 / T) : round((a + 1) * 200 / T)] = 1.0
    scores = envelope_baseline_scores(audio, video, offset_shifts(GRID, 16.0))
    assert scores.argmax(dim=1).tolist() == list(range(9))


# ---- the task ---------------------------------------------------------------------------------------------------

_TINY = {
    "num_classes": 9,
    "audio_overrides": {
        "embed_dim": 32, "depth": 1, "num_heads": 2, "num_mel_bins": 16, "num_frames": 40, "stem": "linear",
        "patch_size": [16, 4], "freq_stride": 16, "time_stride": 4, "pos_embed": "joint",
    },
    "video_overrides": {
        "embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 8, "img_size": 16, "stem": "linear",
        "tubelet_size": [1, 8, 8],
    },
    "fusion_config": {"depth": 1, "num_heads": 2},
}  # fmt: skip


SMALL = offset_grid(0.25, 9)  # the tiny model's 0.5-s window: 8 frames at 16 fps, shifts -4..4


def _task(**options: object) -> SyncTask:
    torch.manual_seed(0)
    model = create_model("xattn_tiny", **_TINY)
    entry = get_task("av_sync")
    opts = entry.parse_options({"window_seconds": 0.5, "offsets": list(SMALL), **options})
    task = entry.build(model, opts, TaskData())
    assert isinstance(task, SyncTask)
    return task


def _batch(n: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(9, (n,), generator=g)
    return {
        "audio": torch.randn(n, 1, 16, 40, generator=g),
        "video": torch.randn(n, 3, 8, 16, 16, generator=g),
        "audio_offset_class": target,
        "audio_offset": torch.tensor([SMALL[k] for k in target.tolist()]),
        "label": (target + 3) % 9,  # a manifest label that must not be the target
        "batch_size": n,
    }


def test_task_registered_unsupervised_and_checks_the_model() -> None:
    entry = get_task("av_sync")
    assert entry.supervised is False and entry.model_kwargs(TaskData()) == {}
    model = create_model("xattn_tiny", **{**_TINY, "num_classes": 5})
    with pytest.raises(ValueError, match="num_classes: 9"):
        entry.build(model, SyncOptions(), TaskData())
    with pytest.raises(ValueError, match="one view"):
        entry.build(create_model("xattn_tiny", **_TINY), SyncOptions(), TaskData(num_views=2))
    with pytest.raises(ValueError, match="ascending"):
        SyncOptions(offsets=(0.5, 0.0))
    with pytest.raises(ValueError, match="head"):
        SyncOptions(head="nope")
    cnn_audio = create_model("xattn_tiny", num_classes=9)  # the fusion family's AST pools time away
    task = entry.build(cnn_audio, SyncOptions(), TaskData())
    with pytest.raises(ValueError, match="no time axis"):
        task.scores({"audio": torch.zeros(2, 1, 64, 100), "video": torch.zeros(2, 3, 8, 32, 32)})


def test_correlation_head_reads_the_shifted_diagonal() -> None:
    """With identity projections, class k scores the audio against the video moved by shifts[k]: features that
    repeat the video's pattern ``s`` steps earlier in the audio win at shift ``s`` (the baseline's convention)."""
    head = CorrelationHead(8, 8, 8, 9)
    with torch.no_grad():
        for proj in (head.audio_proj, head.video_proj):
            proj[0].weight.fill_(1.0), proj[0].bias.zero_()
            proj[1].weight.copy_(torch.eye(8)), proj[1].bias.zero_()
    shifts = offset_shifts(GRID, 16.0)
    g = torch.Generator().manual_seed(0)
    video = torch.randn(9, 32, 8, generator=g)
    audio = torch.stack([video[k].roll(-s, dims=0) for k, s in enumerate(shifts)])  # audio tau = video tau + s
    assert head(audio, video, shifts).argmax(dim=1).tolist() == list(range(9))


def test_time_sequence_needs_a_time_axis() -> None:
    out = EncoderOutput(torch.zeros(2, 8, 4), torch.zeros(2, 4), (8,))
    with pytest.raises(ValueError, match="no time axis"):
        time_sequence(out, "spectrogram")
    spec = EncoderOutput(torch.arange(2 * 6 * 1.0).view(1, 6, 2), torch.zeros(1, 2), (2, 3))  # (F', T') = (2, 3)
    assert time_sequence(spec, "spectrogram").shape == (1, 3, 2)
    assert time_sequence(EncoderOutput(torch.zeros(1, 12, 2), torch.zeros(1, 2), (3, 2, 2)), "video").shape == (1, 3, 2)


@pytest.mark.parametrize("head", ["correlation", "cls"])
def test_training_step_uses_the_offset_class_and_learns(head: str) -> None:
    task = _task(head=head)
    assert (task.head is not None) == (head == "correlation")
    batch = _batch()
    loss, logs = task.training_step(batch)
    logits = task.scores(batch)
    expected = torch.nn.functional.cross_entropy(logits, batch["audio_offset_class"])
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)  # the class, not the label
    assert set(logs) == {"ce", "acc"}
    opt = torch.optim.AdamW(task.model.parameters(), lr=2e-3)
    first = float(loss.detach())
    for _ in range(25):
        loss, _ = task.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_mismatched_grid_and_missing_target_are_errors() -> None:
    task = _task()
    batch = _batch()
    with pytest.raises(ValueError, match="audio_offset_grid"):
        task.training_step({k: v for k, v in batch.items() if k != "audio_offset_class"})
    wrong = dict(batch, audio_offset=batch["audio_offset"] * 2)
    with pytest.raises(ValueError, match=r"task\.options\.offsets"):
        task.training_step(wrong)


def test_validation_metrics() -> None:
    task = _task()
    out = task.validation_step(_batch(6))
    assert out["logits"].shape == (6, 9) and out["baseline_scores"].shape == (6, 9)
    target = torch.tensor([0, 4, 8, 2, 5, 6])
    logits = torch.full((6, 9), -5.0)
    logits[torch.arange(6), torch.tensor([0, 5, 8, 0, 5, 6])] = 5.0
    base = torch.zeros(6, 9)
    base[torch.arange(6), torch.tensor([1, 4, 2, 2, 5, 6])] = 1.0
    m = task.validation_end(
        {
            "target": target,
            "logits": logits,
            "baseline_scores": base,
            "has_audio": torch.tensor([True] * 5 + [False]),
            "has_video": torch.ones(6, dtype=torch.bool),
        }
    )
    assert m["clips"] == 5  # the clip without audio is left out
    assert m["sync_acc"] == pytest.approx(3 / 5) and m["sync_acc_pm1"] == pytest.approx(4 / 5)
    assert m["baseline_acc"] == pytest.approx(3 / 5) and m["baseline_acc_pm1"] == pytest.approx(4 / 5)
    assert m["chance"] == pytest.approx(1 / 9)
    assert task.chance_losses(32) == {"ce": pytest.approx(math.log(9))}


def test_rendered_events_fit_the_sync_recipe() -> None:
    """The recipe's clips (3 s, 2-s windows, +-0.5 s) always hold bursts the window pair can see."""
    cfg = SynthConfig(seconds=3.0, size=32, events=True, objects=(2, 2))
    for i in range(10):
        ev = render_event_clip(cfg, i)[3]
        inside = [f for f in ev["burst_frames"] if 8 <= f < 40]  # the video window 0.5-2.5 s
        assert len(inside) >= 1 and len(ev["boxes"]) == 2
