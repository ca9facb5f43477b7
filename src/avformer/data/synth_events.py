"""Audio-visual events of the synthetic dataset (``SynthConfig.events``): several moving shapes, one of which
sounds, with bursts of sound at the frames where that shape shows a visual event; and the ``.events.json``
sidecar of each clip (what was where, when) that localisation and synchronisation read back.

With ``events`` on, :func:`avformer.data.synth.write_dataset` renders each clip with :func:`render_event_clip`'s
generator and writes the sidecar beside it (:func:`events_path`); :func:`read_events` reads one back, checking every
field (a sidecar is untrusted input: size, types and ranges are checked before anything uses them). What a clip
holds is described in the README that ``write_dataset`` writes (``_EVENTS_NOTE`` there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from avformer.data.synth_base import (
    _SQUARE_HALF_SIDE,
    _TRIANGLE_CIRCUMRADIUS,
    SHAPES,
    SOUNDS,
    SynthConfig,
    _band_noise,
    _coloured_noise,
    _colours,
    _luma,
    label_of,
)

__all__ = ["EVENTS_SUFFIX", "EVENT_KINDS", "events_path", "read_events", "render_event_clip"]

EVENT_KINDS: tuple[str, ...] = ("flash", "pulse", "jump")
EVENTS_SUFFIX = ".events.json"
_MIN_GAP = 3  # frames between two bursts (onset to onset), so that bursts never overlap
_BURSTS_PER_S = (1.0, 2.5)  # a 2-s clip has 2..5 bursts
_EVENTS_MAX_BYTES = 4 << 20  # read_events refuses larger sidecars before parsing
_EVENTS_MAX_FRAMES = 100_000


def _burst_count_range(cfg: SynthConfig) -> tuple[int, int]:
    lo = max(1, round(_BURSTS_PER_S[0] * cfg.seconds))
    return lo, max(lo, round(_BURSTS_PER_S[1] * cfg.seconds))


def _pick_frames(rng: np.random.Generator, count: int, allowed: np.ndarray, gap: int) -> list[int]:
    """Up to ``count`` frames drawn from the True entries of ``allowed`` with onsets at least ``gap`` apart."""
    allowed = allowed.copy()
    picked: list[int] = []
    for _ in range(count):
        free = np.flatnonzero(allowed)
        if free.size == 0:
            break
        f = int(free[rng.integers(free.size)])
        picked.append(f)
        allowed[max(0, f - gap + 1) : f + gap] = False
    return sorted(picked)


def _path_clearance(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> float:
    """Smallest distance between two points moving linearly from ``a0``/``b0`` to ``a1``/``b1`` over the clip."""
    d0, dd = a0 - b0, (a1 - b1) - (a0 - b0)  # difference d(t) = d0 + t * dd, t in [0, 1]
    t = 0.0 if float(dd @ dd) == 0 else float(np.clip(-(d0 @ dd) / (dd @ dd), 0.0, 1.0))
    return float(np.hypot(*(d0 + t * dd)))


def _object_alpha(shape: str, dx: np.ndarray, dy: np.ndarray, theta: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage (T, S, S) of one shape; ``dx`` (T, 1, S), ``dy`` (T, S, 1), ``theta`` and ``r`` (T,)."""
    f32 = np.float32
    rr = r.astype(f32)[:, None, None]
    if shape == "circle":
        dist = np.sqrt(dx * dx + dy * dy) - rr
    else:
        cos, sin = np.cos(theta).astype(f32)[:, None, None], np.sin(theta).astype(f32)[:, None, None]
        qx = cos * dx + sin * dy
        qy = cos * dy - sin * dx
        if shape == "square":
            dist = np.maximum(np.abs(qx), np.abs(qy)) - f32(_SQUARE_HALF_SIDE) * rr
        else:
            angles = -np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
            dist = qx * f32(np.cos(angles[0])) + qy * f32(np.sin(angles[0]))
            for a in angles[1:]:
                np.maximum(dist, qx * f32(np.cos(a)) + qy * f32(np.sin(a)), out=dist)
            dist = dist - f32(_TRIANGLE_CIRCUMRADIUS / 2) * rr
    return np.clip(f32(0.5) - dist, 0.0, 1.0)


