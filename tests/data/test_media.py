"""Tests for avformer.data.media: lossless synthetic fixtures (exact frames and samples) and the real robustness set.

Synthetic files are written with PyAV into ``tmp_path``: FFV1 ``gray`` video (frame i is a constant grey level
10 * i, so a frame's index is its pixel value / 10) + PCM s16 audio whose value is a staircase in step with the
video (level ``(i - 10) * 0.05`` during frame i), so video/audio alignment can be checked sample-exactly.
"""

from __future__ import annotations

import csv
import math
import pickle
import re
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avformer.data.media import (
    Clip,
    MediaError,
    ProbeInfo,
    decode_clip,
    load_audio,
    media_duration,
    probe,
)
from tests._paths import SHARED_DATA, shared_path

FPS = 10
N_FRAMES = 20  # 2.0 s
H, W = 32, 48


def _level(i: int) -> float:
    return (i - 10) * 0.05


def _write(
    path: Path,
    *,
    video: bool = True,
    audio: bool = True,
    vcodec: str = "ffv1",
    sample_rate: int = 16000,
    channels: int = 1,
    gop: int | None = None,
    video_from: int = 0,
    audio_from_s: float = 0.0,
) -> Path:
    """Write the synthetic 2 s clip described in the module docstring."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream(vcodec, rate=FPS) if video else None
        if vs is not None:
            vs.width, vs.height = W, H
            vs.pix_fmt = "gray" if vcodec == "ffv1" else "yuv420p"
            if gop:
                vs.codec_context.gop_size = gop
        layout = "mono" if channels == 1 else "stereo"
        aus = c.add_stream("pcm_s16le", rate=sample_rate, layout=layout) if audio else None
        if vs is not None:
            for i in range(video_from, N_FRAMES):
                frame = av.VideoFrame.from_ndarray(np.full((H, W), 10 * i, np.uint8), format="gray")
                if vcodec != "ffv1":
                    frame = frame.reformat(format="yuv420p")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                for packet in vs.encode(frame):
                    c.mux(packet)
            for packet in vs.encode(None):
                c.mux(packet)
        if aus is not None:
            k = np.arange(round(audio_from_s * sample_rate), N_FRAMES * sample_rate // FPS)
            pcm = np.round(_level_of_sample(k, sample_rate) * 32767).astype(np.int16)
            for j in range(0, len(pcm), 1000):
                block = np.repeat(pcm[j : j + 1000][:, None], channels, axis=1).reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="s16", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, k[j], Fraction(1, sample_rate)
                for packet in aus.encode(frame):
                    c.mux(packet)
            for packet in aus.encode(None):
                c.mux(packet)
    return path


def _level_of_sample(k: np.ndarray, sample_rate: int) -> np.ndarray:
    return ((k // (sample_rate // FPS)) - 10) * 0.05


def _frame_ids(clip: Clip) -> list[int]:
    assert clip.video is not None
    return [round(float(f.mean()) / 10) for f in clip.video]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    files = {
        "av": _write(d / "av.mkv"),
        "av48": _write(d / "av48.mkv", sample_rate=48000, channels=2),
        "h264": _write(d / "h264.mkv", vcodec="libx264", gop=5),
        "video_only": _write(d / "video_only.mkv", audio=False),
        "audio_only": _write(d / "audio_only.wav", video=False),
        "late_video": _write(d / "late_video.mkv", video_from=3),  # video from 0.3 s, audio from 0
        "late_audio": _write(d / "late_audio.mkv", audio_from_s=0.5),  # audio from 0.5 s, video from 0
    }
    data = files["av"].read_bytes()
    (d / "truncated.mkv").write_bytes(data[: len(data) // 2])
    files["truncated"] = d / "truncated.mkv"
    data = _write(d / "h264.mp4", vcodec="libx264").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    files["truncated_mp4"] = d / "truncated.mp4"
    (d / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["garbage"] = d / "garbage.mp4"
    return files


# ---------------------------------------------------------------------------------------------------------------
# synthetic, exact


def test_full_decode_native(synth: dict[str, Path]) -> None:
    clip = decode_clip(synth["av"])
    assert clip.has_video and clip.has_audio and not clip.warnings
    assert clip.video is not None and clip.video.shape == (N_FRAMES, H, W, 3) and clip.video.dtype == np.uint8
    assert _frame_ids(clip) == list(range(N_FRAMES))
    assert clip.video_timestamps is not None and np.allclose(clip.video_timestamps, np.arange(N_FRAMES) / FPS)
    assert clip.fps == pytest.approx(FPS)
    assert clip.audio is not None and clip.audio.dtype == np.float32 and len(clip.audio) == 32000
    np.testing.assert_allclose(clip.audio, _level_of_sample(np.arange(32000), 16000), atol=1e-4)
    assert clip.end == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["av", "h264"])
@pytest.mark.parametrize(
    ("start", "end", "fps", "ids"),
    [
        (0.5, 1.5, 10, list(range(5, 15))),
        (0.5, 1.5, 5, [5, 7, 9, 11, 13]),  # every other frame
        (0.55, 1.0, 10, [5, 6, 7, 8, 9]),  # grid 0.55, 0.65, ...: nearest previous frame
        (1.2, 1.8, 5, [12, 14, 16]),  # start > 0.5 s: the seek path
        (1.25, 2.0, 20, [12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 18, 19, 19]),  # upsampling repeats frames
        (1.5, None, 10, [15, 16, 17, 18, 19]),  # to the end of the file
        (1.55, 3.0, 10, [15, 16, 17, 18, 19]),  # window past the end: only what exists
    ],
)
def test_window_and_fps(
    synth: dict[str, Path], name: str, start: float, end: float | None, fps: float, ids: list[int]
) -> None:
    clip = decode_clip(synth[name], start, end, fps=fps)
    assert _frame_ids(clip) == ids  # the h264 file is lossy, but grey levels 10 apart stay distinguishable
    assert clip.video_timestamps is not None
    np.testing.assert_allclose(clip.video_timestamps, start + np.arange(len(ids)) / fps)
    assert clip.fps == fps


def test_native_fps_window(synth: dict[str, Path]) -> None:
    clip = decode_clip(synth["av"], 0.5, 1.5)
    assert _frame_ids(clip) == list(range(5, 15))
    clip = decode_clip(synth["h264"], 1.15, 1.45)  # seek to a GOP-5 keyframe, drop frames before the start
    assert _frame_ids(clip) == [12, 13, 14]


@pytest.mark.parametrize("name", ["av", "av48"])
@pytest.mark.parametrize(("start", "end"), [(0.0, 1.0), (0.5, 1.5), (1.2, 1.8), (0.3, 0.75), (1.7, None)])
def test_audio_exact_length_and_alignment(synth: dict[str, Path], name: str, start: float, end: float | None) -> None:
    clip = decode_clip(synth[name], start, end, fps=10)
    assert clip.audio is not None
    n = round(((end if end is not None else 2.0) - start) * 16000)
    if end is not None:
        assert len(clip.audio) == n
    else:  # to the end: what exists after a seek; Matroska's 1 ms time base rounds the anchor frame's pts
        assert abs(len(clip.audio) - n) <= 16
        n = min(n, len(clip.audio))
    t = start + np.arange(n) / 16000
    audio = clip.audio[:n]
    expected = _level_of_sample(np.round(t * 16000).astype(int), 16000)
    if name == "av":  # 16 kHz s16: no resampling, sample-exact
        np.testing.assert_allclose(audio, expected, atol=1e-4)
    else:  # 48 kHz stereo -> 16 kHz mono: exact away from the step edges (resampling filter ringing)
        frac = (t * FPS) % 1.0
        interior = (frac > 0.05) & (frac < 0.95)
        np.testing.assert_allclose(audio[interior], expected[interior], atol=2e-3)
    # video and audio on one clock: the audio level during each output frame is that frame's level
    ids = _frame_ids(clip)
    for j, i in enumerate(ids):
        mid = round((j + 0.5) / 10 * 16000)
        if mid < n:
            assert clip.audio[mid] == pytest.approx(_level(i), abs=2e-3)


def test_streams_that_start_late(synth: dict[str, Path]) -> None:
    clip = decode_clip(synth["late_video"], 0.0, 1.0, fps=10)
    assert _frame_ids(clip) == [3, 3, 3, 3, 4, 5, 6, 7, 8, 9]  # the first frame stands in for the 0.3 s lead
    clip = decode_clip(synth["late_video"], 0.0, 0.25, fps=10)
    assert not clip.has_video and clip.video is None  # the video starts after the window
    assert clip.audio is not None and len(clip.audio) == 4000
    clip = decode_clip(synth["late_audio"], 0.0, 1.0, fps=10)
    assert _frame_ids(clip) == list(range(10))
    assert clip.audio is not None and len(clip.audio) == 16000
    assert not clip.audio[:8000].any()  # silence before the audio track starts keeps the clock aligned
    np.testing.assert_allclose(clip.audio[8000:], _level_of_sample(np.arange(8000, 16000), 16000), atol=1e-4)
    clip = decode_clip(synth["late_audio"], 0.0, 0.4, fps=10)
    assert clip.has_video and not clip.has_audio and clip.audio is None  # the audio starts after the window


def test_audio_sample_rate_and_load_audio(synth: dict[str, Path]) -> None:
    wav, sr = load_audio(synth["av48"], sample_rate=8000, start=0.25, end=1.25)
    assert sr == 8000 and wav.shape == (8000,) and wav.dtype == np.float32
    assert np.abs(wav).max() <= 1.0
    wav, _ = load_audio(synth["audio_only"])
    assert len(wav) == 32000


def test_video_only_and_audio_only(synth: dict[str, Path]) -> None:
    clip = decode_clip(synth["video_only"], 0, 1.0, fps=10)
    assert clip.has_video and not clip.has_audio and clip.audio is None
    assert _frame_ids(clip) == list(range(10))
    clip = decode_clip(synth["audio_only"], 0.5, 1.0, fps=10)
    assert clip.has_audio and not clip.has_video and clip.video is None and clip.video_timestamps is None
    assert clip.audio is not None and len(clip.audio) == 8000
    with pytest.raises(MediaError, match="no decodable audio"):
        load_audio(synth["video_only"])
    # not requesting the stream that exists: flags only, no crash
    clip = decode_clip(synth["video_only"], video=False)
    assert not clip.has_audio and not clip.has_video


def test_resize_and_max_side(synth: dict[str, Path]) -> None:
    clip = decode_clip(synth["av"], 0, 0.3, fps=10, size=16)
    assert clip.video is not None and clip.video.shape == (3, 16, 24, 3)
    assert _frame_ids(clip) == [0, 1, 2]  # constant frames stay constant through the scaler
    clip = decode_clip(synth["av"], 0, 0.3, fps=10, size=(20, 10))
    assert clip.video is not None and clip.video.shape == (3, 20, 10, 3)
    clip = decode_clip(synth["av"], 0, 0.3, fps=10, max_side=24)
    assert clip.video is not None and clip.video.shape == (3, 16, 24, 3)


def test_truncated_files(synth: dict[str, Path]) -> None:
    # Matroska cut in half: FFmpeg sees a clean EOF, so the first half decodes without a warning
    clip = decode_clip(synth["truncated"], fps=10)
    assert clip.video is not None and 5 <= len(clip.video) < N_FRAMES
    assert _frame_ids(clip) == list(range(len(clip.video)))  # what decoded is intact
    info = probe(synth["truncated"])
    assert info.status == "ok" and "the header says 2.0 s" in info.reason
    assert info.streams[0].decoded is not None and info.streams[0].decoded < N_FRAMES
    # MP4 cut in half: the index (moov) is at the end, so nothing can be read
    with pytest.raises(MediaError) as ei:
        decode_clip(synth["truncated_mp4"])
    assert ei.value.path == str(synth["truncated_mp4"])
    assert probe(synth["truncated_mp4"]).status == "error"


def test_garbage_and_missing(synth: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError) as ei:
        decode_clip(synth["garbage"])
    assert ei.value.path == str(synth["garbage"]) and str(ei.value).startswith(str(synth["garbage"]) + ": ")
    assert "\n" not in str(ei.value)
    missing = tmp_path / "nope.mp4"
    with pytest.raises(MediaError, match="not found"):
        decode_clip(missing)
    info = probe(missing)
    assert info.status == "error" and not info.usable and info.reason
    with pytest.raises(MediaError):
        media_duration(synth["garbage"])


def test_text_file_is_not_a_video(tmp_path: Path) -> None:
    # FFmpeg's tty demuxer (picked by the .txt extension) would decode this as a 1-s ANSI-art video
    txt = tmp_path / "labels.txt"
    txt.write_text("".join(f"{i} class number {i}\n" for i in range(400)))
    with pytest.raises(MediaError, match="text file"):
        decode_clip(txt)
    with pytest.raises(MediaError, match="text file"):
        media_duration(txt)
    info = probe(txt)
    assert info.status == "error" and not info.usable and "text file" in info.reason


def test_media_error_pickles() -> None:
    e = pickle.loads(pickle.dumps(MediaError("/a/b.mp4", "cannot open:\n  bad")))
    assert isinstance(e, MediaError) and e.path == "/a/b.mp4" and e.reason == "cannot open: bad"
    assert str(e) == "/a/b.mp4: cannot open: bad"


def test_bad_arguments(synth: dict[str, Path]) -> None:
    for kwargs in ({"start": 1.0, "end": 0.5}, {"start": -1.0}, {"fps": 0}, {"video": False, "audio": False}):
        with pytest.raises(ValueError):
            decode_clip(synth["av"], **kwargs)  # type: ignore[arg-type]


def test_window_beyond_end(synth: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="no frames"):
        decode_clip(synth["av"], 5.0, 6.0)


def test_timeout(synth: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="timed out"):
        decode_clip(synth["av"], timeout_s=0.0)


def test_probe_synthetic(synth: dict[str, Path]) -> None:
    info = probe(synth["av"])
    assert (info.status, info.container, info.usable) == ("ok", "matroska", True)
    assert info.duration == pytest.approx(2.0, abs=0.01)
    v, a = info.streams
    assert (v.kind, v.codec, v.width, v.height, v.decoded) == ("video", "ffv1", W, H, N_FRAMES)
    assert (a.kind, a.sample_rate, a.channels, a.decoded) == ("audio", 16000, 1, 32000)
    assert info.describe_streams() == "v:ffv1 48x32 10fps, a:pcm_s16le 16000Hz 1ch"
    assert probe(synth["video_only"]).status == "ok-video-only"
    assert probe(synth["audio_only"]).status == "ok-audio-only"
    assert media_duration(synth["av"]) == pytest.approx(2.0, abs=0.01)


# ---------------------------------------------------------------------------------------------------------------
# the real robustness set (../shared/data/media/robust)


def _robust_rows() -> list[dict[str, str]]:
    index = SHARED_DATA / "media" / "robust" / "index.csv"
    if not index.exists():
        return [{"file": "<absent>"}]  # one param that skips via shared_path
    with open(index, newline="") as f:
        return list(csv.DictReader(f))


ROBUST = _robust_rows()
FAST_EXPECT_S = 60.0


def _robust(row: dict[str, str]) -> Path:
    return shared_path("media", "robust", row["file"])


def _stream_seconds(row: dict[str, str]) -> tuple[float | None, float | None]:
    """Seconds of the first video and first audio stream per index.csv (None when absent)."""
    video = audio = None
    duration = float(row["duration_s"]) if row["duration_s"] else math.inf
    for part in row["streams"].split("; "):
        if video is None and (m := re.match(r"v:\S+ \d+x\d+ \S+ ([\d.]+)fps \[(\d+) frames", part)):
            fps, n = float(m.group(1)), int(m.group(2))
            video = min(duration, n / fps if fps <= 240 else math.inf)  # 1000 fps = a time base, not a rate
        if audio is None and (m := re.match(r"a:\S+ (\d+)Hz \d+ch \[(\d+) samples", part)):
            audio = int(m.group(2)) / int(m.group(1))
    return video, audio


@pytest.mark.parametrize("row", ROBUST, ids=[r["file"] for r in ROBUST])
def test_robust_probe_status(row: dict[str, str]) -> None:
    path = _robust(row)
    info = probe(path)
    assert isinstance(info, ProbeInfo)
    assert info.status == row["expect"], info.reason
    assert info.usable == (row["expect"] != "error")
    if row["container"]:
        assert info.container == row["container"]
    if info.status in ("partial", "error"):
        assert info.reason and "\n" not in info.reason


@pytest.mark.parametrize("row", ROBUST, ids=[r["file"] for r in ROBUST])
def test_robust_decode(row: dict[str, str]) -> None:
    path = _robust(row)
    expect = row["expect"]
    if not expect.startswith("ok"):
        try:  # the whole file (small) so the error is reached
            clip = decode_clip(path, fps=4, size=32)
        except MediaError as e:
            assert e.path == str(path) and e.reason and "\n" not in str(e)
        else:
            assert clip.warnings, "a partial file must say what went wrong"
            assert clip.has_video or clip.has_audio
        return
    video_s, audio_s = _stream_seconds(row)
    clip = decode_clip(path, 0.0, 1.0, fps=8, size=64)
    assert clip.has_video == (expect in ("ok", "ok-video-only"))
    assert clip.has_audio == (expect in ("ok", "ok-audio-only"))
    assert not clip.warnings
    if clip.has_video:
        assert clip.video is not None and clip.video_timestamps is not None and video_s is not None
        assert clip.video.dtype == np.uint8 and clip.video.ndim == 4 and clip.video.shape[3] == 3
        assert min(clip.video.shape[1:3]) == 64
        if video_s >= 1.0:
            assert len(clip.video) == 8
        else:
            assert abs(len(clip.video) - math.ceil(video_s * 8)) <= 1
        np.testing.assert_allclose(clip.video_timestamps, np.arange(len(clip.video)) / 8)
    if clip.has_audio:
        assert clip.audio is not None and audio_s is not None and clip.audio.dtype == np.float32
        assert np.isfinite(clip.audio).all() and np.abs(clip.audio).max() <= 1.0
        if audio_s >= 1.0:
            assert len(clip.audio) == 16000
        else:
            assert abs(len(clip.audio) - audio_s * 16000) < 0.05 * 16000


def _robust_file(name: str) -> Path:
    return shared_path("media", "robust", name)


def test_av_digits_edit_list_alignment() -> None:
    path = shared_path("av-digits", "train", "00000.mp4")
    clip = decode_clip(path)
    assert clip.video is not None and clip.video.shape == (16, 64, 64, 3) and clip.fps == pytest.approx(16)
    assert clip.audio is not None and len(clip.audio) == 16384  # AAC frame padding included with end=None
    window = decode_clip(path, 0.0, 1.0)
    assert window.audio is not None and len(window.audio) == 16000
    np.testing.assert_array_equal(window.audio, clip.audio[:16000])
    video_only = decode_clip(path, audio=False)
    np.testing.assert_array_equal(video_only.video, clip.video)  # type: ignore[arg-type]


def test_rotation_90() -> None:
    path = _robust_file("decord__video_90.mov")
    rotated = decode_clip(path, size=64)
    raw = decode_clip(path, size=64, rotate=False)
    assert rotated.video is not None and raw.video is not None
    assert raw.video.shape[1] < raw.video.shape[2]  # coded landscape 568x320
    assert rotated.video.shape[1] > rotated.video.shape[2]  # displayed portrait
    np.testing.assert_array_equal(rotated.video, np.rot90(raw.video, k=-1, axes=(1, 2)))  # -90 deg = clockwise


def test_rotation_180_and_reflection() -> None:
    path = _robust_file("androidx-media__mp4__internal_emulator_transformer_output_180_rotated.mp4")
    rotated = decode_clip(path, 0, 0.5, fps=4, size=48, audio=False)
    raw = decode_clip(path, 0, 0.5, fps=4, size=48, audio=False, rotate=False)
    assert rotated.video is not None and raw.video is not None and rotated.video.shape == raw.video.shape
    np.testing.assert_array_equal(rotated.video, raw.video[:, ::-1, ::-1])
    assert not np.array_equal(rotated.video, raw.video)
    path = _robust_file("androidx-media__mp4__sample_rotate_and_reflect.mp4")
    rotated = decode_clip(path, 0, 0.5, fps=4, size=48, audio=False)
    raw = decode_clip(path, 0, 0.5, fps=4, size=48, audio=False, rotate=False)
    assert rotated.video is not None and raw.video is not None
    np.testing.assert_array_equal(rotated.video, raw.video.transpose(0, 2, 1, 3))  # -90 deg + mirror = transpose


def test_8k_is_downscaled_while_decoding() -> None:
    """An 8K RGB frame is 99.5 MB: numpy must never hold one (tracemalloc sees numpy's allocations)."""
    path = _robust_file("androidx-media__mp4__8k24fps_300ms.mp4")
    tracemalloc.start()
    try:
        clip = decode_clip(path, 0.0, 0.25, fps=8, size=(90, 160))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert clip.video is not None and clip.video.shape == (2, 90, 160, 3)
    assert peak < 20e6, f"peak traced memory {peak / 1e6:.0f} MB"
    assert clip.audio is not None and len(clip.audio) == 4000


@pytest.mark.slow
def test_8k_default_max_side() -> None:
    clip = decode_clip(_robust_file("androidx-media__mp4__8k24fps_300ms.mp4"), 0.0, 0.1, audio=False)
    assert clip.video is not None and clip.video.shape[1:] == (1152, 2048, 3)


def test_exact_seek_frame_numbers() -> None:
    """torchcodec's h265 clip: 10 fps; a window after a seek gives the same pixels as a decode from the start."""
    path = _robust_file("torchcodec__h265_video.mp4")
    full = decode_clip(path)
    assert full.video is not None and len(full.video) == 10
    window = decode_clip(path, 0.7, 0.95)
    assert window.video_timestamps is not None and window.video is not None
    np.testing.assert_allclose(window.video_timestamps, [0.7, 0.8, 0.9])
    np.testing.assert_array_equal(window.video, full.video[7:10])


def test_long_file_seek_window() -> None:
    path = _robust_file("androidx-media__mp4__long_1080p_lowbitrate.mp4")
    clip = decode_clip(path, 200.0, 201.0, fps=8, size=64)
    assert clip.video is not None and clip.video.shape == (8, 64, 114, 3)
    np.testing.assert_allclose(clip.video_timestamps, 200.0 + np.arange(8) / 8)  # type: ignore[arg-type]
    assert clip.audio is not None and len(clip.audio) == 16000  # (the clip is black and silent)


@pytest.mark.slow
def test_seek_matches_decode_from_start() -> None:
    path = _robust_file("moviepy__big_buck_bunny_0_30.webm")
    ref = decode_clip(path, 0.0, 10.0, fps=4, size=32)
    win = decode_clip(path, 8.0, 10.0, fps=4, size=32)
    assert ref.video is not None and win.video is not None and ref.audio is not None and win.audio is not None
    np.testing.assert_array_equal(win.video, ref.video[32:40])
    assert len(win.audio) == 32000
    # Matroska stamps audio in 1 ms ticks: the seek anchor is refined to within a sample, not exact
    seg, tail = win.audio[2000:30000], ref.audio[8 * 16000 :]
    lags = range(-20, 21)
    err = [float(np.abs(tail[2000 + lag : 30000 + lag] - seg).mean()) for lag in lags]
    assert abs(lags[int(np.argmin(err))]) <= 1
    assert np.corrcoef(seg, tail[2000:30000])[0, 1] > 0.98


def test_seek_inside_an_mpeg_ps_audio_frame_keeps_audio() -> None:
    """A seek in MPEG-PS lands inside an MP2 frame whose rest fails to decode: the audio must not be dropped."""
    path = _robust_file("lipnet-grid__evaluation__samples__GRID__bbaf2n.mpg")
    ref = decode_clip(path, video=False).audio
    assert ref is not None
    for start in (0.8, 1.0, 1.5):
        win = decode_clip(path, start, start + 1.0, fps=4, size=32)
        assert win.has_audio and win.has_video and not win.warnings, (start, win.warnings)
        assert win.audio is not None and len(win.audio) == 16000
        k = round(start * 16000)
        assert np.corrcoef(win.audio[200:-200], ref[k + 200 : k + 16000 - 200])[0, 1] > 0.9


def test_audio_pts_gap_is_silence() -> None:
    """fire2.mp4's audio jumps by 155 ms after its first frame: the gap stays silent, later audio stays aligned."""
    path = _robust_file("moviepy__fire2.mp4")
    clip = decode_clip(path, 0.0, 1.0, video=False)
    assert clip.audio is not None and len(clip.audio) == 16000
    gap = clip.audio[round(0.03 * 16000) : round(0.17 * 16000)]
    assert np.abs(gap).max() < 1e-4
    assert np.abs(clip.audio[round(0.2 * 16000) :]).max() > 1e-3


def test_shorter_audio_is_not_padded() -> None:
    clip = decode_clip(_robust_file("androidx-media__mp4__sample_shorter_audio.mp4"), 0.0, 1.1, fps=10)
    assert clip.video is not None and len(clip.video) == 11
    assert clip.audio is not None and abs(len(clip.audio) - 33792 / 44100 * 16000) <= 1  # 12260.3: not padded
