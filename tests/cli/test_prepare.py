"""``avformer prepare``: summary of bad rows, exit codes, clip windows, shard sizes, overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avformer.cli.main import COMMANDS
from avformer.cli.main import main as avformer
from avformer.cli.prepare import main
from avformer.data.shards import INDEX_NAME, iter_shard, load_index, read_sample
from avformer.data.synth import SynthConfig, write_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=6, seconds=1.5, size=32, fps=8), workers=1)
    (out / "garbage.mp4").write_bytes(b"\x00garbage" * 64)
    lines = (out / "manifest.csv").read_text().splitlines()
    (out / "bad.csv").write_text("\n".join([*lines, "garbage.mp4,circle_hum,0", "gone.mp4,circle_hum,0"]) + "\n")
    (out / "all_bad.csv").write_text("path,label\ngarbage.mp4,a\ngone.mp4,b\n")
    return out


def _args(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [str(data_dir / "bad.csv"), str(out), "--fps", "8", "--size", "32", "--workers", "1", *extra]


def test_registered() -> None:
    assert COMMANDS["prepare"][0] == "avformer.cli.prepare"


def test_prepare_summary_lists_bad_rows(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVFORMER_PROGRESS_INTERVAL", "0")  # a progress line per row (stdout is not a terminal)
    assert avformer(["prepare", *_args(data_dir, tmp_path, "--shard-size", "4")]) == 0
    out = capsys.readouterr().out
    assert "prepare: 1/8 rows (12%)" in out and "prepare: 8/8 rows (100%)" in out and "\x1b" not in out
    assert "wrote 6/8 samples in 2 shards" in out
    assert "2 rows failed" in out
    assert "gone.mp4: file not found" in out and "garbage.mp4: cannot open" in out
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    assert [s["samples"] for s in index["shards"]] == [4, 2]
    assert {f["id"] for f in index["failed"]} == {"garbage.mp4", "gone.mp4"}


def test_clip_seconds_stores_the_centre_window(data_dir: Path, tmp_path: Path) -> None:
    assert main(_args(data_dir, tmp_path, "--clip-seconds", "1", "--no-video")) == 0
    index = load_index(tmp_path)
    assert index.decode["clip_seconds"] == 1.0 and index.decode["video"] is False
    for _, key, members in iter_shard(index.shards[0].url):
        s = read_sample(key, members)
        assert s.video is None and "video.npy.gz" not in members
        assert s.audio is not None and len(s.audio) == 16000 and s.audio.dtype == np.float16
        assert s.meta["duration"] == pytest.approx(1.0) and 0.2 < s.meta["start"] < 0.3  # centre of a ~1.5 s file


def test_shard_mb_and_overwrite(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args(data_dir, tmp_path, "--shard-size", "1")) == 0
    assert len(list(tmp_path.glob("shard-*.tar"))) == 6
    capsys.readouterr()
    assert main(_args(data_dir, tmp_path, "--shard-mb", "0.2")) == 1  # refuses to mix with an earlier run
    assert "--overwrite" in capsys.readouterr().err
    assert main(_args(data_dir, tmp_path, "--shard-mb", "0.2", "--overwrite")) == 0
    index = load_index(tmp_path)
    sizes = [s.bytes or 0 for s in index.shards]
    assert 1 < len(index.shards) < 6 and all(b <= 0.2 * 2**20 for b in sizes)
    assert sorted(p.name for p in tmp_path.glob("shard-*.tar")) == [s.name for s in index.shards]  # stale removed
    assert not list(tmp_path.glob("*.tmp*"))


def test_nothing_written_is_an_error(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(data_dir / "all_bad.csv"), str(tmp_path), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert "no sample was written" in captured.err and "2 rows failed" in captured.out
    assert json.loads((tmp_path / INDEX_NAME).read_text())["num_samples"] == 0


def test_bad_arguments(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(data_dir / "nope.csv"), str(tmp_path)]) == 2
    assert "cannot read the manifest" in capsys.readouterr().err
    assert main(_args(data_dir, tmp_path, "--fps", "0")) == 2
    with pytest.raises(SystemExit):
        main(_args(data_dir, tmp_path, "--shard-size", "4", "--shard-mb", "1"))


def test_no_compress_reads_back_the_same_frames(data_dir: Path, tmp_path: Path) -> None:
    assert main(_args(data_dir, tmp_path / "gz")) == 0
    assert main(_args(data_dir, tmp_path / "raw", "--no-compress")) == 0
    gz, raw = load_index(tmp_path / "gz"), load_index(tmp_path / "raw")
    assert "gzip" not in raw.decode["video_encoding"] and "gzip" in gz.decode["video_encoding"]
    (_, k1, m1), (_, k2, m2) = next(iter_shard(gz.shards[0].url)), next(iter_shard(raw.shards[0].url))
    assert "video.npy" in m2 and "video.npy.gz" not in m2
    a, b = read_sample(k1, m1), read_sample(k2, m2)
    assert a.video is not None and b.video is not None and np.array_equal(a.video, b.video)
