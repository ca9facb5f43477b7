"""Hostile paths and headers for avformer.data.media: non-regular files, time limits on the open, lying durations.

Every call that could hang on a regression (a FIFO blocks ``open()`` until a writer appears) runs in a daemon thread
joined with a timeout, so a regression fails the test instead of hanging the suite; a thread left blocked on a
FIFO is then released by opening the FIFO for writing.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import avformer.data.media.container as media_container
import avformer.data.media.decode as media_decode
import avformer.data.media.probing as media_probing
from avformer.cli.probe import main as probe_main
from avformer.data.media import MediaError, ProbeInfo, decode_clip, load_audio, media_duration, probe
from tests._paths import shared_path

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs (os.mkfifo)")

JOIN_S = 15.0  # generous on a loaded 2-core machine; the refusals themselves take milliseconds
PROMPT_S = 5.0  # what "at once" means in the assertions
SECONDS = 3.0  # length of the synthetic clip
FPS, SR = 10, 16000


@pytest.fixture
def fifos() -> Iterator[list[Path]]:
    """FIFOs made by a test; any reader still blocked on one when the test ends is released."""
    made: list[Path] = []
    yield made
    for f in made:
        try:
            fd = os.open(f, os.O_WRONLY | os.O_NONBLOCK)  # succeeds only while a reader is blocked in open()
        except OSError:
            continue
        os.close(fd)


def _fifo(path: Path, made: list[Path]) -> Path:
    os.mkfifo(path)
    made.append(path)
    return path


def _bounded(fn: Callable[[], Any], seconds: float = JOIN_S) -> tuple[Any, BaseException | None, float]:
    """Run ``fn`` in a daemon thread: (result, exception, elapsed s); fails the test if it is still running."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # handed back to the test
            out["error"] = e

    t0 = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    elapsed = time.monotonic() - t0
    if thread.is_alive():
        pytest.fail(f"still running after {seconds:g} s (blocked?)")
    return out.get("value"), out.get("error"), elapsed


def _raises_media_error(fn: Callable[[], Any], match: str) -> MediaError:
    value, error, elapsed = _bounded(fn)
    assert elapsed < PROMPT_S, f"took {elapsed:.1f} s"
    assert isinstance(error, MediaError), f"expected MediaError, got {error!r} / {value!r}"
    assert match in error.reason and "\n" not in str(error), error.reason
    return error


def _write_mkv(path: Path, seconds: float = SECONDS) -> Path:
    """FFV1 gray video (frame i has grey level i) + silent PCM audio, ``seconds`` long."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("ffv1", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "gray"
        aus = c.add_stream("pcm_s16le", rate=SR, layout="mono")
        for i in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64), i, np.uint8), format="gray")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            for packet in vs.encode(frame):
                c.mux(packet)
        for packet in vs.encode(None):
            c.mux(packet)
        block = SR // FPS
        for j in range(0, round(seconds * SR), block):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, block), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SR, j, Fraction(1, SR)
            for packet in aus.encode(frame):
                c.mux(packet)
        for packet in aus.encode(None):
            c.mux(packet)
    return path


def _write_mpg(path: Path) -> Path:
    """2 s of MPEG-PS (mpeg1video noise + silent mp2): FFmpeg needs many reads to open it (stream info)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format="mpeg") as c:
        vs = c.add_stream("mpeg1video", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = c.add_stream("mp2", rate=44100, layout="mono")
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64), dtype=np.uint8), format="gray")
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in vs.encode(frame):
                c.mux(packet)
        for packet in vs.encode(None):
            c.mux(packet)
        for j in range(0, 2 * 44100, 1152):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, j, Fraction(1, 44100)
            for packet in aus.encode(frame):
                c.mux(packet)
        for packet in aus.encode(None):
            c.mux(packet)
    return path


def _declare_duration(src: Path, dst: Path, seconds: float) -> Path:
    """Copy a Matroska file with its Segment Info ``Duration`` (ID 0x4489, 8-byte float, in ms) set to ``seconds``."""
    data = src.read_bytes()
    i = data.find(b"\x44\x89\x88")
    assert i > 0 and data.count(b"\x44\x89\x88") == 1, "Duration element not found"
    dst.write_bytes(data[: i + 3] + struct.pack(">d", seconds * 1000.0) + data[i + 11 :])
    return dst


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_mkv(tmp_path_factory.mktemp("untrusted") / "clip.mkv")


