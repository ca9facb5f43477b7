"""The synthetic demo data needs both modalities: simple classifiers on hand-made features (slow; needs
scikit-learn, a dev dependency).

Renders clips with ``avformer.data.synth.render_clip`` and fits 5-fold cross-validated logistic regressions on:
video only (the time-averaged frame, 16x16 RGB; shape descriptors: the radial profile of the foreground blob), audio
only (mean and std over time of a 64-bin log-mel), both, and the two factors (shape from video, sound from audio).
Single-modality accuracy on the 9 classes cannot exceed 1/3 by construction (shape and sound are independent), while
each factor is easy and both together give the class. 180 clips printed (2026-12-05): video 14.4 / 33.9 %, audio
31.1 %, joint 99.4 %, shape from video 100 %, sound from audio 100 %.
"""

from __future__ import annotations

import numpy as np
import pytest

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


def _accuracy(x: list[np.ndarray] | np.ndarray, target: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    return float(cross_val_score(clf, np.asarray(x), target, cv=folds).mean())


@pytest.mark.slow
def test_one_modality_alone_cannot_tell_the_classes_both_can() -> None:
    pytest.importorskip("sklearn")
    cfg = SynthConfig(num_clips=180, seed=0, size=64, difficulty=0.5)
    vgen, vshape, aud, labels = [], [], [], []
    for i in range(cfg.num_clips):
        frames, audio, label = render_clip(cfg, i)
        vgen.append(video_generic_features(frames))
        vshape.append(video_shape_features(frames))
        aud.append(audio_features(audio, cfg.sample_rate))
        labels.append(label)
    y = np.array(labels)
    assert len(set(labels)) == len(CLASS_NAMES)
    ceiling = 1 / 3 + 0.1  # the single-modality bound, with cross-validation noise
    assert _accuracy(vgen, y) < ceiling
    assert _accuracy(vshape, y) < ceiling
    assert _accuracy(aud, y) < ceiling
    assert _accuracy(np.concatenate([np.asarray(vshape), np.asarray(aud)], 1), y) > 0.9
    assert _accuracy(vshape, y // len(SOUNDS)) > 0.9  # the shape is in the video
    assert _accuracy(aud, y % len(SOUNDS)) > 0.9  # the sound is in the audio
