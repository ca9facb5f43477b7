"""Synthetic audio-visual events (``SynthConfig.events``): bursts on the sounding object's visual events, sidecars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avformer.data.media import decode_clip
from avformer.data.synth import SynthConfig, render_clip, write_dataset
from avformer.data.synth_events import EVENT_KINDS, events_path, read_events, render_event_clip

CFG = SynthConfig(num_clips=6, seconds=2.0, size=48, fps=16, events=True, objects=(2, 4))


def _energy(audio: np.ndarray, sr: int, t0: float, t1: float) -> float:
    a = audio[max(0, round(t0 * sr)) : round(t1 * sr)].astype(np.float64)
    return float(np.mean(a * a)) if a.size else 0.0


def _box_change(frames: np.ndarray, boxes: list[list[int]], f: int) -> float:
    """Summed absolute change from frame ``f - 1`` to ``f`` inside an object's boxes on both frames."""
    diff = np.abs(frames[f].astype(np.int32) - frames[f - 1].astype(np.int32)).sum(axis=-1)
    mask = np.zeros(diff.shape, dtype=bool)
    for x0, y0, x1, y1 in (boxes[f - 1], boxes[f]):
        mask[y0:y1, x0:x1] = True
    return float(diff[mask].sum())


def _event_contrast(frames: np.ndarray, ev: dict) -> float:
    """Smallest change inside the sounding object's box at a burst frame over its largest change at frames where
    it has no event (motion, spin, codec noise): > 1 when every burst frame shows a visual event."""
    boxes, bursts = ev["boxes"][ev["sounding"]], ev["burst_frames"]
    busy = {b + k for b in bursts for k in range(3)}  # an event lasts 1-2 frames: its start and end change
    at_bursts = [_box_change(frames, boxes, b) for b in bursts if b > 0]
    elsewhere = [_box_change(frames, boxes, f) for f in range(1, len(frames)) if f not in busy]
    return min(at_bursts, default=np.inf) / max(max(elsewhere), 1.0)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_events")
    write_dataset(root, CFG, workers=1)
    return root


def test_config_validation() -> None:
    assert SynthConfig().events is False and SynthConfig().objects == (1, 1)
    with pytest.raises(ValueError, match="events=True"):
        SynthConfig(objects=(2, 3))
    with pytest.raises(ValueError, match="objects"):
        SynthConfig(events=True, objects=(3, 2))
    with pytest.raises(ValueError, match="objects"):
        SynthConfig(events=True, objects=(0, 2))
    assert SynthConfig(events=True, objects=[2, 3]).objects == (2, 3)  # type: ignore[arg-type]  # YAML lists


