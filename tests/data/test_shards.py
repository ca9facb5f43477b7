"""Shards: prepare on synthetic MP4s (plus a garbage file and a missing one), read back, exact epochs, resume, URLs."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from avformer.data.audio import AudioFeatureConfig
from avformer.data.dataset import _SKIP, AVDataset, DataConfig, collate
from avformer.data.manifest import Manifest, read_manifest
from avformer.data.media import decode_clip
from avformer.data.shards import (
    INDEX_NAME,
    PrepareConfig,
    ShardDataset,
    epoch_plan,
    iter_shard,
    load_index,
    make_shard_loader,
    read_sample,
    write_shards,
)
from avformer.data.shards import reader as shard_reader
from avformer.data.video import VideoTransformConfig
from tests.data._http import serve_folder
from tests.data._shard_data import write_with_bad_rows

CFG = DataConfig(
    clip_seconds=1.0,
    video=VideoTransformConfig(num_frames=4, fps=8.0, size=32, short_side=32),
    audio=AudioFeatureConfig(num_mel_bins=32, num_frames=100),
)
PREP = PrepareConfig(fps=8.0, size=32, sample_rate=16000, shard_size=5)
NUM_GOOD = 12


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 synthetic clips (1.5 s, 32x32 at 8 fps) + a garbage file + a missing path in bad.csv."""
    return write_with_bad_rows(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def manifest(data_dir: Path) -> Manifest:
    return read_manifest(data_dir / "bad.csv", classes=data_dir / "classes.txt")


@pytest.fixture(scope="module")
def shard_dir(manifest: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_shards(manifest, out, PREP, workers=1)
    return out


def _all_ids(shard_dir: Path) -> dict[tuple[str, int], str]:
    index = load_index(shard_dir)
    return {(s.url, m): json.loads(members["json"])["id"] for s in index.shards for m, _, members in iter_shard(s.url)}


def _epoch(ds: ShardDataset, epoch: int, num_workers: int) -> list[dict[str, Any]]:
    ds.set_epoch(epoch)
    return list(make_shard_loader(ds, num_workers=num_workers))


def _ids(batches: list[dict[str, Any]]) -> list[str]:
    return [i for b in batches for i in b.get("id", [])]


# ---- prepare --------------------------------------------------------------------------------------------------


def test_prepare_writes_shards_and_lists_bad_rows(shard_dir: Path, manifest: Manifest) -> None:
    index = json.loads((shard_dir / INDEX_NAME).read_text())
    assert index["num_samples"] == NUM_GOOD
    assert [s["samples"] for s in index["shards"]] == [5, 5, 2]
    assert sorted(p.name for p in shard_dir.iterdir()) == [INDEX_NAME] + [f"shard-00000{i}.tar" for i in range(3)]
    failed = {f["id"]: f["reason"] for f in index["failed"]}
    assert set(failed) == {"garbage.mp4", "missing/none.mp4"}
    assert failed["missing/none.mp4"] == "file not found"
    assert "cannot open" in failed["garbage.mp4"]
    assert index["classes"] == manifest.classes
    assert index["decode"]["fps"] == 8.0 and index["decode"]["size"] == 32
    with tarfile.open(shard_dir / "shard-000000.tar") as tf:
        names = tf.getnames()[:3]
        assert all(m.mtime == 0 and m.uid == 0 for m in tf.getmembers())
    assert names == ["00000000.json", "00000000.video.npy.gz", "00000000.audio.npy"]


def test_prepare_output_does_not_depend_on_workers(manifest: Manifest, shard_dir: Path, tmp_path: Path) -> None:
    write_shards(manifest, tmp_path, PREP, workers=2)
    for name in ["index.json", "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]:
        assert (tmp_path / name).read_bytes() == (shard_dir / name).read_bytes(), name


def test_stored_sample_equals_direct_decode(shard_dir: Path, manifest: Manifest) -> None:
    index = load_index(shard_dir)
    checked = 0
    for shard in index.shards[:2]:
        for _, key, members in iter_shard(shard.url, lambda m: m in (0, 3)):
            stored = read_sample(key, members)
            row = manifest[int(stored.meta["index"])]
            clip = decode_clip(row.path, 0.0, None, fps=8.0, size=32, sample_rate=16000)
            assert stored.video is not None and clip.video is not None and stored.audio is not None
            assert stored.video.dtype == np.uint8 and np.array_equal(stored.video, clip.video)  # frames exact
            assert stored.audio.dtype == np.float16 and np.array_equal(stored.audio, clip.audio.astype(np.float16))
            np.testing.assert_allclose(stored.audio.astype(np.float32), clip.audio, rtol=2**-11, atol=2**-24)
            assert stored.meta["id"] == row.id and stored.meta["labels"] == list(row.labels)
            assert stored.meta["start"] == 0.0 and stored.meta["num_frames"] == len(clip.video)
            checked += 1
    assert checked == 4


def test_shard_eval_sample_matches_avdataset(manifest: Manifest, tmp_path: Path) -> None:
    """Same window (prepare's centre clip = AVDataset's eval window), same transforms -> the same tensors."""
    cfg = DataConfig(
        clip_seconds=1.0,
        video=VideoTransformConfig(num_frames=4, fps=8.0, size=24, short_side=32),
        audio=AudioFeatureConfig(num_mel_bins=32, num_frames=100),
    )
    good = manifest.subset(range(4))
    write_shards(good, tmp_path, PrepareConfig(fps=8.0, size=32, clip_seconds=1.0, audio_dtype="float32"))
    shards = list(ShardDataset(tmp_path, cfg, train=False))
    ref = AVDataset(good, cfg, train=False)
    assert [s["id"] for s in shards] == [r.id for r in good]
    for s in shards:
        r = ref[s["index"]]
        assert set(s) == set(r)
        assert torch.equal(s["video"], r["video"])
        assert torch.equal(s["audio"], r["audio"])  # float32 audio: the same waveform
        assert torch.equal(s["label"], r["label"]) and bool(s["has_audio"]) and bool(s["has_video"])


def test_shard_views_match_avdataset_views(manifest: Manifest, tmp_path: Path) -> None:
    """Audio shifted 0.5 s against the video (the 1.5 s clips leave exactly that room): evaluation places the video
    window at 0 and the audio at 0.5 s in both readers; training gives two views with their offsets; a shift the clip
    cannot hold is skipped with its reason, as AVDataset skips it."""
    from avformer.data.config import ViewConfig

    cfg = DataConfig(
        clip_seconds=1.0,
        video=VideoTransformConfig(num_frames=4, fps=8.0, size=24, short_side=32),
        audio=AudioFeatureConfig(num_mel_bins=32, num_frames=100),
        views=ViewConfig(audio_offset=0.5),
    )
    sub = manifest.subset(range(3))  # rows with an end: both readers place the views in the same 1.5 s span
    good = dataclasses.replace(sub, rows=[dataclasses.replace(r, start=0.0, end=1.5) for r in sub.rows])
    write_shards(good, tmp_path, PrepareConfig(fps=8.0, size=32, audio_dtype="float32"))  # whole 1.5 s clips
    shards = list(ShardDataset(tmp_path, cfg, train=False))
    ref = AVDataset(good, cfg, train=False)
    for s in shards:
        r = ref[s["index"]]
        assert set(s) == set(r) and float(s["audio_offset"]) == 0.5
        assert torch.equal(s["video"], r["video"]) and torch.equal(s["audio"], r["audio"])
    unshifted = ShardDataset(tmp_path, dataclasses.replace(cfg, views=ViewConfig()), train=False)
    assert not torch.equal(next(iter(unshifted))["audio"], shards[0]["audio"])  # the shift moved the audio
    two = ShardDataset(
        tmp_path, dataclasses.replace(cfg, views=ViewConfig(num_views=2, max_audio_offset=0.4)), train=True
    )
    s = next(iter(two))
    assert s["video"].shape[:2] == (2, 3) and s["audio_offset"].shape == (2,) and s["audio_offset"].abs().max() <= 0.4
    too_far = ShardDataset(tmp_path, dataclasses.replace(cfg, views=ViewConfig(audio_offset=0.8)), train=False)
    skipped = list(too_far)
    assert all(x.get(_SKIP) for x in skipped) and "does not fit" in skipped[0]["reason"]


# ---- streaming: exact epochs, order ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_every_sample_once_per_epoch_and_order(shard_dir: Path, manifest: Manifest, num_workers: int) -> None:
    ds = ShardDataset(shard_dir, CFG, train=True, seed=3, batch_size=3, shuffle_buffer=4)
    names = _all_ids(shard_dir)
    e0, e1 = _epoch(ds, 0, num_workers), _epoch(ds, 1, num_workers)
    good_ids = sorted(r.id for r in manifest.rows[:NUM_GOOD])
    for batches, epoch in ((e0, 0), (e1, 1)):
        ids = _ids(batches)
        assert sorted(ids) == good_ids  # every sample once
        assert len(batches) == len(make_shard_loader(ds)) == 4
        assert [names[k] for k in ds.planned_order(num_workers, epoch)] == ids
        assert batches[0]["video"].shape == (3, 3, 4, 32, 32) and batches[0]["audio"].shape == (3, 1, 32, 100)
    assert _ids(e0) != _ids(e1)  # another epoch, another order
    again = ShardDataset(shard_dir, CFG, train=True, seed=3, batch_size=3, shuffle_buffer=4)
    e1b = _epoch(again, 1, num_workers)
    assert _ids(e1b) == _ids(e1)  # same (seed, epoch): same order and same tensors
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(e1, e1b, strict=True))


def test_eval_order_and_ranks_partition(shard_dir: Path) -> None:
    ids = _ids(_epoch(ShardDataset(shard_dir, CFG, batch_size=4), 0, 0))
    assert ids == [f"clips/{i:06d}.mp4" for i in range(NUM_GOOD)]  # eval, one worker: index order
    per_rank = []
    for rank in range(3):
        ds = ShardDataset(shard_dir, CFG, train=True, batch_size=2, rank=rank, world_size=3, shuffle_buffer=3)
        per_rank.append(_ids(_epoch(ds, 5, 0)))
        assert len(ds) == 4 == len(per_rank[-1])
    assert sorted(i for r in per_rank for i in r) == sorted(ids)


@pytest.mark.parametrize("world_size", [1, 2, 3])
@pytest.mark.parametrize("num_workers", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 3, 4])
def test_epoch_plan_partitions_and_full_batches(world_size: int, num_workers: int, batch_size: int) -> None:
    counts = [5, 5, 2, 7]
    seen: list[tuple[int, int]] = []
    for rank in range(world_size):
        plans = [
            epoch_plan(
                counts,
                seed=0,
                epoch=2,
                shuffle=True,
                shuffle_buffer=4,
                batch_size=batch_size,
                rank=rank,
                world_size=world_size,
                worker=w,
                num_workers=num_workers,
            ).outputs
            for w in range(num_workers)
        ]
        # the loader takes one batch from each worker in turn: all batches but the rank's last are full
        chunks = [[p[k : k + batch_size] for k in range(0, len(p), batch_size)] for p in plans]
        batches = [c[j] for j in range(max(map(len, chunks))) for c in chunks if j < len(c)]
        assert all(len(b) == batch_size for b in batches[:-1])
        n = sum(map(len, plans))
        assert len(batches) == -(-n // batch_size)
        seen += [x for p in plans for x in p]
    assert sorted(seen) == sorted((s, m) for s, c in enumerate(counts) for m in range(c))


# ---- resume -------------------------------------------------------------------------------------------------------


class _Counting(ShardDataset):
    """Counts samples decoded in this process (workers=0)."""

    decoded = 0

    def _sample(self, key: str, members: dict[str, bytes], epoch: int) -> dict[str, Any]:
        type(self).decoded += 1
        return super()._sample(key, members, epoch)


def _make(shard_dir: Path, cls: type[ShardDataset] = ShardDataset) -> ShardDataset:
    return cls(shard_dir, CFG, train=True, seed=7, batch_size=2, shuffle_buffer=5)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_mid_epoch_resume_yields_the_remaining_sequence(shard_dir: Path, num_workers: int) -> None:
    full = _epoch(_make(shard_dir), 1, num_workers)  # the uninterrupted epoch
    # the crashed run: consumed k batches of epoch 1, then saved its state and died
    k = 4
    crashed = _make(shard_dir)
    crashed.set_epoch(1)
    it = iter(make_shard_loader(crashed, num_workers=num_workers))
    seen = [next(it) for _ in range(k)]
    state = json.loads(json.dumps(crashed.state_dict(batches_done=k)))  # survives a JSON round trip
    del it
    assert _ids(seen) == _ids(full[:k])
    # a new process: fresh dataset, load the state, iterate
    resumed = _make(shard_dir)
    resumed.load_state_dict(state)
    rest = list(make_shard_loader(resumed, num_workers=num_workers))
    assert _ids(rest) == _ids(full[k:])
    for a, b in zip(rest, full[k:], strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["audio"], b["audio"])
        assert torch.equal(a["label"], b["label"])
    # the epoch after the resumed one is the ordinary next epoch
    resumed.set_epoch(2)
    assert _ids(list(make_shard_loader(resumed, num_workers=num_workers))) == _ids(
        _epoch(_make(shard_dir), 2, num_workers)
    )


def test_fast_forward_decodes_only_the_rest(shard_dir: Path) -> None:
    full = _epoch(_make(shard_dir), 0, 0)
    ds = _make(shard_dir, _Counting)
    ds.set_epoch(0)
    ds.fast_forward(3, placeholders=True)  # the trainer's form: the skipped batches come out empty
    _Counting.decoded = 0
    out = list(make_shard_loader(ds))
    assert [b["batch_size"] for b in out[:3]] == [0, 0, 0] and len(out) == len(full)
    assert _ids(out) == _ids(full[3:])
    assert _Counting.decoded == NUM_GOOD - 6  # the 6 samples of the skipped batches were not decoded
    ds.set_epoch(1)  # another epoch: the fast-forward no longer applies
    assert len(_ids(list(make_shard_loader(ds)))) == NUM_GOOD


def test_resume_refuses_another_order(shard_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _make(shard_dir)
    ds.set_epoch(0)
    _ = list(make_shard_loader(ds, num_workers=0))
    state = ds.state_dict(batches_done=2)
    other = ShardDataset(shard_dir, CFG, train=True, seed=7, batch_size=3, shuffle_buffer=5)
    with pytest.raises(ValueError, match="batch_size"):
        other.load_state_dict(state)
    same = _make(shard_dir)
    same.load_state_dict(state)
    with pytest.raises(ValueError, match="workers"):
        make_shard_loader(same, num_workers=2)
    # the same check inside a worker, for a loader built by hand (worker 0 of 2, simulated in this process)
    monkeypatch.setattr(shard_reader, "get_worker_info", lambda: SimpleNamespace(num_workers=2, id=0))
    with pytest.raises(RuntimeError, match="workers"):
        next(iter(same))


class _RecordingTask:
    """A one-layer classifier on the audio features that records the ids of every batch it trains on."""

    def __init__(self, num_classes: int, crash_at: int | None = None) -> None:
        self.model = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
        self.model(torch.zeros(1, 1, 32, 100))  # materialise the lazy layer (same init for every run)
        self.ids: list[str] = []
        self.crash_at = crash_at

    def training_step(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        if self.crash_at is not None and len(self.ids) // 2 == self.crash_at:
            raise KeyboardInterrupt("simulated crash")  # not caught by the trainer: the process 'dies' here
        self.ids += batch["id"]
        return nn.functional.cross_entropy(self.model(batch["audio"]), batch["label"]), {}

    def validation_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return {}

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        return {}


def _fit(shard_dir: Path, out: Path, task: _RecordingTask, workers: int) -> None:
    from rich.console import Console

    from avformer.train.trainer import fit
    from tests.train._toy import make_cfg

    cfg = make_cfg(out, epochs=2, batch_size=2, checkpoint_every=1, log_every=1, optim_warmup_steps=1)
    ds = _make(shard_dir, _Counting)
    torch.manual_seed(0)
    fit(task, make_shard_loader(ds, num_workers=workers), None, cfg, console=Console(file=io.StringIO()))


@pytest.mark.parametrize("workers", [2, 0])
def test_trainer_crash_and_resume_sees_the_same_samples(shard_dir: Path, tmp_path: Path, workers: int) -> None:
    """The issue's 'kill mid-epoch and resume' with the real trainer: the resumed run trains on the same samples,
    and the trainer fast-forwards the shards itself (nothing trained before the crash is decoded again)."""
    num_classes = len(load_index(shard_dir).classes)
    whole = _RecordingTask(num_classes)
    _fit(shard_dir, tmp_path / "whole", whole, workers)
    assert len(whole.ids) == 2 * NUM_GOOD
    crashed = _RecordingTask(num_classes, crash_at=9)  # dies in epoch 2 (6 steps per epoch), after step 9
    with pytest.raises(KeyboardInterrupt):
        _fit(shard_dir, tmp_path / "run", crashed, workers)
    resumed = _RecordingTask(num_classes)
    _Counting.decoded = 0
    _fit(shard_dir, tmp_path / "run", resumed, workers)
    assert crashed.ids == whole.ids[: len(crashed.ids)] and len(crashed.ids) == 18
    assert crashed.ids + resumed.ids == whole.ids
    if workers == 0:  # decodes are counted in this process only
        assert _Counting.decoded == len(resumed.ids) == 6


# ---- sources: URLs, lists, errors -------------------------------------------------------------------------------


@pytest.fixture
def http_root(shard_dir: Path) -> Iterator[str]:
    """A loopback HTTP server over the shard folder, for the duration of one test."""
    with serve_folder(shard_dir) as url:
        yield url


def test_read_over_http_and_file_urls(shard_dir: Path, http_root: str) -> None:
    local = list(ShardDataset(shard_dir, CFG, timeout_s=10))
    for source in (f"{http_root}/index.json", http_root, (shard_dir / INDEX_NAME).as_uri()):
        remote = list(ShardDataset(source, CFG, timeout_s=10))
        assert [s["id"] for s in remote] == [s["id"] for s in local]
        assert all(torch.equal(a["video"], b["video"]) for a, b in zip(remote, local, strict=True))
    urls = [f"{http_root}/shard-00000{i}.tar" for i in range(3)]
    listed = ShardDataset(urls, CFG, classes=load_index(shard_dir).classes, timeout_s=10)
    assert len(listed) == NUM_GOOD and [s["id"] for s in listed] == [s["id"] for s in local]
    with pytest.raises(ValueError, match="classes"):
        ShardDataset(urls, CFG)
    with pytest.raises(OSError, match="404"):
        list(ShardDataset([f"{http_root}/nope.tar"], CFG, classes=[], timeout_s=10))


def test_corrupt_sample_and_short_shard_are_skipped(shard_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(shard_dir, bad)
    # corrupt the video of the first sample of shard 0 (same size, garbage bytes)
    with tarfile.open(shard_dir / "shard-000000.tar") as src, tarfile.open(bad / "shard-000000.tar", "w") as dst:
        for ti in src.getmembers():
            data = src.extractfile(ti).read()  # type: ignore[union-attr]
            if ti.name == "00000000.video.npy.gz":
                data = b"\0" * len(data)
            dst.addfile(ti, io.BytesIO(data))
    batch = collate(list(ShardDataset(bad, CFG))[:5])
    assert batch["batch_size"] == 4 and len(batch["skipped"]) == 1 and "corrupt" in batch["skipped"][0][1]
    index = json.loads((bad / INDEX_NAME).read_text())
    index["shards"][2]["samples"] = 3  # the index promises more than the shard holds
    (bad / INDEX_NAME).write_text(json.dumps(index))
    out = list(ShardDataset(bad, CFG))  # the missing sample is a skip marker naming the shard, nothing raises
    assert len(out) == NUM_GOOD + 1 and out[-1][_SKIP] and out[-1]["id"] == "shard-000002.tar#2"
    assert out[-1]["reason"] == "shard shard-000002.tar: holds 2 samples, the index says 3"
    (bad / INDEX_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        ShardDataset(bad, CFG)


def test_config_checks(shard_dir: Path) -> None:
    wrong_rate = DataConfig(audio=AudioFeatureConfig(sample_rate=8000))
    with pytest.raises(ValueError, match="8000 Hz"):
        ShardDataset(shard_dir, wrong_rate)
    with pytest.raises(ValueError, match="rank"):
        ShardDataset(shard_dir, CFG, rank=2, world_size=2)
