"""Test helper: a tiny audio-only dataset of tones, in the formats users bring (wav, flac, ogg, mp3, m4a).

Class ``k`` is a tone at ``FREQS[k]`` Hz with a little noise, so a model can tell the classes apart. WAV files are
written with the stdlib ``wave`` module; the compressed formats with PyAV's encoders (FLAC, Opus in Ogg, MP3 via
LAME, AAC in MP4). Written in well under a second.
"""

from __future__ import annotations

import csv
import wave
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000
CLASSES = ("high", "low", "mid")
FREQS = {"low": 300.0, "mid": 1200.0, "high": 4000.0}
FORMATS = ("wav", "flac", "ogg", "mp3", "m4a")
# container extension -> (encoder, encoder sample rate)
_ENCODERS = {"flac": ("flac", 16000), "ogg": ("libopus", 48000), "mp3": ("libmp3lame", 16000), "m4a": ("aac", 16000)}


def tone(freq: float, seconds: float = 1.0, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(S,) float32 in [-1, 1]: a sine at ``freq`` with a random phase and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    x = 0.4 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + 0.02 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit mono PCM WAV with the stdlib ``wave`` module."""
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def write_audio(path: Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono ``x`` in the format of ``path``'s extension (one of :data:`FORMATS`)."""
    ext = path.suffix.lstrip(".")
    if ext == "wav":
        return write_wav(path, x, sample_rate)
    codec, rate = _ENCODERS[ext]
    if rate != sample_rate:  # Opus encodes at 48 kHz only
        t_in = np.arange(len(x)) / sample_rate
        x = np.interp(np.arange(round(len(x) * rate / sample_rate)) / rate, t_in, x).astype(np.float32)
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=rate)
        stream.layout = "mono"
        fmt = stream.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        for f in av.AudioResampler(format=fmt, layout="mono", rate=rate).resample(frame):
            for packet in stream.encode(f):
                c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return path


def write_tone_dataset(
    root: Path,
    *,
    train_per_class: int = 4,
    val_per_class: int = 2,
    formats: Sequence[str] = ("wav",),
    multilabel: bool = False,
    seconds: float = 1.0,
) -> tuple[Path, Path]:
    """``root/train.csv`` and ``root/val.csv`` (``path,label``) over tone files, formats used in turn.

    With ``multilabel`` every clip is the sum of two tones and the manifests have a ``labels`` column
    (``"low;mid"``), AudioSet-style.
    """
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    i = 0
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        rows = []
        for k, name in enumerate(CLASSES):
            for j in range(n):
                labels = [name, CLASSES[(k + 1 + j) % len(CLASSES)]] if multilabel else [name]
                x = sum(tone(FREQS[lab], seconds, seed=i * 7 + m) for m, lab in enumerate(labels))
                x = np.asarray(x / len(labels), dtype=np.float32)
                ext = formats[i % len(formats)]
                rel = f"{split}/{name}_{j}.{ext}"
                (root / split).mkdir(exist_ok=True)
                write_audio(root / rel, x)
                rows.append({"path": rel, ("labels" if multilabel else "label"): ";".join(labels)})
                i += 1
        path = root / f"{split}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths[0], paths[1]
