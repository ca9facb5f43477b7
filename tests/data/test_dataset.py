"""AVDataset / collate / make_loader on real MP4 files written by the synthetic generator, plus bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avformer.data.audio import AudioFeatureConfig
from avformer.data.dataset import AVDataset, DataConfig, LoadStats, collate, make_loader, set_epoch
from avformer.data.manifest import Manifest, ManifestRow, read_manifest
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.video import VideoTransformConfig
from tests._paths import shared_path

CFG = DataConfig(
    clip_seconds=1.0,
    video=VideoTransformConfig(num_frames=4, fps=4.0, size=32, short_side=32),
    audio=AudioFeatureConfig(num_mel_bins=32, num_frames=100),
)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=12, seconds=1.5, size=32, fps=8), workers=1)
    return out


@pytest.fixture(scope="module")
def manifest(synth_dir: Path) -> Manifest:
    return read_manifest(synth_dir / "manifest.csv")


def test_sample_keys_and_shapes(manifest: Manifest) -> None:
    ds = AVDataset(manifest, CFG, train=False)
    s = ds[0]
    assert s["video"].shape == (3, 4, 32, 32) and s["video"].dtype == torch.float32
    assert s["audio"].shape == (1, 32, 100)
    assert bool(s["has_audio"]) and bool(s["has_video"])
    assert s["label"].dtype == torch.long and 0 <= int(s["label"]) < len(manifest.classes)
    assert s["id"] == manifest[0].id and s["index"] == 0


def test_train_randomness_is_seeded(manifest: Manifest) -> None:
    a = AVDataset(manifest, CFG, train=True, seed=1)
    b = AVDataset(manifest, CFG, train=True, seed=1)
    assert torch.equal(a[3]["video"], b[3]["video"])
    a.set_epoch(1)
    assert not torch.equal(a[3]["video"], b[3]["video"])  # another epoch, another crop / window


def test_multi_clip_eval_stacks_views(manifest: Manifest) -> None:
    ds = AVDataset(manifest, DataConfig(**{**CFG.__dict__, "num_test_clips": 3}), train=False)
    s = ds[0]
    assert s["video"].shape == (3, 3, 4, 32, 32) and s["audio"].shape == (3, 1, 32, 100)


def test_multi_crop_eval_views_are_clip_major(manifest: Manifest) -> None:
    cfg = DataConfig(**{**CFG.__dict__, "num_test_clips": 2, "num_test_crops": 3})
    s = AVDataset(manifest, cfg, train=False)[0]
    assert s["video"].shape == (6, 3, 4, 32, 32) and s["audio"].shape == (6, 1, 32, 100)
    assert torch.equal(s["audio"][0], s["audio"][2]) and not torch.equal(s["audio"][0], s["audio"][3])
    clips = AVDataset(manifest, DataConfig(**{**CFG.__dict__, "num_test_clips": 2}), train=False)[0]
    torch.testing.assert_close(s["video"][1], clips["video"][0])  # the middle crop is the centre crop
    torch.testing.assert_close(s["video"][4], clips["video"][1])
    audio_only = DataConfig(**{**CFG.__dict__, "modalities": ("audio",), "num_test_crops": 3})
    assert AVDataset(manifest, audio_only, train=False)[0]["audio"].shape == (1, 32, 100)  # no video, no crops
    with pytest.raises(ValueError):
        DataConfig(num_test_crops=0)


def test_bad_rows_are_skipped_and_counted(manifest: Manifest, synth_dir: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    truncated = tmp_path / "truncated.mp4"
    data = Path(manifest[0].path).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    label = manifest[0].labels
    bad = [
        ManifestRow(str(tmp_path / "missing.mp4"), label, id="missing"),
        ManifestRow(str(garbage), label, id="garbage"),
        ManifestRow(str(truncated), label, id="truncated"),
    ]
    mixed = Manifest(list(manifest.rows[:5]) + bad, manifest.classes)
    ds = AVDataset(mixed, CFG, train=True)
    stats = LoadStats()
    for batch in make_loader(ds, batch_size=4, shuffle=False):
        stats.update(batch)
    skipped = {row_id for row_id, _ in stats.skipped}
    assert {"missing", "garbage"} <= skipped
    assert stats.loaded + len(stats.skipped) == len(mixed)
    assert stats.loaded >= 5
    assert f"{len(stats.skipped)} skipped" in stats.summary()


def test_all_bad_batch_is_empty_not_an_error() -> None:
    batch = collate([{"__skipped__": True, "id": "x", "index": 0, "reason": "broken"}])
    assert batch["batch_size"] == 0 and batch["skipped"] == [("x", "broken")]


def test_missing_audio_is_masked(manifest: Manifest, tmp_path: Path) -> None:
    import av

    # re-mux the first clip without its audio stream
    src = Path(manifest[0].path)
    dst = tmp_path / "silent.mp4"
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is None:
                continue
            packet.stream = vout
            out.mux(packet)
    ds = AVDataset(Manifest([ManifestRow(str(dst), manifest[0].labels, id="silent")], manifest.classes), CFG)
    s = ds[0]
    assert not bool(s["has_audio"]) and bool(s["has_video"])
    assert torch.count_nonzero(s["audio"]) == 0
    audio_only = AVDataset(ds.manifest, DataConfig(**{**CFG.__dict__, "modalities": ("audio",)}))
    assert "__skipped__" in audio_only[0]  # nothing requested is present: skipped, not zeros


@pytest.mark.parametrize("workers", [2])
def test_two_worker_loading_matches_single_process(manifest: Manifest, workers: int) -> None:
    ds = AVDataset(manifest, CFG, train=True, seed=3)
    one = list(make_loader(ds, batch_size=5, shuffle=True, seed=7))
    many = list(make_loader(ds, batch_size=5, shuffle=True, seed=7, num_workers=workers))
    assert [b["id"] for b in one] == [b["id"] for b in many]
    for b1, b2 in zip(one, many, strict=True):
        assert torch.equal(b1["video"], b2["video"]) and torch.equal(b1["audio"], b2["audio"])
    assert sum(b["batch_size"] for b in many) == len(manifest)


def test_text_column_is_carried(synth_dir: Path) -> None:
    m = read_manifest(synth_dir / "manifest.csv")
    rows = [ManifestRow(r.path, r.labels, text="a caption" if i == 0 else None, id=r.id) for i, r in enumerate(m)]
    ds = AVDataset(Manifest(rows[:2], m.classes), CFG)
    batch = collate([ds[0], ds[1]])
    assert batch["text"] == ["a caption", None]


def test_set_epoch_reaches_persistent_workers(manifest: Manifest) -> None:
    ds = AVDataset(manifest, CFG, train=True, seed=3)
    loader = make_loader(ds, batch_size=12, shuffle=True, seed=5, num_workers=2)
    set_epoch(loader, 0)
    e0 = next(iter(loader))
    set_epoch(loader, 1)
    e1 = next(iter(loader))
    assert e0["id"] != e1["id"]  # a new order
    fresh = AVDataset(manifest, CFG, train=True, seed=3)
    ref = make_loader(fresh, batch_size=12, shuffle=True, seed=5)
    set_epoch(ref, 1)
    r1 = next(iter(ref))
    assert e1["id"] == r1["id"]
    assert torch.equal(e1["video"], r1["video"])  # workers saw epoch 1: same crops as a fresh process at epoch 1


def test_audio_dither_is_seeded_and_train_only(manifest: Manifest) -> None:
    cfg = DataConfig(
        clip_seconds=1.0,
        modalities=("audio",),
        audio=AudioFeatureConfig(num_mel_bins=32, num_frames=100, dither=1e-3),
    )
    plain = AVDataset(manifest, DataConfig(clip_seconds=1.0, modalities=("audio",), audio=CFG.audio))
    ev = AVDataset(manifest, cfg, train=False)
    assert torch.equal(ev[0]["audio"], plain[0]["audio"])  # no dither at evaluation
    a, b = AVDataset(manifest, cfg, train=True, seed=3), AVDataset(manifest, cfg, train=True, seed=3)
    torch.manual_seed(0)
    x = a[0]["audio"]
    torch.manual_seed(1)  # the global RNG must not matter: the dither comes from the per-sample generator
    assert torch.equal(x, b[0]["audio"])


def test_multi_clip_eval_of_file_without_duration(manifest: Manifest) -> None:
    # a file whose header has no duration (a live-recorded WebM) must give as many views as any other file,
    # else the batch cannot be stacked and the epoch dies
    no_duration = shared_path("media", "robust", "moviepy__no_duration.webm")
    rows = [ManifestRow(str(no_duration), (manifest.classes[0],), id="nodur"), manifest[0]]
    cfg = DataConfig(clip_seconds=1.0, video=CFG.video, audio=CFG.audio, num_test_clips=3)
    ds = AVDataset(Manifest(rows, list(manifest.classes)), cfg)
    unknown, known = ds[0], ds[1]
    assert unknown["video"].shape == known["video"].shape == (3, 3, 4, 32, 32)
    assert unknown["audio"].shape == known["audio"].shape
    assert collate([unknown, known])["batch_size"] == 2


def test_eval_sampler_splits_without_padding() -> None:
    from avformer.data.dataset import EvalSampler

    shares = [list(EvalSampler(7, 3, r)) for r in range(3)]
    assert sorted(i for s in shares for i in s) == list(range(7))  # each index once, none repeated
    assert [len(EvalSampler(7, 3, r)) for r in range(3)] == [3, 2, 2]
    with pytest.raises(ValueError):
        EvalSampler(7, 2, 2)
