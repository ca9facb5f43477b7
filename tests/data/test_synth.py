"""Synthetic AV dataset: deterministic rendering, balanced labels, decodable MP4s, worker-independent output."""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from avformer.data.synth import (
    CLASS_NAMES,
    SHAPES,
    SOUNDS,
    SynthConfig,
    _render_video,
    label_of,
    render_clip,
    split_of,
    write_dataset,
)

# small and short, so writing two datasets stays around a second
CFG = SynthConfig(num_clips=18, seconds=1.0, size=32, fps=16)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(T, H, W, 3) uint8 frames, (S,) float32 mono audio, sample rate."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].sample_rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, audio, rate


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same config written with 1 and with 2 workers."""
    out = {}
    for workers in (1, 2):
        root = tmp_path_factory.mktemp(f"synth_w{workers}")
        start = time.perf_counter()
        write_dataset(root, CFG, workers=workers)
        print(f"write_dataset n={CFG.num_clips} workers={workers}: {time.perf_counter() - start:.2f} s")
        out[workers] = root
    return out


def test_class_names() -> None:
    assert len(CLASS_NAMES) == len(SHAPES) * len(SOUNDS) == 9
    assert len(set(CLASS_NAMES)) == 9
    assert CLASS_NAMES[0] == "circle_hum" and CLASS_NAMES[5] == "square_rattle"


def test_render_clip_shapes_and_ranges() -> None:
    cfg = SynthConfig(seconds=1.0, size=32, fps=16)
    frames, audio, label = render_clip(cfg, 7)
    assert frames.shape == (16, 32, 32, 3) and frames.dtype == np.uint8
    assert audio.shape == (16000,) and audio.dtype == np.float32
    assert np.abs(audio).max() <= 1.0 and np.abs(audio).max() > 1e-3
    assert label == 7
    assert frames.std() > 5  # not a blank picture
    assert not np.array_equal(frames[0], frames[-1])  # the shape moves (or spins)


def test_render_clip_deterministic() -> None:
    a = render_clip(CFG, 5)
    b = render_clip(CFG, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    other_seed = render_clip(SynthConfig(num_clips=18, seconds=1.0, size=32, seed=1), 5)
    assert other_seed[2] == a[2]  # labels follow the index ...
    assert not np.array_equal(other_seed[0], a[0])  # ... the content follows the seed
    assert not np.array_equal(other_seed[1], a[1])
    # a clip does not depend on how many clips the dataset has
    bigger = render_clip(SynthConfig(num_clips=1000, seconds=1.0, size=32), 5)
    assert np.array_equal(bigger[0], a[0])


def test_label_balance_and_stratified_split() -> None:
    labels = [label_of(i) for i in range(90)]
    assert Counter(labels) == dict.fromkeys(range(9), 10)
    val = Counter(label_of(i) for i in range(90) if split_of(i, 0.2) == "val")
    assert val == dict.fromkeys(range(9), 2)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SynthConfig(size=33)
    with pytest.raises(ValueError):
        SynthConfig(difficulty=1.5)
    with pytest.raises(ValueError):
        SynthConfig(num_clips=0)


def test_write_dataset_files(datasets: dict[int, Path]) -> None:
    root = datasets[1]
    rows = _read_csv(root / "manifest.csv")
    assert len(rows) == CFG.num_clips
    assert list(rows[0]) == ["path", "label", "label_index"]
    assert [int(r["label_index"]) for r in rows] == [label_of(i) for i in range(CFG.num_clips)]
    assert all(CLASS_NAMES[int(r["label_index"])] == r["label"] for r in rows)
    assert sorted(p.name for p in (root / "clips").iterdir()) == sorted(Path(r["path"]).name for r in rows)
    train, val = _read_csv(root / "train.csv"), _read_csv(root / "val.csv")
    assert sorted(r["path"] for r in train + val) == sorted(r["path"] for r in rows)
    assert (root / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert "circle_hum" in (root / "README.txt").read_text()
    assert len(_read_csv(root / "meta.csv")) == CFG.num_clips


def test_written_mp4s_decode(datasets: dict[int, Path]) -> None:
    root = datasets[1]
    for i, row in enumerate(_read_csv(root / "manifest.csv")):
        path = root / row["path"]
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.audio[0].codec_context.name == "aac"
        frames, audio, rate = _decode(path)
        assert frames.shape == (round(CFG.seconds * CFG.fps), CFG.size, CFG.size, 3)
        assert rate == 16000
        # AAC pads the last 1024-sample frame
        assert CFG.num_samples <= audio.shape[0] <= CFG.num_samples + 1024
        if i < 3:  # decoded content matches the rendered arrays up to codec noise
            ref_frames, ref_audio, _ = render_clip(CFG, i)
            assert np.abs(frames.astype(np.float32) - ref_frames).mean() < 8.0
            err = audio[: CFG.num_samples] - ref_audio
            assert 10 * np.log10(np.sum(ref_audio**2) / np.sum(err**2)) > 20.0  # SNR of the codec, dB


def test_output_independent_of_workers(datasets: dict[int, Path]) -> None:
    one, two = datasets[1], datasets[2]
    for name in ("manifest.csv", "train.csv", "val.csv", "meta.csv", "classes.txt", "README.txt"):
        assert (one / name).read_text() == (two / name).read_text(), name
    for row in _read_csv(one / "manifest.csv")[:4]:
        a, _, _ = _decode(one / row["path"])
        b, _, _ = _decode(two / row["path"])
        assert np.abs(a.astype(np.float32) - b).mean() < 1.0  # identical content up to codec noise


def test_manifest_reads_with_class_names_in_index_order(tmp_path: Path) -> None:
    from avformer.data.manifest import read_manifest

    write_dataset(tmp_path, CFG, workers=1)
    m = read_manifest(tmp_path / "manifest.csv", classes=tmp_path / "classes.txt")
    assert m.classes == list(CLASS_NAMES)
    assert [m.label_indices(r)[0] for r in m] == [label_of(i) for i in range(CFG.num_clips)]


def _hue(rgb_hex: str) -> float:
    """Hue in turns (0 = red) of ``#rrggbb``."""
    r, g, b = (int(rgb_hex[k : k + 2], 16) / 255.0 for k in (1, 3, 5))
    return float(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b) / (2 * np.pi)) % 1.0


def test_shape_colours_tie_hue_to_shape_and_leave_the_default_alone() -> None:
    cfg = SynthConfig(num_clips=27, seconds=0.5, size=32, fps=8, shape_colours=True)
    for seed in range(60):
        shape = seed % len(SHAPES)
        _, meta = _render_video(cfg, shape, np.random.default_rng(seed))
        centre = shape / len(SHAPES)  # circle red 0, square green 1/3, triangle blue 2/3
        assert abs((_hue(meta["fg_rgb"]) - centre + 0.5) % 1.0 - 0.5) < 0.1, (seed, SHAPES[shape], meta)
        fg = np.array([int(meta["fg_rgb"][k : k + 2], 16) for k in (1, 3, 5)]) / 255.0
        bg = np.array([int(meta["bg_rgb"][k : k + 2], 16) for k in (1, 3, 5)]) / 255.0
        assert abs((fg - bg) @ np.array([0.299, 0.587, 0.114])) >= 0.2  # the shape stands out (0.3, less rounding)
    # off by default: the default data keeps its colours
    plain = replace(cfg, shape_colours=False)
    assert not SynthConfig().shape_colours
    hues = [_hue(_render_video(plain, 0, np.random.default_rng(s))[1]["fg_rgb"]) for s in range(60)]
    assert max(hues) - min(hues) > 0.5  # circles in every colour
