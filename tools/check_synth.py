"""Check that the synthetic dataset needs both modalities: fit simple classifiers on hand-made features.

Renders clips with ``avformer.data.synth.render_clip`` (or decodes an ``avformer synth`` folder with ``--dir``),
builds per-clip features and reports 5-fold cross-validated accuracy of a logistic regression on:

- video only, generic: the time-averaged frame, downsampled to 16x16 RGB;
- video only, shape descriptors: radial profile of the foreground blob (rotation/scale invariant);
- audio only: mean and standard deviation over time of a 64-bin log-mel spectrogram;
- joint: shape descriptors + audio features;
- the factors themselves: shape from video, sound from audio (each should be near 100 %).

Single-modality accuracy on the 9 classes cannot exceed 1/3 by construction (shape and sound are independent).

    OMP_NUM_THREADS=1 .venv/bin/python tools/check_synth.py --n 300 [--difficulty 0.5] [--size 64] [--dir OUTDIR]

Needs scikit-learn (a dev dependency).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import av
import numpy as np

from avformer.data.synth import CLASS_NAMES, SOUNDS, SynthConfig, render_clip


def mel_filterbank(num_mel_bins: int, n_fft: int, sample_rate: int, fmin: float = 20.0) -> np.ndarray:
    """``(num_mel_bins, n_fft // 2 + 1)`` triangular HTK-mel filters."""

    def mel(f: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(f / 700.0)

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = np.linspace(mel(np.array(fmin)), mel(np.array(sample_rate / 2)), num_mel_bins + 2)
    m = mel(freqs)[None, :]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((m - lo) / (mid - lo), (hi - m) / (hi - mid)))


def log_mel(audio: np.ndarray, sample_rate: int, num_mel_bins: int = 64) -> np.ndarray:
    """``(S,)`` waveform -> ``(num_mel_bins, frames)`` log-mel (25 ms Hann window, 10 ms hop)."""
    win, hop, n_fft = int(0.025 * sample_rate), int(0.010 * sample_rate), 512
    n = 1 + (len(audio) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    spec = np.abs(np.fft.rfft(audio[idx] * np.hanning(win), n_fft)) ** 2  # (frames, n_fft/2+1)
    return np.log(mel_filterbank(num_mel_bins, n_fft, sample_rate) @ spec.T + 1e-10)


def audio_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    m = log_mel(audio, sample_rate)
    return np.concatenate([m.mean(1), m.std(1)])


def video_generic_features(frames: np.ndarray) -> np.ndarray:
    """Time-averaged frame, 16x16 RGB."""
    mean = frames.astype(np.float32).mean(0) / 255.0  # (H, W, 3)
    h, w = mean.shape[:2]
    return mean.reshape(16, h // 16, 16, w // 16, 3).mean((1, 3)).ravel()


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = ((hist * centres).sum() - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def video_shape_features(frames: np.ndarray) -> np.ndarray:
    """Radial profile of the foreground blob, averaged over frames: rotation-, scale- and colour-invariant."""
    feats = []
    x = frames.astype(np.float32) / 255.0
    for img in x[:: max(1, len(x) // 8)]:
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        dist = np.linalg.norm(img - np.median(border, 0), axis=-1)
        mask = dist > _otsu(dist)
        if mask.sum() < 10:
            continue
        inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        edge = mask.copy()
        edge[1:-1, 1:-1] &= ~inner
        ys, xs = np.nonzero(mask)
        by, bx = np.nonzero(edge)
        radii = np.hypot(by - ys.mean(), bx - xs.mean()) / np.sqrt(mask.sum() / np.pi)
        hist = np.histogram(radii, bins=8, range=(0.6, 1.8))[0] / len(radii)
        feats.append(np.concatenate([[radii.mean(), radii.std(), radii.min(), radii.max()], hist]))
    return np.mean(feats, 0) if feats else np.zeros(12)


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        sr = c.streams.audio[0].sample_rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    return frames, audio.astype(np.float32), sr


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=0.5)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--dir", type=Path, default=None, help="decode an `avformer synth` folder instead of rendering")
    args = p.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    vgen, vshape, aud, labels = [], [], [], []
    if args.dir is not None:
        with (args.dir / "manifest.csv").open() as f:
            items = [(args.dir / r["path"], int(r["label_index"])) for r in csv.DictReader(f)][: args.n]
        for path, label in items:
            frames, audio, sr = _decode(path)
            vgen.append(video_generic_features(frames))
            vshape.append(video_shape_features(frames))
            aud.append(audio_features(audio, sr))
            labels.append(label)
    else:
        cfg = SynthConfig(num_clips=args.n, seed=args.seed, size=args.size, difficulty=args.difficulty)
        for i in range(args.n):
            frames, audio, label = render_clip(cfg, i)
            vgen.append(video_generic_features(frames))
            vshape.append(video_shape_features(frames))
            aud.append(audio_features(audio, cfg.sample_rate))
            labels.append(label)
    y = np.array(labels)
    shape_y, sound_y = y // len(SOUNDS), y % len(SOUNDS)
    print(f"features for {len(y)} clips in {time.perf_counter() - t0:.1f} s")

    def acc(x: list[np.ndarray] | np.ndarray, target: np.ndarray) -> str:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
        scores = cross_val_score(clf, np.asarray(x), target, cv=folds)
        return f"{100 * scores.mean():5.1f} % ± {100 * scores.std():4.1f}"

    joint = np.concatenate([np.asarray(vshape), np.asarray(aud)], 1)
    print(f"{len(CLASS_NAMES)} classes, chance {100 / len(CLASS_NAMES):.1f} %, single-modality ceiling 33.3 %")
    print(f"  video only, mean frame 16x16      : {acc(vgen, y)}")
    print(f"  video only, shape descriptors     : {acc(vshape, y)}")
    print(f"  audio only, log-mel mean+std      : {acc(aud, y)}")
    print(f"  joint, shape descriptors + log-mel: {acc(joint, y)}")
    print(f"  factor: shape from video (3-way)  : {acc(vshape, shape_y)}")
    print(f"  factor: shape from mean frame     : {acc(vgen, shape_y)}")
    print(f"  factor: sound from audio (3-way)  : {acc(aud, sound_y)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
