"""Shards and indexes as untrusted input: confined shard locations, a validated index, array budgets before any
allocation, and broken shards (truncated, missing, short, NaN audio) turned into counted skip markers."""

from __future__ import annotations

import gzip
import io
import json
import logging
import shutil
import tarfile
import time
import tracemalloc
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from avformer.data.dataset import _SKIP
from avformer.data.manifest import read_manifest
from avformer.data.shards import (
    INDEX_NAME,
    ShardDataset,
    ShardSampleError,
    iter_shard,
    load_index,
    make_shard_loader,
    read_sample,
    write_shards,
)
from avformer.data.shards import format as shard_format
from tests.data._http import serve_folder
from tests.data._shard_data import write_with_bad_rows
from tests.data.test_shards import CFG, NUM_GOOD, PREP

# shards as test_shards.py makes them: 12 clips in shards of 5, 5 and 2 samples, plus two rows prepare failed


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = write_with_bad_rows(tmp_path_factory.mktemp("synth"))
    out = tmp_path_factory.mktemp("shards")
    write_shards(read_manifest(data / "bad.csv", classes=data / "classes.txt"), out, PREP, workers=1)
    return out


@pytest.fixture
def shards(shard_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the shard folder, to break."""
    return Path(shutil.copytree(shard_dir, tmp_path / "shards"))


def _edit_index(folder: Path, edit: Callable[[dict[str, Any]], Any], name: str = INDEX_NAME) -> Path:
    data = json.loads((folder / INDEX_NAME).read_text())
    edit(data)
    (folder / name).write_text(json.dumps(data))
    return folder / name


def _set_url(i: int, url: str) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["shards"][i]["url"] = url

    return edit


def _replace_member(tar: Path, name: str, data: bytes) -> None:
    """Rewrite ``tar`` with member ``name`` holding ``data``."""
    with tarfile.open(tar) as src:
        members = [(ti, src.extractfile(ti).read()) for ti in src.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as dst:
        for ti, payload in members:
            if ti.name == name:
                payload = data
                ti.size = len(data)
            dst.addfile(ti, io.BytesIO(payload))


def _npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _epoch(ds: ShardDataset, num_workers: int) -> list[dict[str, Any]]:
    ds.set_epoch(0)
    return list(make_shard_loader(ds, num_workers=num_workers))


def _loaded_and_skipped(batches: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    return [i for b in batches for i in b.get("id", [])], [s for b in batches for s in b["skipped"]]


class _NoNetwork:
    """Stands in for ``urlopen``: records the URLs asked for and refuses the connection."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, url: str, timeout: float = 0.0) -> Any:
        self.calls.append(url)
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> _NoNetwork:
    fake = _NoNetwork()
    monkeypatch.setattr(shard_format.urllib.request, "urlopen", fake)
    monkeypatch.setattr(shard_format.time, "sleep", lambda s: None)  # the retries' back-off
    return fake


# ---- where shards may be ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "file-url", "through-a-folder-link"])
def test_local_index_cannot_name_files_outside_its_folder(shards: Path, tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside.tar"
    shutil.copy(shards / "shard-000000.tar", outside)  # a readable tar: today it would be read
    if kind == "through-a-folder-link":  # sub -> the parent: "sub/../outside.tar" folds to the parent, refused
        (shards / "sub").symlink_to(tmp_path)
        url = "sub/../../outside.tar"
    else:
        url = {"dotdot": "../outside.tar", "absolute": str(outside), "file-url": outside.as_uri()}[kind]
    index = _edit_index(shards, _set_url(0, url))
    for allow_urls in (False, True):  # allow_urls is about http(s) only
        with pytest.raises(ValueError, match="outside the index's folder") as e:
            load_index(shards, allow_urls=allow_urls)
        assert str(index) in str(e.value) and "shard 0" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="refused"):
        ShardDataset(shards, CFG)


def test_shards_symlinked_from_elsewhere_by_the_folder_owner_are_read(shards: Path, tmp_path: Path) -> None:
    """A download cache links shard files into the folder (Hugging Face snapshots/ -> blobs/): the index names
    files in its folder, the links are the owner's, so they are read."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for tar in sorted(shards.glob("*.tar")):
        tar.rename(blobs / tar.name)
        tar.symlink_to(blobs / tar.name)
    loaded, skipped = _loaded_and_skipped(_epoch(ShardDataset(shards, CFG, batch_size=4), 0))
    assert len(loaded) == NUM_GOOD and not skipped


def test_etc_passwd_and_other_schemes_are_refused(shards: Path) -> None:
    for url in ("../../../../../../../../etc/passwd", "/etc/passwd", "file:///etc/passwd", "ftp://example.com/x.tar"):
        _edit_index(shards, _set_url(1, url))
        with pytest.raises(ValueError, match=r"shard 1 .*refused") as e:
            load_index(shards, allow_urls=True)
        assert "\n" not in str(e.value)
    # a path that stays inside after resolving is fine, and comes back resolved
    _edit_index(shards, _set_url(1, "sub/../shard-000001.tar"))
    assert load_index(shards).shards[1].url == str((shards / "shard-000001.tar").resolve())


def test_http_shard_in_local_index_is_refused_without_a_connection(shards: Path, no_network: _NoNetwork) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["shards"] = [{"url": "http://127.0.0.1:9/x.tar", "samples": 2, "bytes": None}]

    _edit_index(shards, edit)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="allow_urls") as e:
        ShardDataset(shards, CFG)
    assert time.monotonic() - t0 < 1.0 and no_network.calls == []
    assert "http://127.0.0.1:9/x.tar" in str(e.value) and "\n" not in str(e.value)


def test_allow_urls_lets_http_shards_through_and_logs_them(
    shards: Path, no_network: _NoNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["shards"] = [{"url": "http://127.0.0.1:9/x.tar", "samples": 2, "bytes": None}]

    _edit_index(shards, edit)
    with caplog.at_level(logging.WARNING, logger="avformer.data.shards.format"):
        ds = ShardDataset(shards, CFG, allow_urls=True)
    assert ds.index.shards[0].url == "http://127.0.0.1:9/x.tar"
    assert any("http://127.0.0.1:9/x.tar" in r.getMessage() and "allow_urls" in r.getMessage() for r in caplog.records)
    out = list(ds)  # attempted (3 tries), failed: the planned samples come out as skip markers, nothing raises
    assert no_network.calls == ["http://127.0.0.1:9/x.tar"] * 3
    assert len(out) == 2 and all(s.get(_SKIP) for s in out)
    assert "shard x.tar: cannot be opened" in out[0]["reason"] and "Connection refused" in out[0]["reason"]


def test_http_index_names_only_shards_under_its_folder(shard_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "www"
    folder = Path(shutil.copytree(shard_dir, root / "s"))
    shutil.copy(folder / "shard-000000.tar", root / "outside.tar")
    local = [s["id"] for s in ShardDataset(shard_dir, CFG)]
    with serve_folder(root) as base:
        port = int(base.rsplit(":", 1)[1])
        other = f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/s/shard-000000.tar"
        # the plain index, its shards beside it: works
        assert [s["id"] for s in ShardDataset(f"{base}/s/{INDEX_NAME}", CFG, timeout_s=10)] == local
        assert [s["id"] for s in ShardDataset(f"{base}/s/", CFG, timeout_s=10)] == local
        refused = {
            "other-port": other,
            "dotdot": "../outside.tar",
            "encoded-dotdot": "%2e%2e/outside.tar",
            "root": f"{base}/outside.tar",
            "file": "file:///etc/passwd",
        }
        for name, url in refused.items():
            _edit_index(folder, _set_url(0, url), f"{name}.json")
            with pytest.raises(ValueError, match=r"refused") as e:
                load_index(f"{base}/s/{name}.json", timeout_s=10)
            assert f"{base}/s/{name}.json" in str(e.value) and "\n" not in str(e.value), name
        # allow_urls: http(s) anywhere (not fetched until read), never another scheme
        assert load_index(f"{base}/s/other-port.json", allow_urls=True).shards[0].url == other
        assert load_index(f"{base}/s/root.json", allow_urls=True).shards[0].url == f"{base}/outside.tar"
        with pytest.raises(ValueError, match="refused"):
            load_index(f"{base}/s/file.json", allow_urls=True)
        # relative names that stay inside resolve as before
        _edit_index(folder, _set_url(0, "x/../shard-000000.tar"), "inside.json")
        assert load_index(f"{base}/s/inside.json").shards[0].url == f"{base}/s/shard-000000.tar"


# ---- the index's structure --------------------------------------------------------------------------------------


def _shards_field(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["shards"] = value

    return edit


def _field(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data[key] = value

    return edit


def _shard0(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["shards"][0][key] = value

    return edit


def _decode(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        data["decode"][key] = value

    return edit


MALFORMED: dict[str, bytes | Callable[[dict[str, Any]], None]] = {
    "not-utf8": b'{"format": "avformer-shards", "x": "\xff\xfe"}',
    "not-json": b'{"format": "avformer-shards", "shards": [',
    "deep-json": b"[" * 100_000 + b"]" * 100_000,
    "a-list": b'["avformer-shards"]',
    "shards-missing": _field("shards", None),
    "shards-not-list": _shards_field({"url": "shard-000000.tar"}),
    "shard-not-object": _shards_field(["shard-000000.tar"]),
    "url-missing": _shard0("url", None),
    "url-not-string": _shard0("url", 7),
    "url-newline": _shard0("url", "shard-000000.tar\n"),
    "samples-string": _shard0("samples", "5"),
    "samples-negative": _shard0("samples", -1),
    "samples-bool": _shard0("samples", True),
    "samples-float": _shard0("samples", 5.0),
    "bytes-string": _shard0("bytes", "big"),
    "version-string": _field("version", "1"),
    "classes-not-strings": _field("classes", [1, 2]),
    "decode-fps": _decode("fps", "fast"),
    "decode-size": _decode("size", "big"),
    "failed-row": _field("failed", ["garbage.mp4"]),
    "failed-reason": _field("failed", [{"index": 0, "id": "a", "path": "a", "reason": None}]),
    "warnings-row": _field("warnings", [{"index": "0", "id": "a", "warnings": []}]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_index_is_a_one_line_value_error(shards: Path, case: str) -> None:
    bad = MALFORMED[case]
    if isinstance(bad, bytes):
        (shards / INDEX_NAME).write_bytes(bad)
    else:
        _edit_index(shards, bad)
    with pytest.raises(ValueError) as e:
        ShardDataset(shards, CFG)
    message = str(e.value)
    assert type(e.value) is ValueError  # not a JSONDecodeError / UnicodeDecodeError subclass either
    assert message.startswith(f"{shards / INDEX_NAME}: ") and "\n" not in message and len(message) < 400, message


# ---- arrays: budgets before allocation ------------------------------------------------------------------------


def _first_sample(shards: Path) -> tuple[str, dict[str, bytes]]:
    _, key, members = next(iter_shard(str(shards / "shard-000000.tar")))
    return key, members


def test_huge_npy_header_is_refused_before_allocating(shards: Path) -> None:
    """A 1 KB gzip member whose header declares (4000, 2000, 2000, 3) uint8 = 44.7 GiB."""
    member = gzip.compress(_npy_header((4000, 2000, 2000, 3), "|u1") + b"\0" * 1000)
    assert len(member) < 1024
    _replace_member(shards / "shard-000000.tar", "00000000.video.npy.gz", member)
    key, members = _first_sample(shards)
    tracemalloc.start()
    try:
        with pytest.raises(ShardSampleError, match=r"44\.7 GiB.*over the .*budget") as e:
            read_sample(key, members)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # nothing near the declared size was allocated
    assert str(e.value).startswith("shard shard-000000.tar key 00000000: video declares shape (4000, 2000, 2000, 3)")
    out = list(ShardDataset(shards, CFG))  # the reader: a skip marker with that reason, the rest loads
    assert out[0][_SKIP] and "44.7 GiB" in out[0]["reason"] and out[0]["id"] == "clips/000000.mp4"
    assert sum(_SKIP not in s for s in out) == NUM_GOOD - 1


@pytest.mark.parametrize(
    ("header", "tail", "match"),
    [
        (((100, 32, 32, 3), "|u1"), 1000, r"declares 307200 bytes of data, it holds 1000"),  # more than present
        (((4000, 2000, 2000, 3), "|u1"), 1000, r"over the .*budget"),
        (((4, 32, 32, 3), "<f4"), 4 * 32 * 32 * 3 * 4, r"dtype <f4, not uint8"),
        (((4, 32, 32), "|u1"), 4 * 32 * 32, r"shape \(4, 32, 32\), not \(T, H, W, 3\)"),
        (((4, 32, 32, 3), "|O"), 8, r"dtype \|O, not uint8"),
    ],
)
def test_uncompressed_video_header_is_vetted(
    shards: Path, header: tuple[tuple[int, ...], str], tail: int, match: str
) -> None:
    key, members = _first_sample(shards)
    del members["video.npy.gz"]
    members["video.npy"] = _npy_header(*header) + b"\0" * tail
    with pytest.raises(ShardSampleError, match=match) as e:
        read_sample(key, members)
    assert str(e.value).startswith("shard shard-000000.tar key 00000000: ") and e.value.meta is not None


def test_gzip_bomb_is_inflated_only_to_the_declared_size(shards: Path) -> None:
    """A valid (4, 32, 32, 3) header followed by 64 MiB of zeros (290 KB compressed)."""
    header = _npy_header((4, 32, 32, 3), "|u1")
    member = gzip.compress(header + bytes(64 << 20), 1)
    _replace_member(shards / "shard-000000.tar", "00000000.video.npy.gz", member)
    key, members = _first_sample(shards)
    tracemalloc.start()
    try:
        with pytest.raises(ShardSampleError, match="inflates to more than the 12416 bytes its header declares"):
            read_sample(key, members)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    # a gzip stream cut short, and trailing data after it, are refused too
    good = gzip.compress(header + bytes(4 * 32 * 32 * 3))
    for broken, match in ((good[:-20], "ends early"), (good + good, "more than")):
        members["video.npy.gz"] = broken
        with pytest.raises(ShardSampleError, match=match):
            read_sample(key, members)
    members["video.npy.gz"] = good
    assert read_sample(key, members).video.shape == (4, 32, 32, 3)  # type: ignore[union-attr]


def test_oversized_member_is_not_read(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_format, "MAX_META_BYTES", 100)  # the JSON members are ~400 bytes
    key, members = _first_sample(shards)
    assert "json" not in members
    with pytest.raises(ShardSampleError, match=r"member 00000000.json holds \d+ bytes, over its 100-byte budget"):
        read_sample(key, members)


# ---- values -------------------------------------------------------------------------------------------------------


def test_nan_bytes_in_audio_are_a_skip_marker_naming_shard_and_key(shards: Path) -> None:
    """Bytes 30000-32000 of the audio member overwritten with 0xFF: 1000 float16 NaNs (0xFFFF)."""
    tar = shards / "shard-000000.tar"
    with tarfile.open(tar) as tf:
        offset = tf.getmember("00000001.audio.npy").offset_data
    with open(tar, "r+b") as f:
        f.seek(offset + 30000)
        f.write(b"\xff" * 2000)
    batches = _epoch(ShardDataset(shards, CFG, batch_size=4), 0)
    loaded, skipped = _loaded_and_skipped(batches)
    assert len(loaded) == NUM_GOOD - 1
    assert skipped == [
        ("clips/000001.mp4", "shard shard-000000.tar key 00000001: audio holds 1000 non-finite values (NaN/Inf)")
    ]


def test_audio_far_beyond_full_scale_is_refused(shards: Path) -> None:
    """Random bytes in a float32 member are finite but huge (1e30): they would overflow the filterbank."""
    key, members = _first_sample(shards)
    audio = np.zeros(16000, np.float32)
    audio[100:110] = 1e30
    buf = io.BytesIO()
    np.save(buf, audio)
    members["audio.npy"] = buf.getvalue()
    with pytest.raises(ShardSampleError, match=r"audio holds 10 values beyond ±1000"):
        read_sample(key, members)
    members["json"] = json.dumps({**json.loads(members["json"]), "duration": float("nan")}).encode()
    with pytest.raises(ShardSampleError, match="'duration' is not a number"):
        read_sample(key, members)


# ---- broken shards: skip markers, the epoch goes on --------------------------------------------------------------


def _positions(ds: ShardDataset, num_workers: int) -> list[tuple[str, int]]:
    return [(Path(u).name, m) for u, m in ds.planned_order(num_workers)]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_truncated_shard_gives_skip_markers_and_the_epoch_finishes(
    shards: Path, num_workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    tar = shards / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    ds = ShardDataset(shards, CFG, batch_size=3)
    with caplog.at_level(logging.WARNING, logger="avformer.data.shards.reader"):
        batches = _epoch(ds, num_workers)
    loaded, skipped = _loaded_and_skipped(batches)
    assert len(batches) == 4 and len(loaded) + len(skipped) == NUM_GOOD  # every planned sample accounted for
    assert 1 <= len(skipped) <= 5
    read = 5 - len(skipped)
    assert {i for i, _ in skipped} == {f"shard-000001.tar#{m}" for m in range(read, 5)}
    reason = f"shard shard-000001.tar: truncated or corrupt after {read} of 5 samples (ReadError: "
    assert all(r.startswith(reason) for _, r in skipped), skipped
    if num_workers == 0:  # logged once for the shard (worker logs do not reach caplog)
        assert sum("shard-000001.tar" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("num_workers", [0, 1])
def test_index_promising_more_samples_than_the_tar_holds(shards: Path, num_workers: int) -> None:
    _edit_index(shards, _shard0("samples", 7))  # shard-000000.tar holds 5
    ds = ShardDataset(shards, CFG, batch_size=4)
    batches = _epoch(ds, num_workers)
    loaded, skipped = _loaded_and_skipped(batches)
    assert len(loaded) == NUM_GOOD and len(batches) == 4
    assert skipped == [
        (f"shard-000000.tar#{m}", "shard shard-000000.tar: holds 5 samples, the index says 7") for m in (5, 6)
    ]


def test_index_claiming_more_samples_than_the_file_can_hold_is_refused(shards: Path) -> None:
    """A billion placeholder samples would be a billion-entry epoch plan: refused when the index loads."""
    _edit_index(shards, _shard0("samples", 10**9))
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"shard 0 claims 1000000000 samples, more than its \d+ bytes can hold"):
        ShardDataset(shards, CFG, batch_size=4)
    assert time.monotonic() - t0 < 5


def test_missing_shard_gives_skip_markers(shards: Path) -> None:
    (shards / "shard-000002.tar").unlink()
    loaded, skipped = _loaded_and_skipped(_epoch(ShardDataset(shards, CFG, batch_size=5), 0))
    assert len(loaded) == 10 and [i for i, _ in skipped] == ["shard-000002.tar#0", "shard-000002.tar#1"]
    assert skipped[0][1].startswith("shard shard-000002.tar: cannot be opened (FileNotFoundError: ")


def test_broken_shard_keeps_the_planned_order_and_resume(shards: Path, shard_dir: Path) -> None:
    """Training order with a shuffle buffer across shards: markers come out where the plan puts their samples, and a
    fast-forward resume yields the rest of that same sequence."""
    tar = shards / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    names = {}
    for s in load_index(shard_dir).shards:  # the intact shards
        for m, _, members in iter_shard(s.url):
            names[(Path(s.url).name, m)] = json.loads(members["json"])["id"]

    def make() -> ShardDataset:
        return ShardDataset(shards, CFG, train=True, seed=5, batch_size=2, shuffle_buffer=6)

    full = list(make())
    skipped = {s["id"] for s in full if _SKIP in s}
    assert skipped and all(i.startswith("shard-000001.tar#") for i in skipped)
    expected = [f"{n}#{m}" if f"{n}#{m}" in skipped else names[(n, m)] for n, m in _positions(make(), 0)]
    assert [s["id"] for s in full] == expected
    resumed = make()
    resumed.fast_forward(2)
    assert [s["id"] for s in resumed] == expected[4:]
    resumed.fast_forward(3, placeholders=True)
    batches = list(make_shard_loader(resumed))
    assert [b["batch_size"] for b in batches[:3]] == [0, 0, 0] and len(batches) == NUM_GOOD // 2
    chunks = [sorted(expected[k : k + 2]) for k in range(6, len(expected), 2)]
    assert [sorted(b.get("id", []) + [i for i, _ in b["skipped"]]) for b in batches[3:]] == chunks


# ---- what prepare reported -----------------------------------------------------------------------------------------


def test_prepare_failures_come_from_the_index(shards: Path) -> None:
    on_disk = json.loads((shards / INDEX_NAME).read_text())["failed"]  # the writer puts them there
    ds = ShardDataset(shards, CFG)
    assert ds.prepare_failures == on_disk and len(on_disk) == 2
    assert {f["id"] for f in ds.prepare_failures} == {"garbage.mp4", "missing/none.mp4"}
    assert all(set(f) == {"index", "id", "path", "reason"} for f in ds.prepare_failures)
    assert next(f["reason"] for f in ds.prepare_failures if f["id"] == "missing/none.mp4") == "file not found"
    ds.prepare_failures.clear()  # a copy
    assert len(ds.prepare_failures) == 2
    listed = ShardDataset([str(shards / "shard-000000.tar")], CFG, classes=[])
    assert listed.prepare_failures == []