def test_events_deterministic_and_distinct() -> None:
    a, b = render_event_clip(CFG, 3), render_event_clip(CFG, 3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[3] == b[3]
    c = render_event_clip(CFG, 4)
    assert c[3]["burst_frames"] != a[3]["burst_frames"] or not np.array_equal(a[1], c[1])
    with pytest.raises(ValueError, match="events"):
        render_event_clip(SynthConfig(), 0)
    # the events option leaves the plain clips as they were (their determinism is tested in test_synth.py)
    plain = SynthConfig(seconds=2.0, size=48, fps=16)
    assert not np.array_equal(render_clip(plain, 3)[1], a[1])


def test_event_schedule() -> None:
    """Bursts 2..5 per 2-s clip, >= 3 frames apart, on the sounding object's events; silent objects >= 3 away."""
    counts, kinds, objects = [], set(), set()
    for i in range(40):
        ev = render_event_clip(CFG, i)[3]
        bursts = ev["burst_frames"]
        counts.append(len(bursts))
        kinds.add(ev["event_kind"])
        objects.add(len(ev["boxes"]))
        assert np.all(np.diff(bursts) >= 3)
        assert ev["event_frames"][ev["sounding"]] == bursts
        for k, frames in enumerate(ev["event_frames"]):
            if k != ev["sounding"]:
                assert all(min(abs(f - b) for b in bursts) >= 3 for f in frames), (i, k)
        for f, t in zip(bursts, ev["burst_times"], strict=True):
            assert f / 16 <= t < (f + 0.5) / 16
    assert min(counts) >= 2 and max(counts) <= 5 and len(set(counts)) >= 3
    assert kinds == set(EVENT_KINDS) and objects == {2, 3, 4}


def test_rendered_events_line_up() -> None:
    """At each burst: audio energy jumps at the burst time, and the picture changes inside the sounding box."""
    for i in range(24):
        frames, audio, _, ev = render_event_clip(CFG, i)
        for f, t in zip(ev["burst_frames"], ev["burst_times"], strict=True):
            if t > 0.02:  # the energy before needs room
                assert _energy(audio, 16000, t, t + 0.03) > 8 * _energy(audio, 16000, t - 0.02, t - 0.002), (i, f)
        assert _event_contrast(frames, ev) > 1.0, (i, ev["event_kind"])


def test_sidecar_and_decoded_media_agree(written: Path) -> None:
    """The written sidecar matches the rendering, and the decoded MP4 keeps the bursts and events on their frames."""
    for i in range(CFG.num_clips):
        clip = written / "clips" / f"{i:06d}.mp4"
        ev = read_events(clip)
        assert ev == render_event_clip(CFG, i)[3]
        assert events_path(clip).is_file()
        assert ev["size"] == [48, 48] and all(len(b) == 32 for b in ev["boxes"])
        dec = decode_clip(str(clip), 0.0, None, fps=16, sample_rate=16000)
        assert dec.video.shape[0] == 32
        for t in ev["burst_times"]:
            if t > 0.02:  # AAC keeps the onset within a few ms
                assert _energy(dec.audio, 16000, t, t + 0.03) > 5 * _energy(dec.audio, 16000, t - 0.02, t - 0.005)
        assert _event_contrast(dec.video, ev) > 1.0, (i, ev["event_kind"])
    readme = (written / "README.txt").read_text()
    assert "--events --objects 2-4" in readme and "events.json" in readme


def _valid() -> dict:
    return {
        "fps": 16,
        "size": [32, 48],
        "sample_rate": 16000,
        "sounding": 1,
        "burst_frames": [1, 5],
        "burst_times": [0.07, 0.33],
        "boxes": [[[0, 0, 4, 4]] * 8, [[10, 2, 20, 12]] * 8],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fps": True}, "fps"),
        ({"fps": "16"}, "fps"),
        ({"size": [32]}, "size"),
        ({"sounding": 2}, "sounding"),
        ({"burst_frames": [5, 1]}, "ascending"),
        ({"burst_frames": [1, 8]}, "burst_frames"),
        ({"burst_times": [0.07]}, "burst_times"),
        ({"burst_times": [0.07, 1.0]}, "inside its frame"),
        ({"burst_times": [0.07, float("nan")]}, "finite"),
        ({"boxes": []}, "boxes"),
        ({"boxes": [[[0, 0, 4, 4]] * 8, [[10, 2, 20, 12]] * 7]}, "frames"),
        ({"boxes": [[[0, 0, 4, 4]] * 8, [[10, 2, 49, 12]] * 8]}, r"boxes\[1\]\[0\]\[2\]"),
        ({"boxes": [[[0, 0, 4, 4]] * 8, [[10, 2, 5, 12]] * 8]}, "x1 < x0"),
        ({"boxes": [[[0, 0, 4, 4]] * 8, [[10, 2, 20]] * 8]}, r"\[x0, y0, x1, y1\]"),
        ({"event_kind": "explode"}, "event_kind"),
        ({"event_frames": [[1]]}, "event_frames"),
    ],
)
def test_read_events_rejects_malformed(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "x.events.json"
    path.write_text(json.dumps({**_valid(), **change}))
    with pytest.raises(ValueError, match=message) as info:
        read_events(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_read_events_accepts_valid_and_rejects_files(tmp_path: Path) -> None:
    path = tmp_path / "a.events.json"
    path.write_text(json.dumps({**_valid(), "unknown_key": 1}))
    assert read_events(path) == _valid()  # unknown keys are dropped
    assert read_events(tmp_path / "a.mp4") == _valid()  # a clip's path reads its sidecar
    missing = {k: v for k, v in _valid().items() if k != "boxes"}
    path.write_text(json.dumps(missing))
    with pytest.raises(ValueError, match="lacks boxes"):
        read_events(path)
    for text in ("not json", "[1, 2]", "[" * 100_000):
        path.write_text(text)
        with pytest.raises(ValueError, match=str(path)):
            read_events(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_events(tmp_path / "absent.events.json")
    huge = tmp_path / "huge.events.json"
    with huge.open("wb") as f:  # sparse: the size check refuses it before reading
        f.truncate(64 << 20)
    with pytest.raises(ValueError, match="larger than"):
        read_events(huge)


def test_synth_cli_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from avformer.cli.synth import main

    args = [str(tmp_path), "--n", "2", "--seconds", "1", "--size", "32", "--workers", "1", "--events"]
    assert main([*args, "--objects", "2-3"]) == 0
    assert "events, 2-3 objects" in capsys.readouterr().out
    for i in range(2):
        assert 2 <= len(read_events(tmp_path / "clips" / f"{i:06d}.mp4")["boxes"]) <= 3
    assert main([*args, "--objects", "2-x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("avformer synth: --objects") and err.count("\n") == 1
    assert main([str(tmp_path), "--n", "2", "--objects", "3"]) == 2
    assert "events" in capsys.readouterr().err