def _event_schedule(cfg: SynthConfig, rng: np.random.Generator, num_objects: int, sounding: int) -> list[list[int]]:
    """Event onset frames per object: the sounding object's are the burst frames; the silent objects' events start
    at least 3 frames away from every burst (their own random times), so that no change of a silent object (its
    event's start or end, events last 1-2 frames) falls on a burst frame."""
    t_len = cfg.num_frames
    lo, hi = _burst_count_range(cfg)
    usable = np.zeros(t_len, dtype=bool)
    usable[: t_len - 1] = True  # an event may last 2 frames: start it before the last frame
    bursts = _pick_frames(rng, int(rng.integers(lo, hi + 1)), usable, _MIN_GAP)
    away = usable.copy()
    for b in bursts:
        away[max(0, b - 2) : b + 3] = False
    schedule = []
    for k in range(num_objects):
        if k == sounding:
            schedule.append(bursts)
        else:
            schedule.append(_pick_frames(rng, int(rng.integers(lo, hi + 1)), away, _MIN_GAP))
    return schedule


def _render_event_video(
    cfg: SynthConfig, shape: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Frames of 1..N moving shapes with visual events, the sounding one of class ``shape``; plus the events
    record (sounding index, burst frames, boxes, per-object event frames) and meta."""
    t_len, s, d = cfg.num_frames, cfg.size, cfg.difficulty
    f32 = np.float32
    num_objects = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    sounding = int(rng.integers(num_objects))
    kind = EVENT_KINDS[int(rng.integers(len(EVENT_KINDS)))]
    shapes = [int(rng.integers(len(SHAPES))) for _ in range(num_objects)]
    shapes[sounding] = shape
    # one object as large as the plain synth's; several get smaller so that they fit side by side
    scale = min(1.0, 1.4 / np.sqrt(num_objects))
    radii = [s * scale * rng.uniform(0.17 - 0.06 * d, 0.22) for _ in range(num_objects)]
    paths: list[tuple[np.ndarray, np.ndarray]] = []
    for r in radii:  # start / end points; retry a few times for paths that keep the objects apart
        margin = 1.15 * r
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for _ in range(50):
            p0 = rng.uniform(margin, s - 1 - margin, 2)
            p1 = np.clip(p0 + rng.uniform(-0.3, 0.3, 2) * s, margin, s - 1 - margin)
            gap = min(
                (_path_clearance(p0, p1, q0, q1) - 1.2 * (r + rq) for (q0, q1), rq in zip(paths, radii, strict=False)),
                default=0.0,
            )
            if best is None or gap > best[0]:
                best = (gap, p0, p1)
            if gap >= 0:
                break
        assert best is not None
        paths.append((best[1], best[2]))
    schedule = _event_schedule(cfg, rng, num_objects, sounding)
    durations = [[int(rng.integers(1, 3)) for _ in frames] for frames in schedule]

    bg, _ = _colours(rng)
    grad_dir = rng.uniform(0.0, 2 * np.pi)
    grad_amp = rng.uniform(0.0, 0.1 + 0.25 * d)
    noise_std = 0.06 * d * rng.uniform(0.5, 1.0)
    coords = np.arange(s, dtype=f32)
    ramp = (np.cos(grad_dir) * (coords[None, :] - s / 2) + np.sin(grad_dir) * (coords[:, None] - s / 2)) / s
    background = (bg + grad_amp * ramp[..., None] * np.array([1.0, 0.8, 1.2])).astype(f32)  # (S, S, 3)
    frames = np.broadcast_to(background, (t_len, s, s, 3)).copy()
    frac = np.linspace(0.0, 1.0, t_len)
    boxes: list[list[list[int]]] = []
    for k in range(num_objects):
        fg = rng.uniform(0.0, 1.0, 3)
        for _ in range(32):  # contrast with the background, as in the plain synth
            if abs(_luma(fg) - _luma(bg)) >= 0.3:
                break
            fg = rng.uniform(0.0, 1.0, 3)
        theta = rng.uniform(0.0, 2 * np.pi) + rng.uniform(-1.0, 1.0) * np.pi * (0.25 + d) * frac * cfg.seconds
        p0, p1 = paths[k]
        cx = p0[0] + (p1[0] - p0[0]) * frac
        cy = p0[1] + (p1[1] - p0[1]) * frac
        r = np.full(t_len, radii[k])
        colour = np.broadcast_to(fg, (t_len, 3)).copy()
        on = np.zeros(t_len, dtype=bool)
        for f, n in zip(schedule[k], durations[k], strict=True):
            on[f : f + n] = True
        if kind == "flash":  # towards white (dark shapes) or black (light ones): a luma jump of >= 0.4
            target = 1.0 if _luma(fg) < 0.5 else 0.0
            colour[on] = 0.15 * fg + 0.85 * target
        elif kind == "pulse":
            r[on] *= 1.6
        else:  # jump: a hop of 0.9 radius towards the frame centre
            cy = cy.copy()
            cy[on] += np.where(cy[on] > s / 2, -0.9, 0.9) * radii[k]
        dx = coords[None, None, :] - cx.astype(f32)[:, None, None]
        dy = coords[None, :, None] - cy.astype(f32)[:, None, None]
        alpha = _object_alpha(SHAPES[shapes[k]], dx, dy, theta, r)  # (T, S, S)
        frames += alpha[..., None] * (colour.astype(f32)[:, None, None, :] - frames)
        obj_boxes = []
        for a in alpha >= 0.5:
            ys, xs = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
            if ys.size == 0:  # not expected (objects stay inside the frame); keep a valid empty-looking box
                obj_boxes.append([0, 0, 0, 0])
            else:
                obj_boxes.append([int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1])
        boxes.append(obj_boxes)
    if noise_std > 0:
        frames += rng.standard_normal(frames.shape, dtype=f32) * f32(noise_std)
    frames = np.clip(frames * f32(255.0) + f32(0.5), 0.0, 255.0).astype(np.uint8)
    record = {
        "sounding": sounding,
        "burst_frames": list(schedule[sounding]),
        "boxes": boxes,
        "event_frames": [list(f) for f in schedule],
        "event_kind": kind,
        "shapes": [SHAPES[i] for i in shapes],
    }
    meta = {
        "event_kind": kind,
        "num_objects": num_objects,
        "num_bursts": len(schedule[sounding]),
        "radius_px": round(float(radii[sounding]), 2),
        "pixel_noise": round(float(noise_std), 4),
    }
    return frames, record, meta


def _burst(rng: np.random.Generator, sound: str, n: int, sr: int) -> np.ndarray:
    """One burst of ``n`` samples of the timbre ``sound`` (unit RMS over its first 30 ms), sharp attack."""
    t = np.arange(n) / sr
    if sound == "hum":  # a short harmonic tone
        f0 = rng.uniform(110.0, 220.0)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 6))
    elif sound == "chirp":  # one exponential up-sweep
        f_lo = rng.uniform(500.0, 800.0)
        f_hi = f_lo * rng.uniform(3.0, 4.0)
        inst = f_lo * (f_hi / f_lo) ** (t / max(t[-1], 1e-9))
        x = np.sin(2 * np.pi * np.cumsum(inst) / sr)
    else:  # rattle: band-limited noise
        centre = rng.uniform(1500.0, 3500.0)
        x = _band_noise(rng, n, sr, centre / np.sqrt(2), centre * np.sqrt(2))
    x = np.asarray(x, dtype=np.float64)
    attack = np.clip(t / 0.003, 0.0, 1.0)  # 3 ms: sharp enough to time to a 10 ms hop, no broadband click
    decay = np.exp(-t / (0.35 * t[-1] + 1e-9))
    head = max(1, round(0.03 * sr))
    x = x * attack * decay
    return x / (np.sqrt(np.mean(x[:head] ** 2)) + 1e-12)


def _render_event_audio(
    cfg: SynthConfig, sound: int, burst_frames: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, list[float], dict[str, Any]]:
    """Bursts of timbre ``sound`` starting inside the given frames (a random point of the frame's first half),
    over continuous coloured noise (no silent stretch anywhere: nothing marks the clip's edges)."""
    n, sr, d = cfg.num_samples, cfg.sample_rate, cfg.difficulty
    y = np.zeros(n)
    times: list[float] = []
    gain_db = rng.uniform(-18.0, -8.0)
    for f in burst_frames:
        start = (f + rng.uniform(0.0, 0.5)) / cfg.fps
        length = rng.uniform(0.06, 0.12)  # s; bursts start >= 3 frames apart, so they never overlap
        i0 = round(start * sr)
        m = min(round(length * sr), n - i0)
        if m <= 8:
            continue
        y[i0 : i0 + m] += _burst(rng, SOUNDS[sound], m, sr) * 10 ** ((gain_db + rng.uniform(-3.0, 3.0)) / 20)
        times.append(round(i0 / sr, 6))
    snr_db = rng.uniform(30.0 - 20.0 * d, 40.0 - 20.0 * d)
    noise = _coloured_noise(rng, n, rng.uniform(0.0, 2.0)) * 10 ** ((gain_db - snr_db) / 20)
    y = y + noise
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    meta = {"level_dbfs": round(float(gain_db), 1), "snr_db": round(float(snr_db), 1)}
    return y.astype(np.float32), times, meta


def _render_events(cfg: SynthConfig, index: int) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any], dict[str, Any]]:
    label = label_of(index)
    shape, sound = divmod(label, len(SOUNDS))
    rng = np.random.default_rng([cfg.seed, index])
    frames, record, vmeta = _render_event_video(cfg, shape, rng)
    audio, times, ameta = _render_event_audio(cfg, sound, record["burst_frames"], rng)
    events = {
        "fps": cfg.fps,
        "size": [cfg.size, cfg.size],
        "sample_rate": cfg.sample_rate,
        "sounding": record["sounding"],
        "burst_frames": record["burst_frames"],
        "burst_times": times,
        "boxes": record["boxes"],
        "event_frames": record["event_frames"],
        "event_kind": record["event_kind"],
        "shapes": record["shapes"],
    }
    meta = {"shape": SHAPES[shape], "sound": SOUNDS[sound], **vmeta, **ameta}
    return frames, audio, label, meta, events


def render_event_clip(cfg: SynthConfig, index: int) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Render clip ``index`` of an event dataset (``cfg.events``) without writing it.

    Returns:
        ``frames`` (T, S, S, 3) uint8, ``audio`` (S,) float32, ``label`` (class of the sounding object's shape
        and the bursts' timbre), and the events record that :func:`write_dataset` writes as the sidecar
        (see :func:`read_events` for its keys).
    """
    if not cfg.events:
        raise ValueError("render_event_clip needs SynthConfig(events=True)")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    frames, audio, label, _, events = _render_events(cfg, index)
    return frames, audio, label, events


def events_path(clip: str | Path) -> Path:
    """The sidecar of a clip: ``clips/000001.mp4`` -> ``clips/000001.events.json``."""
    p = Path(clip)
    return p.with_name(p.stem + EVENTS_SUFFIX) if p.suffix.lower() == ".mp4" else p.with_name(p.name + EVENTS_SUFFIX)


def _int(v: Any, what: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng_text = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{what} must be an integer {rng_text}, got {v!r}"[:200])
    return v


def _int_list(v: Any, what: str, lo: int, hi: int, max_len: int) -> list[int]:
    if not isinstance(v, list) or len(v) > max_len:
        raise ValueError(f"{what} must be a list of at most {max_len} integers")
    return [_int(x, f"{what}[{i}]", lo, hi) for i, x in enumerate(v)]


def read_events(path: str | Path) -> dict[str, Any]:
    """Read and validate a clip's ``.events.json`` sidecar (untrusted input).

    Keys: ``fps`` (int), ``size`` ([H, W] of the written frames), ``sample_rate`` (int), ``sounding`` (index of
    the object that makes the sound), ``burst_frames`` (onset frame of each burst, ascending), ``burst_times``
    (onset of each burst in seconds, inside its frame), ``boxes`` (per object, per frame ``[x0, y0, x1, y1]`` in
    pixels of the written frame; x0, y0 inclusive, x1, y1 exclusive). Optional, when present: ``event_frames``
    (per object, the onset frames of its visual events; the sounding object's equal ``burst_frames``),
    ``event_kind`` (``flash`` / ``pulse`` / ``jump``), ``shapes`` (per object).

    Args:
        path: the sidecar, or the clip (its sidecar is read).

    Raises:
        ValueError: missing, too large (> 4 MiB), not JSON, or any key of the wrong type, range or length; the
            message names the file and the problem.
    """

    p = Path(path)
    if p.suffix.lower() == ".mp4":
        p = events_path(p)
    try:
        size = p.stat().st_size
        if size > _EVENTS_MAX_BYTES:
            raise ValueError(f"{p}: events file of {size} bytes is larger than the {_EVENTS_MAX_BYTES} allowed")
        with p.open("rb") as f:
            raw = f.read(_EVENTS_MAX_BYTES + 1)
    except OSError as e:
        raise ValueError(f"{p}: cannot read events file: {e.strerror or e}") from e
    if len(raw) > _EVENTS_MAX_BYTES:
        raise ValueError(f"{p}: events file is larger than the {_EVENTS_MAX_BYTES} bytes allowed")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{p}: not a JSON events file ({type(e).__name__})") from e
    try:
        return _validate_events(data)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e


def _validate_events(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("events file must hold a JSON object")
    missing = [
        k for k in ("fps", "size", "sample_rate", "sounding", "burst_frames", "burst_times", "boxes") if k not in data
    ]
    if missing:
        raise ValueError(f"events file lacks {', '.join(missing)}")
    fps = _int(data["fps"], "fps", 1, 1000)
    sr = _int(data["sample_rate"], "sample_rate", 1, 1_000_000)
    size = data["size"]
    if not isinstance(size, list) or len(size) != 2:
        raise ValueError("size must be [H, W]")
    h, w = _int(size[0], "size[0]", 1, 1 << 15), _int(size[1], "size[1]", 1, 1 << 15)
    boxes = data["boxes"]
    if not isinstance(boxes, list) or not 1 <= len(boxes) <= 64:
        raise ValueError("boxes must be a list of 1..64 objects")
    num_frames = None
    out_boxes: list[list[list[int]]] = []
    for k, obj in enumerate(boxes):
        if not isinstance(obj, list) or not 1 <= len(obj) <= _EVENTS_MAX_FRAMES:
            raise ValueError(f"boxes[{k}] must be a list of per-frame boxes")
        if num_frames is None:
            num_frames = len(obj)
        elif len(obj) != num_frames:
            raise ValueError(f"boxes[{k}] has {len(obj)} frames, boxes[0] has {num_frames}")
        cur = []
        for t, b in enumerate(obj):
            if not isinstance(b, list) or len(b) != 4:
                raise ValueError(f"boxes[{k}][{t}] must be [x0, y0, x1, y1]")
            x0, y0 = _int(b[0], f"boxes[{k}][{t}][0]", 0, w), _int(b[1], f"boxes[{k}][{t}][1]", 0, h)
            x1, y1 = _int(b[2], f"boxes[{k}][{t}][2]", 0, w), _int(b[3], f"boxes[{k}][{t}][3]", 0, h)
            if x1 < x0 or y1 < y0:
                raise ValueError(f"boxes[{k}][{t}] = {b} has x1 < x0 or y1 < y0")
            cur.append([x0, y0, x1, y1])
        out_boxes.append(cur)
    assert num_frames is not None
    sounding = _int(data["sounding"], "sounding", 0, len(out_boxes) - 1)
    bursts = _int_list(data["burst_frames"], "burst_frames", 0, num_frames - 1, num_frames)
    if bursts != sorted(set(bursts)):
        raise ValueError("burst_frames must be strictly ascending")
    times = data["burst_times"]
    if not isinstance(times, list) or len(times) != len(bursts):
        raise ValueError(f"burst_times must be a list of {len(bursts)} numbers (one per burst frame)")
    out_times = []
    for i, (v, f) in enumerate(zip(times, bursts, strict=True)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"burst_times[{i}] must be a finite number, got {v!r}"[:200])
        if not f / fps - 1e-6 <= v < (f + 1) / fps + 1e-6:
            raise ValueError(f"burst_times[{i}] = {v} s is not inside its frame {f} ({f / fps:.4f} s)")
        out_times.append(float(v))
    out: dict[str, Any] = {
        "fps": fps,
        "size": [h, w],
        "sample_rate": sr,
        "sounding": sounding,
        "burst_frames": bursts,
        "burst_times": out_times,
        "boxes": out_boxes,
    }
    if "event_frames" in data:
        ev = data["event_frames"]
        if not isinstance(ev, list) or len(ev) != len(out_boxes):
            raise ValueError("event_frames must hold one list per object")
        out["event_frames"] = [
            _int_list(e, f"event_frames[{k}]", 0, num_frames - 1, num_frames) for k, e in enumerate(ev)
        ]
    if "event_kind" in data:
        if data["event_kind"] not in EVENT_KINDS:
            raise ValueError(f"event_kind must be one of {EVENT_KINDS}")
        out["event_kind"] = data["event_kind"]
    if "shapes" in data:
        sh = data["shapes"]
        if not isinstance(sh, list) or len(sh) != len(out_boxes) or any(x not in SHAPES for x in sh):
            raise ValueError(f"shapes must name one of {SHAPES} per object")
        out["shapes"] = list(sh)
    return out
