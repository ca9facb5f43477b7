"""Embedded synthetic audio-visual dataset: moving shapes that make sounds, written as real MP4 files.

Every clip shows one shape (circle, square or triangle) moving across a noisy background while one sound
(a low hum, repeated rising chirps, or a rattle of noise bursts) plays. The class is the **(shape, sound) pair**,
so there are 9 classes::

    label = 3 * shape + sound        e.g. 0 circle_hum, 1 circle_chirp, 2 circle_rattle, 3 square_hum, ...

Shape and sound are drawn independently of each other, so the picture alone fixes only the shape and the sound
alone only the sound: a perfect video-only or audio-only model reaches 1/3 accuracy, a model that fuses both
reaches 100 %. ``tools/check_synth.py`` measures this with simple classifiers.

Nuisances, all scaled by ``SynthConfig.difficulty`` (0 = clean, 1 = hard):
- picture: shape size (all shapes of one size have the *same area*, so the amount of colour says nothing),
  colour, start and end position (so speed and direction), rotation and spin, background colour gradient,
  per-frame pixel noise;
- sound: pitch / rate / band jitter, loudness, onset time, coloured background noise at a random SNR.

Each clip is generated from ``numpy.random.default_rng([seed, index])`` alone, so a clip's content does not
depend on how many clips or worker processes there are. The rendered arrays are bit-identical across runs; the
MP4 bytes were identical across runs on one machine in our checks (see ``_encode_mp4``) but may differ between
CPUs or FFmpeg builds (x264 picks SIMD code at run time), so compare decoded content up to codec noise, not hashes.

Files written by :func:`write_dataset` (paths in CSVs are relative to ``outdir``, like the shared datasets)::

    outdir/clips/000000.mp4 ...   H.264 yuv420p (crf 18) + AAC mono 16 kHz
    outdir/manifest.csv          path,label,label_index   (all clips; label is the class name)
    outdir/train.csv, val.csv    same columns, 80/20 split stratified by class
    outdir/meta.csv              per-clip nuisance parameters (shape, sound, colours, size, SNR, onset, ...)
    outdir/classes.txt           one class name per line, line i = label i
    outdir/README.txt            what the generator does and how to regenerate the data
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from avformer.data.synth_base import (
    _SQUARE_HALF_SIDE,
    _TRIANGLE_CIRCUMRADIUS,
    CLASS_NAMES,
    SHAPES,
    SOUNDS,
    SynthConfig,
    _band_noise,
    _coloured_noise,
    _colours,
    label_of,
    split_of,
)
from avformer.data.synth_events import _render_events, events_path
from avformer.utils.forking import collect_before_fork, freeze_inherited

__all__ = [
    "CLASS_NAMES",
    "SHAPES",
    "SOUNDS",
    "SynthConfig",
    "default_workers",
    "label_of",
    "render_clip",
    "split_of",
    "write_dataset",
]

_COLOUR_NOTE = {
    False: "Colours are drawn independently of the shape.",
    True: "Shape colours are on: each shape's colour comes from its own third of the hue circle (circle red, "
    "square green,\ntriangle blue), so the picture's class shows in its colour as well as in its outline.",
}


# ---- picture ---------------------------------------------------------------------------------------------


def _render_video(cfg: SynthConfig, shape: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """``(T, S, S, 3)`` uint8 frames of one shape moving over a noisy gradient."""
    t_len, s, d = cfg.num_frames, cfg.size, cfg.difficulty
    bg, fg = _colours(rng, shape if cfg.shape_colours else None)
    # equal-area radius, as a fraction of the frame: d=0 -> 0.17-0.22, d=1 -> 0.11-0.22
    r = s * rng.uniform(0.17 - 0.06 * d, 0.22)
    margin = 1.15 * r  # same for every shape, so position says nothing about the class
    p0 = rng.uniform(margin, s - 1 - margin, 2)  # (x, y) start
    p1 = rng.uniform(margin, s - 1 - margin, 2)  # (x, y) end
    theta0 = rng.uniform(0.0, 2 * np.pi)
    spin = rng.uniform(-1.0, 1.0) * np.pi * (0.25 + d)  # rad / s
    grad_dir = rng.uniform(0.0, 2 * np.pi)
    grad_amp = rng.uniform(0.0, 0.1 + 0.25 * d)
    noise_std = 0.06 * d * rng.uniform(0.5, 1.0)

    # float32 throughout: half the memory traffic of float64, and the result is rounded to uint8 anyway
    f32 = np.float32
    frac = np.linspace(0.0, 1.0, t_len)  # (T,)
    cx = (p0[0] + (p1[0] - p0[0]) * frac).astype(f32)
    cy = (p0[1] + (p1[1] - p0[1]) * frac).astype(f32)
    theta = theta0 + spin * frac * cfg.seconds
    coords = np.arange(s, dtype=f32)
    dx = coords[None, None, :] - cx[:, None, None]  # (T, 1, S)
    dy = coords[None, :, None] - cy[:, None, None]  # (T, S, 1)
    if SHAPES[shape] == "circle":
        dist = np.sqrt(dx * dx + dy * dy) - f32(r)
    else:
        cos, sin = np.cos(theta).astype(f32)[:, None, None], np.sin(theta).astype(f32)[:, None, None]
        qx = cos * dx + sin * dy  # (T, S, S) shape-frame coordinates
        qy = cos * dy - sin * dx
        if SHAPES[shape] == "square":
            dist = np.maximum(np.abs(qx), np.abs(qy)) - f32(_SQUARE_HALF_SIDE * r)
        else:  # equilateral triangle: intersection of three half-planes at the inradius (= circumradius / 2)
            angles = -np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
            dist = qx * f32(np.cos(angles[0])) + qy * f32(np.sin(angles[0]))
            for a in angles[1:]:
                np.maximum(dist, qx * f32(np.cos(a)) + qy * f32(np.sin(a)), out=dist)
            dist -= f32(_TRIANGLE_CIRCUMRADIUS * r / 2)
    # anti-aliased coverage: a one-pixel ramp across the edge of the distance field
    alpha = np.clip(f32(0.5) - dist, 0.0, 1.0)[..., None]  # (T, S, S, 1)

    ramp = (np.cos(grad_dir) * (coords[None, :] - s / 2) + np.sin(grad_dir) * (coords[:, None] - s / 2)) / s
    background = (bg + grad_amp * ramp[..., None] * np.array([1.0, 0.8, 1.2])).astype(f32)  # (S, S, 3)
    frames = alpha * (fg.astype(f32) - background) + background  # (T, S, S, 3) over-composite
    if noise_std > 0:
        frames += rng.standard_normal(frames.shape, dtype=f32) * f32(noise_std)
    frames *= f32(255.0)
    frames += f32(0.5)
    frames = np.clip(frames, 0.0, 255.0, out=frames).astype(np.uint8)
    meta = {
        "radius_px": round(float(r), 2),
        "fg_rgb": "#" + "".join(f"{round(c * 255):02x}" for c in fg),
        "bg_rgb": "#" + "".join(f"{round(c * 255):02x}" for c in bg),
        "speed_px_s": round(float(np.hypot(*(p1 - p0)) / cfg.seconds), 2),
        "spin_rad_s": round(float(spin), 3),
        "pixel_noise": round(float(noise_std), 4),
    }
    return frames, meta


# ---- sound -----------------------------------------------------------------------------------------------


def _render_audio(cfg: SynthConfig, sound: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """``(S,)`` float32 mono waveform in [-1, 1] of one sound over background noise."""
    n, sr, d = cfg.num_samples, cfg.sample_rate, cfg.difficulty
    t = np.arange(n) / sr
    meta: dict[str, Any] = {}
    name = SOUNDS[sound]
    if name == "hum":  # steady low harmonic tone with slow vibrato
        f0 = rng.uniform(110.0, 220.0)
        inst = f0 * (1.0 + 0.01 * np.sin(2 * np.pi * rng.uniform(3.0, 6.0) * t))
        phase = 2 * np.pi * np.cumsum(inst) / sr
        x = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
        meta["pitch_hz"] = round(float(f0), 1)
    elif name == "chirp":  # repeated exponential up-sweeps, each faded in and out
        rate = rng.uniform(3.0, 5.0)  # sweeps / s
        f_lo = rng.uniform(500.0, 800.0)
        f_hi = f_lo * rng.uniform(3.0, 4.0)
        u = (t * rate + rng.uniform()) % 1.0  # position inside the current sweep
        inst = f_lo * (f_hi / f_lo) ** u
        x = np.sin(2 * np.pi * np.cumsum(inst) / sr) * np.sin(np.pi * u) ** 2
        meta["pitch_hz"] = round(float(f_lo), 1)
        meta["rate_hz"] = round(float(rate), 2)
    else:  # rattle: band-limited noise bursts with a sharp attack and fast decay
        rate = rng.uniform(5.0, 8.0)  # bursts / s
        centre = rng.uniform(1500.0, 3500.0)
        u = (t * rate + rng.uniform()) % 1.0
        decay = rng.uniform(0.015, 0.03) * rate  # decay time as a fraction of the period
        env = (1.0 - np.exp(-u / 0.1 / decay)) * np.exp(-u / decay)  # soft attack: no broadband click
        x = _band_noise(rng, n, sr, centre / np.sqrt(2), centre * np.sqrt(2)) * env
        meta["pitch_hz"] = round(float(centre), 1)
        meta["rate_hz"] = round(float(rate), 2)
    x = np.asarray(x, dtype=np.float64)
    x /= np.sqrt(np.mean(x * x)) + 1e-12  # unit RMS before gain, so loudness is the gain alone

    onset = rng.uniform(0.0, 0.05 + 0.25 * d) * cfg.seconds
    env = np.clip((t - onset) / 0.02, 0.0, 1.0)  # 20 ms attack, then on until the end
    gain_db = rng.uniform(-24.0, -12.0)  # RMS level of the sound, dBFS
    snr_db = rng.uniform(40.0 - 30.0 * d, 50.0 - 25.0 * d)
    noise_db = gain_db - snr_db
    noise = _coloured_noise(rng, n, rng.uniform(0.0, 2.0))
    y = 10 ** (gain_db / 20) * x * env + 10 ** (noise_db / 20) * noise
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    meta.update(onset_s=round(float(onset), 3), level_dbfs=round(float(gain_db), 1), snr_db=round(float(snr_db), 1))
    return y.astype(np.float32), meta


# ---- clips -----------------------------------------------------------------------------------------------


def _render(cfg: SynthConfig, index: int) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    label = label_of(index)
    shape, sound = divmod(label, len(SOUNDS))
    rng = np.random.default_rng([cfg.seed, index])
    frames, vmeta = _render_video(cfg, shape, rng)
    audio, ameta = _render_audio(cfg, sound, rng)
    meta = {"shape": SHAPES[shape], "sound": SOUNDS[sound], **vmeta, **ameta}
    return frames, audio, label, meta


def render_clip(cfg: SynthConfig, index: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Render clip ``index`` of the dataset ``cfg`` describes, without writing it.

    Args:
        cfg: dataset settings (``num_clips`` is not used: any index can be rendered).
        index: clip number, ``>= 0``; seeds the clip together with ``cfg.seed``.

    Returns:
        ``frames`` ``(T, S, S, 3)`` uint8 with ``T = cfg.num_frames`` and ``S = cfg.size``,
        ``audio`` ``(cfg.num_samples,)`` float32 mono in ``[-1, 1]`` at ``cfg.sample_rate``,
        ``label`` in ``[0, 9)``, naming ``CLASS_NAMES[label]``.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    frames, audio, label, _ = _render(cfg, index)
    return frames, audio, label


_REFORMATTERS: dict[int, VideoReformatter] = {}


def _yuv_reformatter() -> VideoReformatter:
    """This process's rgb24 -> yuv420p converter.

    Kept for the process's life: building a swscale context costs ~10 ms, converting a 64x64 frame with a ready
    one ~0.04 ms (``VideoFrame.reformat`` builds a fresh context every call). Keyed by pid so that a forked worker
    never uses a context (and thread pool) inherited from its parent: that deadlocked.
    """
    pid = os.getpid()
    if pid not in _REFORMATTERS:
        _REFORMATTERS[pid] = VideoReformatter()
    return _REFORMATTERS[pid]


# bit-exact C paths in swscale: the conversion does not depend on the CPU's SIMD
_YUV_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.BITEXACT


def _encode_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, cfg: SynthConfig) -> None:
    """Write H.264 (yuv420p) + AAC (mono) to ``path``. ``frames`` (T, H, W, 3) uint8, ``audio`` (S,) float32."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), mode="w") as container:
        # Reproducible bytes on one machine need three things (measured with x264 core 165): one thread; no
        # B-frames (x264's adaptive B-frame decision gave different bitstreams for identical input from run to
        # run, ~1 in 3); and our own rgb->yuv conversion (the encoder-side one varied too). Cost: ~7 % larger files.
        vstream = container.add_stream(
            "libx264",
            rate=cfg.fps,
            options={"crf": str(cfg.crf), "preset": "fast", "threads": "1", "x264-params": "bframes=0"},
        )
        vstream.width, vstream.height = frames.shape[2], frames.shape[1]
        vstream.pix_fmt = "yuv420p"
        # the default "twoloop" AAC coder is 6x slower for no audible gain on these sounds
        astream = container.add_stream("aac", rate=cfg.sample_rate, layout="mono", options={"aac_coder": "fast"})
        astream.bit_rate = 64000
        to_yuv = _yuv_reformatter()
        for i, img in enumerate(frames):
            rgb = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame = to_yuv.reformat(rgb, format="yuv420p", interpolation=_YUV_FLAGS, threads=1)
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        aframe = av.AudioFrame.from_ndarray(audio[None, :], format="fltp", layout="mono")
        aframe.sample_rate = cfg.sample_rate
        aframe.pts = 0
        container.mux(astream.encode(aframe))  # the encoder re-chunks into 1024-sample AAC frames
        container.mux(astream.encode(None))
    os.replace(tmp, path)  # never leave a half-written clip under its final name