# ---------------------------------------------------------------------------------------------------------------
# only regular files are opened


READERS: dict[str, Callable[[str], Any]] = {
    "decode_clip": lambda p: decode_clip(p, timeout_s=None),  # no deadline: the refusal must not rely on one
    "load_audio": lambda p: load_audio(p, timeout_s=None),
    "media_duration": lambda p: media_duration(p, timeout_s=None),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_fifo_is_refused_at_once(reader: str, tmp_path: Path, fifos: list[Path]) -> None:
    fifo = _fifo(tmp_path / "clip.mp4", fifos)
    _raises_media_error(lambda: READERS[reader](str(fifo)), "not a regular file (a FIFO)")


def test_probe_fifo_is_an_error_at_once(tmp_path: Path, fifos: list[Path]) -> None:
    fifo = _fifo(tmp_path / "clip.mkv", fifos)
    info, error, elapsed = _bounded(lambda: probe(fifo))
    assert error is None and elapsed < PROMPT_S
    assert isinstance(info, ProbeInfo)
    assert (info.status, info.usable, info.reason) == ("error", False, "not a regular file (a FIFO)")


def test_symlink_to_a_fifo_is_refused_and_to_a_file_followed(tmp_path: Path, fifos: list[Path], clip: Path) -> None:
    fifo = _fifo(tmp_path / "real_fifo", fifos)
    (tmp_path / "to_fifo.mp4").symlink_to(fifo)
    _raises_media_error(lambda: media_duration(tmp_path / "to_fifo.mp4"), "not a regular file (a FIFO)")
    (tmp_path / "to_clip.mkv").symlink_to(clip)
    assert probe(tmp_path / "to_clip.mkv").status == "ok"


def test_fifo_swapped_in_after_the_stat_is_refused(
    tmp_path: Path, fifos: list[Path], clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the race: the path is a regular file when stat() looks, a FIFO when open() runs
    fifo = _fifo(tmp_path / "swapped.mkv", fifos)
    real_stat = os.stat

    def stat_sees_a_regular_file(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        return real_stat(clip if os.fspath(path) == str(fifo) else path, *args, **kwargs)

    monkeypatch.setattr(media_container.os, "stat", stat_sees_a_regular_file)
    _raises_media_error(lambda: decode_clip(fifo, timeout_s=None), "not a regular file (a FIFO)")


def test_directory_socket_and_devices_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "looks_like.mp4"
    folder.mkdir()
    cases = {str(folder): "not a regular file (a directory)"}
    sock_path = tmp_path / "s.mp4"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        cases[str(sock_path)] = "not a regular file (a socket)"
        for dev in ("/dev/zero", "/dev/null", "/dev/urandom"):
            if os.path.exists(dev):
                cases[dev] = "not a regular file (a character device)"
        for path, reason in cases.items():
            _raises_media_error(lambda p=path: decode_clip(p, timeout_s=None), reason)
            _raises_media_error(lambda p=path: media_duration(p, timeout_s=None), reason)
            info, error, elapsed = _bounded(lambda p=path: probe(p))
            assert error is None and elapsed < PROMPT_S and info.status == "error" and info.reason == reason


def test_missing_file_still_reads_file_not_found(tmp_path: Path) -> None:
    _raises_media_error(lambda: decode_clip(tmp_path / "gone.mp4"), "file not found")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    _raises_media_error(lambda: media_duration(tmp_path / "dangling.mp4"), "file not found")


def test_probe_cli_on_a_fifo(tmp_path: Path, fifos: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    fifo = _fifo(tmp_path / "stuck.mp4", fifos)
    rc, error, elapsed = _bounded(lambda: probe_main([str(fifo)]))
    assert error is None and elapsed < PROMPT_S and rc == 1
    line, summary = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("error") and str(fifo) in line and line.endswith("| not a regular file (a FIFO)")
    assert summary == "1 files: 0 ok, 0 partial (usable), 1 unusable"
    rc, error, _ = _bounded(lambda: probe_main(["--json", str(fifo)]))
    assert error is None and rc == 1
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (record["status"], record["usable"], record["reason"]) == ("error", False, "not a regular file (a FIFO)")


def test_files_referring_to_other_files_are_not_followed(
    tmp_path: Path, fifos: list[Path], clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an ffconcat list (or an HLS playlist) makes FFmpeg open the files it names: a FIFO there used to block
    _fifo(tmp_path / "fifo.mkv", fifos)
    (tmp_path / "clip.mkv").write_bytes(clip.read_bytes())
    for target in ("fifo.mkv", "clip.mkv"):
        listing = tmp_path / f"to_{target}.ffconcat"
        listing.write_text(f"ffconcat version 1.0\nfile {target}\n")
        _raises_media_error(lambda p=listing: decode_clip(p, timeout_s=None), "cannot open")
    playlist = tmp_path / "list.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfifo.mkv\n#EXT-X-ENDLIST\n")
    info, error, elapsed = _bounded(lambda: probe(playlist))
    assert error is None and elapsed < PROMPT_S and info.status == "error" and "cannot open" in info.reason


def test_a_file_name_is_never_a_protocol(tmp_path: Path, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # FFmpeg would read "concat:a|b" as its concat protocol; here it is just a (missing, then present) file name
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mkv").write_bytes(clip.read_bytes())
    _raises_media_error(lambda: media_duration("concat:a.mkv|a.mkv"), "file not found")
    _write_mkv(tmp_path / "concat:a.mkv", seconds=1.0)  # FFmpeg's protocol would read the 3-s a.mkv instead
    assert media_duration("concat:a.mkv") == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------------------------------------------------
# the time limit covers the open


def test_open_passes_the_time_left_to_pyav(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real_open = av.open

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("timeout"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(media_container.av, "open", spy)
    decode_clip(clip, 0.0, 1.0, timeout_s=7.0)
    media_duration(clip, timeout_s=5.0)
    probe(clip, timeout_s=3.0)
    decode_clip(clip, 0.0, 1.0, timeout_s=None)
    (t1, r1), (t2, r2), (t3, r3), unbounded = seen
    assert 0 < t1 <= 7.0 and 0 < t2 <= 5.0 and 0 < t3 <= 3.0  # the open's share: what is left of the deadline
    assert r1 is r2 is r3 is None  # reads are bounded by the absolute deadline instead (see below)
    assert unbounded == (None, None)


@pytest.fixture
def slow_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every read of a media file that returns data takes 0.2 s (a slow disk or network mount); returns their times."""
    times: list[float] = []
    real_read = media_container._Source.read

    def slow(self: Any, size: int = -1) -> bytes:
        data = real_read(self, size)
        if data:
            times.append(time.monotonic())
            time.sleep(0.2)
        return data

    monkeypatch.setattr(media_container._Source, "read", slow)
    return times


def test_slow_reads_time_out_the_open(tmp_path: Path, slow_reads: list[float]) -> None:
    big = _write_mpg(tmp_path / "noise.mpg")  # opening it reads about 19 x 32 KB (4 s of slow reads)
    _raises_media_error(lambda: media_duration(big, timeout_s=0.3), "timed out while opening")
    assert 1 <= len(slow_reads) <= 3  # reads stop at the deadline instead of going on through the file
    error = _raises_media_error(lambda: decode_clip(big, timeout_s=0.3), "timed out")
    assert error.path == str(big)
    info, error_, elapsed = _bounded(lambda: probe(big, timeout_s=0.3))
    assert error_ is None and elapsed < PROMPT_S
    assert info.status == "error" and info.reason == "timed out while opening (time limit 0.3 s)"


def test_a_read_refused_at_the_deadline_is_a_timeout_not_a_short_clip(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the deadline passes just after the open: every later read is refused (end-of-file to FFmpeg)
    def open_then_expire(path: str, deadline: float) -> Any:
        media = media_container._open(path, deadline)
        media.source.deadline = -float("inf")
        return media

    monkeypatch.setattr(media_decode, "_open", open_then_expire)
    monkeypatch.setattr(media_probing, "_open", open_then_expire)
    _raises_media_error(lambda: decode_clip(clip, 1.0, 2.0), "timed out after 60 s")
    _raises_media_error(lambda: decode_clip(clip), "timed out after 60 s")
    info = probe(clip)  # a probe cut short keeps its status (module rule) but says so, and decoded only part
    assert info.reason == "check stopped after 20 s (time limit); no error so far"
    assert info.streams[0].decoded is not None and info.streams[0].decoded < SECONDS * FPS


# ---------------------------------------------------------------------------------------------------------------
# a header that declares far more than the file holds


@pytest.fixture(scope="module")
def lying(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    d = tmp_path_factory.mktemp("lying")
    return {s: _declare_duration(clip, d / f"declares_{s:g}.mkv", s) for s in (1e9, 30.0, 4.0)}


def test_huge_declared_duration_is_partial(lying: dict[float, Path]) -> None:
    path = lying[1e9]
    assert media_duration(path) == pytest.approx(1e9)  # what training and predict place their windows in
    with pytest.raises(MediaError, match="no frames in the window"):
        decode_clip(path, 5e8, 5e8 + 1.0)
    for head_s, tail_s in ((30.0, 5.0), (1.0, 0.5)):  # whole file decoded; head + tail of a "long" file
        info = probe(path, head_s=head_s, tail_s=tail_s)
        assert info.status == "partial" and info.usable and info.has_video and info.has_audio
        assert info.reason == "declared duration 1000000000.0 s but decodable content ends at 3.0 s"
        assert info.duration == pytest.approx(1e9) and info.decoded_end == pytest.approx(SECONDS, abs=0.01)


def test_declared_duration_tolerance(clip: Path, lying: dict[float, Path]) -> None:
    info = probe(lying[30.0])  # 27 s short: more than max(2 s, 10 %)
    assert info.status == "partial" and "declared duration 30.0 s but decodable content ends at 3.0 s" in info.reason
    info = probe(lying[4.0])  # 1 s short: within max(2 s, 10 %), as a slightly truncated file
    assert info.status == "ok" and "declared duration" not in info.reason
    info = probe(clip)
    assert (info.status, info.reason) == ("ok", "") and info.decoded_end == pytest.approx(SECONDS, abs=0.01)


def test_probe_cli_reports_the_declared_duration(lying: dict[float, Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = str(lying[1e9])
    assert probe_main([path]) == 0  # partial files are usable
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("partial") and "1000000000.00s" in line
    assert line.endswith("| declared duration 1000000000.0 s but decodable content ends at 3.0 s")
    assert probe_main(["--json", path]) == 0
    record, summary = (json.loads(x) for x in capsys.readouterr().out.splitlines())
    assert record["status"] == "partial" and record["decoded_end"] == pytest.approx(SECONDS, abs=0.01)
    assert record["duration"] == pytest.approx(1e9) and "declared duration" in record["reason"]
    assert summary == {"summary": {"files": 1, "ok": 0, "partial": 1, "unusable": 0}}


def _labeled() -> list[str]:
    index = shared_path("media", "labeled", "labeled.csv")
    with open(index, newline="") as f:
        return [row["file"] for row in csv.DictReader(f)]


def test_real_labeled_clips_are_still_ok() -> None:
    # every labeled clip decodes fully (README): none may trip the declared-duration rule
    files = _labeled()
    assert len(files) >= 20
    for name in [*files[::3], "decord__flipping_a_pancake.mkv", "torchcodec__nasa_13013.mp4"]:
        info = probe(shared_path("media", "labeled", name))
        assert info.status.startswith("ok"), (name, info.reason)
        assert "declared duration" not in info.reason and info.decoded_end is not None
        if info.duration is not None:
            assert abs(info.decoded_end - info.duration) < 0.5, (name, info.decoded_end, info.duration)


def test_frames_without_timestamps_give_no_decoded_end_and_valid_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A raw H.264 stream has no timestamps: no decodable end is known (not -inf, which is not JSON)."""
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    assert probe(path).decoded_end is None
    assert probe_main(["--json", str(path)]) == 0

    def strict(token: str) -> float:
        raise ValueError(f"not JSON: {token}")

    first = capsys.readouterr().out.splitlines()[0]
    assert json.loads(first, parse_constant=strict)["status"] == "ok-video-only"
