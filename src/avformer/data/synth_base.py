"""The synthetic dataset's configuration and the primitives its two renderers share.

:class:`SynthConfig` (what to generate), the classes (``SHAPES`` × ``SOUNDS``), which clip has which class and split,
and the colour and noise helpers used by the plain clips (:mod:`avformer.data.synth`) and the event clips
(:mod:`avformer.data.synth_events`). Kept apart so that both import it and neither imports the other's renderer
back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CLASS_NAMES", "MAX_OBJECTS", "SHAPES", "SOUNDS", "SynthConfig", "label_of", "split_of"]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SOUNDS: tuple[str, ...] = ("hum", "chirp", "rattle")
CLASS_NAMES: tuple[str, ...] = tuple(f"{shape}_{sound}" for shape in SHAPES for sound in SOUNDS)

# Equal-area sizes: a circle of radius r, a square of half-side r*sqrt(pi)/2, an equilateral triangle of
# circumradius r*sqrt(4*pi / (3*sqrt(3))) all cover pi*r^2 pixels.
_SQUARE_HALF_SIDE = float(np.sqrt(np.pi) / 2)
MAX_OBJECTS = 6
_TRIANGLE_CIRCUMRADIUS = float(np.sqrt(4 * np.pi / (3 * np.sqrt(3))))


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults: 300 two-second 64x64 clips at 16 fps with 16 kHz audio, 9 classes."""

    num_clips: int = 300
    seed: int = 0
    seconds: float = 2.0
    size: int = 64  # frame height = width, in pixels (even: yuv420p)
    fps: int = 16
    sample_rate: int = 16000
    difficulty: float = 0.5  # 0 = clean (large shapes, no noise), 1 = hard (small shapes, loud noise)
    # Each shape draws its colour from its own third of the hue circle (circle red, square green, triangle
    # blue, +-30 degrees): the picture's class is then in its colour as well as in its outline, which a tiny
    # video model picks up within CPU minutes (the outline alone takes far longer; ``avformer demo`` turns this
    # on). Off by default: colour then says nothing about the class.
    shape_colours: bool = False
    crf: int = 18  # x264 quality; 18 is visually lossless
    val_fraction: float = 0.2
    # Audio-visual events (for synchronisation and localisation, issue 20): the sound is a train of short bursts
    # at random times, each starting on the frame of a visual event (flash, size pulse or jump) of the sounding
    # object; a ``.events.json`` sidecar per clip records the burst frames and every object's box per frame.
    events: bool = False
    objects: tuple[int, int] = (1, 1)  # (min, max) objects per clip; only one of them sounds (needs events)

    def __post_init__(self) -> None:
        if self.num_clips <= 0:
            raise ValueError(f"num_clips must be positive, got {self.num_clips}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be even and >= 16 (yuv420p), got {self.size}")
        if self.fps <= 0 or self.sample_rate <= 0:
            raise ValueError(f"fps and sample_rate must be positive, got {self.fps}, {self.sample_rate}")
        if self.num_frames < 2:
            raise ValueError(f"seconds * fps must give at least 2 frames, got {self.seconds} * {self.fps}")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        objects = tuple(self.objects)  # YAML and JSON give lists
        object.__setattr__(self, "objects", objects)
        if len(objects) != 2 or not all(isinstance(k, int) for k in objects):
            raise ValueError(f"objects must be (min, max) integers, got {self.objects}")
        if not 1 <= objects[0] <= objects[1] <= MAX_OBJECTS:
            raise ValueError(f"objects must satisfy 1 <= min <= max <= {MAX_OBJECTS}, got {objects}")
        if objects != (1, 1) and not self.events:
            raise ValueError("several objects per clip need events=True (only one object sounds)")
        if self.events and self.num_frames < 8:
            raise ValueError(f"events need at least 8 frames per clip, got {self.num_frames}")

    @property
    def num_frames(self) -> int:
        """Video frames per clip."""
        return round(self.seconds * self.fps)

    @property
    def num_samples(self) -> int:
        """Audio samples per clip."""
        return round(self.seconds * self.sample_rate)

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES)


def label_of(index: int) -> int:
    """Class of clip ``index``: classes cycle, so any ``num_clips`` is balanced to within one clip."""
    return index % len(CLASS_NAMES)


def split_of(index: int, val_fraction: float = 0.2) -> str:
    """``"train"`` or ``"val"`` for clip ``index``, stratified: within each class, clips go to val at a steady rate."""
    k = index // len(CLASS_NAMES)  # k-th clip of its class
    # val when the rounded running count round(k * val_fraction) steps up: with 0.2 that is k = 2, 7, 12, ...
    # (rounding rather than flooring puts a val clip in every class from 27 clips on)
    return "val" if math.floor((k + 1) * val_fraction + 0.5) > math.floor(k * val_fraction + 0.5) else "train"


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def _hue_colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A saturated RGB colour in [0, 1] of hue ``hue`` (turns, 0 = red) +- 1/12 turn."""
    h = (hue + rng.uniform(-1 / 12, 1 / 12)) % 1.0
    sat, val = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    k = (np.array([5.0, 3.0, 1.0]) + h * 6) % 6  # HSV -> RGB without a branch per sextant
    return val - val * sat * np.clip(np.minimum(k, 4 - k), 0.0, 1.0)


def _colours(rng: np.random.Generator, shape: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Background and foreground RGB in [0, 1] with at least 0.3 luma contrast; with ``shape``, the foreground
    hue comes from that shape's third of the hue circle (``SynthConfig.shape_colours``)."""
    if shape is not None:
        fg = _hue_colour(rng, shape / len(SHAPES))
        for _ in range(64):
            bg = rng.uniform(0.0, 1.0, 3)
            if abs(_luma(fg) - _luma(bg)) >= 0.3:
                return bg, fg
        return np.full(3, 1.0 if _luma(fg) < 0.5 else 0.0), fg
    bg = rng.uniform(0.0, 1.0, 3)
    for _ in range(32):
        fg = rng.uniform(0.0, 1.0, 3)
        if abs(_luma(fg) - _luma(bg)) >= 0.3:
            return bg, fg
    return bg, 1.0 - bg  # unreachable in practice; keeps the function total


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """White noise restricted to ``[lo, hi]`` Hz by an FFT mask with soft edges; unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    width = 0.1 * (hi - lo) + 1.0
    mask = np.clip((f - lo) / width + 0.5, 0, 1) * np.clip((hi - f) / width + 0.5, 0, 1)
    x = np.fft.irfft(spec * mask, n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def _coloured_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^beta (0 white, 1 pink, 2 brown); unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (beta / 2), n)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)