def _clip_relpath(index: int) -> str:
    return f"clips/{index:06d}.mp4"


def _write_clip(job: tuple[SynthConfig, str, int]) -> tuple[int, int, dict[str, Any]]:
    cfg, outdir, index = job
    clip = Path(outdir) / _clip_relpath(index)
    if not cfg.events:
        frames, audio, label, meta = _render(cfg, index)
        _encode_mp4(clip, frames, audio, cfg)
        return index, label, meta
    import json

    frames, audio, label, meta, events = _render_events(cfg, index)
    _encode_mp4(clip, frames, audio, cfg)
    sidecar = events_path(clip)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps(events, separators=(",", ":")) + "\n")
    os.replace(tmp, sidecar)
    return index, label, meta


def default_workers() -> int:
    """``min(2, usable CPUs)``: the project machines have two cores shared by several jobs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


def _iter_written(cfg: SynthConfig, outdir: Path, workers: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
    jobs = [(cfg, str(outdir), i) for i in range(cfg.num_clips)]
    if workers <= 1:
        yield from map(_write_clip, jobs)
        return
    collect_before_fork()
    with mp.get_context().Pool(workers, initializer=freeze_inherited) as pool:
        yield from pool.imap_unordered(_write_clip, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


_EVENTS_NOTE = """
Events are on: each clip holds {objects} moving shapes, one of which sounds. The sound is a train of short
bursts (the class's timbre: hum = harmonic tone, chirp = up-sweep, rattle = band noise) at random times, 1 to 2.5
per second, onsets at least 3 frames apart; each burst starts inside a frame on which the sounding object shows a
visual event (flash, size pulse or jump; one kind per clip, 1-2 frames long). Silent objects have events of their
own at other times. Per clip, clips/NNNNNN.events.json records fps, size, sample_rate, sounding (object index),
burst_frames, burst_times, boxes (per object, per frame [x0, y0, x1, y1] in pixels, end exclusive), event_frames,
event_kind, shapes. The label is (shape of the sounding object, timbre of the bursts).
"""


def _readme(cfg: SynthConfig, counts: dict[str, int]) -> str:
    classes = "\n".join(f"  {i}  {name}" for i, name in enumerate(CLASS_NAMES))
    items = asdict(cfg).items()
    if not cfg.events:  # the plain synth's README stays as it was
        items = [(k, v) for k, v in items if k not in ("events", "objects")]
    settings = "\n".join(f"  {k} = {v}" for k, v in items)
    events_flags = f" --events --objects {cfg.objects[0]}-{cfg.objects[1]}" if cfg.events else ""
    events_note = _EVENTS_NOTE.format(objects="-".join(map(str, sorted(set(cfg.objects))))) if cfg.events else ""
    return f"""avformer synthetic audio-visual dataset
=======================================

Written by `avformer synth` (avformer.data.synth). Regenerate with:

  avformer synth OUTDIR --n {cfg.num_clips} --seed {cfg.seed} --seconds {cfg.seconds} --size {cfg.size} \
--fps {cfg.fps} --difficulty {cfg.difficulty} --crf {cfg.crf}{" --shape-colours" if cfg.shape_colours else ""}\
{events_flags}

Each clip shows one shape (circle, square, triangle) moving over a noisy colour gradient while one sound plays
(hum: steady harmonic tone at 110-220 Hz; chirp: 3-5 rising sweeps per second from 500-800 Hz up 3-4x;
rattle: 5-8 bursts per second of band-limited noise centred at 1.5-3.5 kHz). The label is the (shape, sound)
pair, drawn as label = 3 * shape + sound, and shape and sound are independent: the picture alone or the sound
alone can be right at most 1/3 of the time; both together identify the class.

Nuisances: size (equal area across shapes), colour, position, speed, direction, rotation and spin, background
gradient and pixel noise; pitch/rate jitter, loudness, onset and coloured background noise at a random SNR.
Their ranges grow with `difficulty` (0 clean .. 1 hard). Per-clip values are in meta.csv.
{_COLOUR_NOTE[cfg.shape_colours]}
{events_note}
Media: {cfg.num_frames} frames of {cfg.size}x{cfg.size} at {cfg.fps} fps, H.264 yuv420p crf {cfg.crf};
AAC mono {cfg.sample_rate} Hz. Clip i is generated from numpy.random.default_rng([seed, i]) alone.

Files: manifest.csv (all clips), train.csv / val.csv (stratified split: {counts["train"]} / {counts["val"]}),
meta.csv, classes.txt. CSV paths are relative to this folder. Columns: path,label,label_index, where label is
the class name and label_index its index; classes.txt lists the names in index order (line i = index i), so
`read_manifest(path, classes="classes.txt")` keeps that order.

Classes:
{classes}

Settings:
{settings}
"""


def write_dataset(outdir: str | Path, cfg: SynthConfig, workers: int | None = None) -> Path:
    """Render and encode ``cfg.num_clips`` clips under ``outdir`` and write the CSVs and README.

    Output does not depend on ``workers``: clip ``i`` is always seeded from ``(cfg.seed, i)`` and the CSVs are
    written in index order. Existing files of the same names are overwritten.

    Args:
        outdir: destination folder (created).
        cfg: what to generate.
        workers: processes; ``None`` means :func:`default_workers`, ``<= 1`` renders in this process.

    Returns:
        Path of ``outdir/manifest.csv``.
    """
    out = Path(outdir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    workers = default_workers() if workers is None else workers
    results = sorted(_iter_written(cfg, out, workers), key=lambda r: r[0])

    header = ["path", "label", "label_index"]
    rows: dict[str, list[list[Any]]] = {"train": [], "val": []}
    all_rows: list[list[Any]] = []
    meta_rows: list[list[Any]] = []
    meta_keys = sorted({k for _, _, m in results for k in m})
    for index, label, meta in results:
        row = [_clip_relpath(index), CLASS_NAMES[label], label]
        all_rows.append(row)
        rows[split_of(index, cfg.val_fraction)].append(row)
        meta_rows.append([_clip_relpath(index), label, *(meta.get(k, "") for k in meta_keys)])

    manifest = out / "manifest.csv"
    _write_csv(manifest, header, all_rows)
    _write_csv(out / "train.csv", header, rows["train"])
    _write_csv(out / "val.csv", header, rows["val"])
    _write_csv(out / "meta.csv", ["path", "label", *meta_keys], meta_rows)
    (out / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (out / "README.txt").write_text(_readme(cfg, {k: len(v) for k, v in rows.items()}))
    return manifest
