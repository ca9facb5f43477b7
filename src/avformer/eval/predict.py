"""Predict the classes of whole media files with a trained run (``avformer predict``).

:class:`FilePredictor` reads a file the way evaluation reads a manifest row (the run's ``DataConfig`` in eval mode):
``num_clips`` windows of ``cfg.data.window_seconds`` spread uniformly over the whole file
(:func:`~avformer.data.video.uniform_clip_windows`; a file without a duration in its header is read from its
start), each decoded on its own (a seek, then only that window: an 8K or 6-minute file costs ``num_clips``
windows, not the whole file), transformed like :class:`~avformer.data.AVDataset` does (short-side resize + centre
crop; audio zero-padded at the end of a short file), and the per-window probabilities averaged
(:func:`~avformer.metrics.aggregate.aggregate_views`).

What differs from the dataset: each window keeps its own ``has_audio`` / ``has_video`` (the dataset ORs them over
the views of a sample), and a window that fails to decode is dropped with a note as long as another one works.

Missing streams: an audio-visual model predicts from what is there (the absent modality masked through
``has_audio`` / ``has_video``) and the result carries a note (``no audio track — predicting from video only``);
a single-modality model whose modality is absent gives an error for that file. Every failure is one line
(:attr:`FilePrediction.error`), never an exception: a missing, corrupt or unsupported file, a file with no usable
stream, a decode time-out.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avformer.data.audio import AudioFeatures
from avformer.data.dataset import collate
from avformer.data.media import Clip, MediaError, decode_clip, media_duration
from avformer.data.video import VideoTransform, uniform_clip_windows
from avformer.metrics.aggregate import aggregate_views
from avformer.models.export_formats import Backend, stand_in
from avformer.models.loading import LoadedRun
from avformer.tasks.inference import input_modality, predict_batch

__all__ = ["FilePrediction", "FilePredictor", "PredictionDisplay"]

_MAX_NOTE = 200  # characters of a decoder warning quoted in a note


@dataclass
class PredictionDisplay:
    """What the prediction PNG shows: one decoded window of the file.

    Attributes:
        frames: (T, H, W, 3) uint8 frames of the window at the run's short side; None without video.
        spectrogram: (F, T) the model's log-mel input for that window (normalised), or a log-mel of the raw
            waveform for waveform models; None without audio.
        window: (start, end) of the window in seconds.
    """

    frames: np.ndarray | None
    spectrogram: np.ndarray | None
    window: tuple[float, float | None]


@dataclass
class FilePrediction:
    """The result for one file.

    Attributes:
        path: the file as given.
        error: one line saying why there is no prediction (None when there is one).
        top: the top-k ``(class name, probability)``, best first (empty on error).
        probs: (K,) pooled probabilities (softmax, or sigmoid for multi-label runs); None on error.
        notes: one-line remarks about the input (a missing stream, windows that failed to decode, warnings).
        duration: header duration in seconds (None when unknown).
        windows: the windows used for the prediction (seconds).
        has_audio: some window used had audio.
        has_video: some window used had video.
        seconds: wall time spent on the file.
        display: the window shown in the PNG (only when the predictor keeps it).
        views: top-k of the audio-only and video-only views of an audio-visual model (the same model with the
            other stream masked out), for the streams the file has; only when the predictor computes them
            (``per_modality=True``). The fused view is ``top``.
    """

    path: str
    error: str | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    probs: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    duration: float | None = None
    windows: list[tuple[float, float | None]] = field(default_factory=list)
    has_audio: bool = False
    has_video: bool = False
    seconds: float = 0.0
    display: PredictionDisplay | None = None
    views: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def __str__(self) -> str:
        """One line: ``path: dog 0.912, rain 0.050 | audio-only: dog 0.701, ... | video-only: ...`` (or
        ``path: error: <reason>``)."""
        if not self.ok:
            return f"{self.path}: error: {self.error}"

        def top(items: list[tuple[str, float]]) -> str:
            return ", ".join(f"{name} {p:.3f}" for name, p in items)

        parts = [top(self.top)] + [
            f"{name}-only: {top(self.views[name])}" for name in ("audio", "video") if name in self.views
        ]
        return f"{self.path}: " + " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors, no display arrays)."""
        return {
            "path": self.path,
            "ok": self.ok,
            "error": self.error,
            "top": [{"label": name, "prob": round(p, 6)} for name, p in self.top],
            "notes": list(self.notes),
            "duration": self.duration,
            "windows": [[s, e] for s, e in self.windows],
            "has_audio": self.has_audio,
            "has_video": self.has_video,
            "seconds": round(self.seconds, 3),
            **(
                {"views": {k: [{"label": n, "prob": round(p, 6)} for n, p in v] for k, v in self.views.items()}}
                if self.views
                else {}
            ),
        }


@dataclass
class _View:
    sample: dict[str, Any]
    clip: Clip
    window: tuple[float, float | None]


class FilePredictor:
    """Top-k predictions for media files from a loaded run.

    Args:
        run: from :func:`avformer.models.loading.load_run`.
        num_clips: windows per file (uniformly spaced over the whole file; 1 = the centre window).
        topk: labels returned per file.
        multilabel: sigmoid scores (multi-label runs, e.g. AudioSet) instead of softmax.
        device: where the model runs (it is moved there).
        keep_display: keep one window's frames and spectrogram for :func:`avformer.eval.report.plot_prediction`.
        timeout_s: wall-clock budget for decoding one file (all its windows); None = the run's
            ``data.decode_timeout_s`` per window.
        per_modality: an audio-visual model also scores the file with one stream masked out
            (:attr:`FilePrediction.views`; three forward passes per window instead of one).
        backend: runs the model in place of ``run.model``'s own forward (an exported graph, or the eager model
            in bf16: :func:`avformer.models.export_formats.load_backend`); decoding, transforms and pooling
            are the same. None = the eager model, fp32.
    """

    def __init__(
        self,
        run: LoadedRun,
        *,
        num_clips: int = 3,
        topk: int = 5,
        multilabel: bool = False,
        device: str | torch.device = "cpu",
        keep_display: bool = False,
        timeout_s: float | None = None,
        per_modality: bool = False,
        backend: Backend | None = None,
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.run = run
        self.cfg = run.cfg.data
        self.num_clips = num_clips
        self.topk = topk
        self.multilabel = multilabel
        self.device = torch.device(device)
        self.keep_display = keep_display
        self.timeout_s = timeout_s
        self.per_modality = per_modality
        self.model = run.model.to(self.device).eval()
        self.backend = backend
        self._net = self.model if backend is None else stand_in(self.model, backend)  # what the batch runs through
        self.kind = input_modality(self.model)  # "av", "audio" or "video"
        self.want_video = self.kind in ("av", "video")
        self.want_audio = self.kind in ("av", "audio")
        self.video_transform = VideoTransform(self.cfg.video, train=False) if self.want_video else None
        self.audio_features = AudioFeatures(self.cfg.audio).eval() if self.want_audio else None

    # ---- decoding ---------------------------------------------------------------------------------------------

    def windows(self, duration: float | None) -> list[tuple[float, float | None]]:
        """The distinct windows read from a file of this header duration (seconds)."""
        length = self.cfg.window_seconds
        if duration is None or not math.isfinite(duration) or duration <= 0:
            return [(0.0, length)]  # unknown length: read from the start (the decoder stops at the end of data)
        return list(dict.fromkeys(uniform_clip_windows(duration, length, self.num_clips)))  # short file: one

    def _decode(self, path: str, start: float, end: float | None, timeout_s: float | None) -> Clip:
        vcfg = self.cfg.video
        return decode_clip(
            path,
            start,
            end,
            fps=vcfg.fps,
            size=vcfg.short_side if self.want_video else None,
            sample_rate=self.cfg.audio.sample_rate,
            video=self.want_video,
            audio=self.want_audio,
            timeout_s=timeout_s,
        )

    def _sample(self, clip: Clip) -> dict[str, Any]:
        """One window as model inputs, as the dataset builds them (zeros + a False mask for an absent stream)."""
        cfg = self.cfg
        out: dict[str, Any] = {}
        has_video = clip.video is not None and len(clip.video) > 0
        has_audio = clip.audio is not None and len(clip.audio) > 0
        if self.video_transform is not None:
            if has_video:
                assert clip.video is not None
                out["video"] = self.video_transform(clip.video)
            else:
                out["video"] = torch.zeros(3, cfg.video.num_frames, cfg.video.size, cfg.video.size)
            out["has_video"] = torch.tensor(has_video)
        if self.audio_features is not None:
            n = round(cfg.window_seconds * cfg.audio.sample_rate)
            wav = np.zeros(n, dtype=np.float32)
            if has_audio:
                assert clip.audio is not None
                a = clip.audio[:n]
                wav[: len(a)] = a  # a short file: zero-padded at the end, as the dataset does
            feats = self.audio_features(torch.from_numpy(wav))
            out["audio"] = feats if has_audio else torch.zeros_like(feats)
            out["has_audio"] = torch.tensor(has_audio)
        return out

    # ---- prediction -------------------------------------------------------------------------------------------

    def predict(self, path: str | os.PathLike[str]) -> FilePrediction:
        """Predict one file; never raises for a bad file (see :attr:`FilePrediction.error`)."""
        t0 = time.perf_counter()
        result = FilePrediction(os.fspath(path))
        try:
            self._predict(result)
        except MediaError as e:
            result.error = e.reason or str(e)
        except (OSError, ValueError, RuntimeError) as e:  # anything else a broken file can raise
            result.error = " ".join(f"{type(e).__name__}: {e}".split())
        if result.error is not None:
            result.error = " ".join(result.error.split()) or "unknown error"  # always one line
            result.top, result.probs = [], None
        result.seconds = time.perf_counter() - t0
        return result

    def _predict(self, result: FilePrediction) -> None:
        path = result.path
        if not os.path.exists(path):
            raise MediaError(path, "file not found")
        if os.path.isdir(path):
            raise MediaError(path, "is a directory")
        deadline = time.monotonic() + self.timeout_s if self.timeout_s is not None else None
        # opens the file (within the file's budget): MediaError for what FFmpeg cannot read
        result.duration = media_duration(path, timeout_s=self.timeout_s)
        windows = self.windows(result.duration)
        views: list[_View] = []
        failures: list[str] = []
        warnings: list[str] = []
        for start, end in windows:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    failures.append(f"time budget of {self.timeout_s:g} s spent")
                    break
                timeout = left
            else:
                timeout = self.cfg.decode_timeout_s
            try:
                clip = self._decode(path, start, end, timeout)
            except MediaError as e:
                failures.append(e.reason)
                continue
            warnings += [w for w in clip.warnings if w not in warnings]
            views.append(_View(self._sample(clip), clip, (start, end)))

        n_audio = sum(bool(v.sample.get("has_audio", False)) for v in views)
        n_video = sum(bool(v.sample.get("has_video", False)) for v in views)
        if not views:
            reasons = list(dict.fromkeys(failures))
            raise MediaError(path, _clip("; ".join(reasons), 3 * _MAX_NOTE) if reasons else "nothing decodes")
        if self.kind != "av":  # a single-modality model needs its modality in the window
            needed = self.kind
            usable = [v for v in views if bool(v.sample[f"has_{needed}"])]
            if not usable:
                raise MediaError(path, f"{_missing(warnings, needed)}; this model reads {needed} only")
            if len(usable) < len(views):
                result.notes.append(f"{needed} covers {len(usable)} of {len(views)} clips; predicting from those")
            views = usable
        else:
            for name, other, count in (("audio", "video", n_audio), ("video", "audio", n_video)):
                if count == 0:
                    result.notes.append(f"{_missing(warnings, name)} — predicting from {other} only")
                elif count < len(views):
                    result.notes.append(f"{name} covers {count} of {len(views)} clips")
            if n_audio == 0 and n_video == 0:  # decode_clip raises first; kept as a guard
                raise MediaError(path, "neither audio nor video decodes")
        if failures:
            reason = _clip(failures[0])
            result.notes.append(f"{len(failures)} of {len(windows)} clips could not be decoded ({reason})")
        quoted = " ".join(result.notes)
        for w in warnings:
            if not _is_stream_failure(w) and _clip(w) not in quoted:
                result.notes.append(f"warning: {_clip(w)}")

        result.windows = [v.window for v in views]
        result.has_audio = any(bool(v.sample.get("has_audio", False)) for v in views)
        result.has_video = any(bool(v.sample.get("has_video", False)) for v in views)
        scores = self._probs([v.sample for v in views])
        result.probs = scores["fused"]
        result.top = self._top(scores["fused"])
        for name, present in (("audio", result.has_audio), ("video", result.has_video)):
            if name in scores and present:
                result.views[name] = self._top(scores[name])
        if self.keep_display:
            result.display = self._display(views)

    def _top(self, probs: torch.Tensor) -> list[tuple[str, float]]:
        values, idx = probs.topk(min(self.topk, probs.numel()))
        return [(self.run.classes[i], float(p)) for p, i in zip(values.tolist(), idx.tolist(), strict=True)]

    @torch.no_grad()
    def _probs(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """``{"fused": (K,)}`` probabilities pooled over the windows (each window one batch row, with its own
        masks), plus ``"audio"`` / ``"video"`` (one stream masked out) for an AV model when ``per_modality``."""
        batch = collate(samples)
        batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        per_modality = self.per_modality and self.kind == "av"
        out = predict_batch(self._net, batch, multilabel=self.multilabel, per_modality=per_modality)  # (V, K) each
        activation = "sigmoid" if self.multilabel else "softmax"
        names = ("fused", "audio", "video") if per_modality else ("fused",)
        return {n: aggregate_views(out[n][None].float().cpu(), activation=activation)[0] for n in names}

    def _display(self, views: Sequence[_View]) -> PredictionDisplay:
        """The middle window (preferring one with both streams) for the PNG."""
        full = [v for v in views if v.clip.video is not None and v.clip.audio is not None] or list(views)
        view = full[len(full) // 2]
        frames = view.clip.video
        spec = None
        if view.clip.audio is not None and len(view.clip.audio) > 0:
            audio = view.sample.get("audio")
            if audio is not None and audio.ndim == 3:  # (1, F, T): the model's input
                spec = audio[0].cpu().numpy()
            else:  # waveform model: a log-mel of the raw window for the picture
                from avformer.data.audio import log_mel_spectrogram

                wav = torch.from_numpy(view.clip.audio)
                spec = log_mel_spectrogram(wav, sample_rate=self.cfg.audio.sample_rate, num_mel_bins=64).T.numpy()
        return PredictionDisplay(frames, spec, view.window)


def _is_stream_failure(warning: str) -> bool:
    return " error after 0 frames" in warning


def _missing(warnings: Sequence[str], stream: str) -> str:
    """``no audio track``, or ``audio track does not decode (audio: decode error ...)`` when it exists but fails."""
    for w in warnings:
        if w.startswith(f"{stream}:"):
            return f"{stream} track does not decode ({_clip(w)})"
    return f"no {stream} track"


def _clip(text: str, limit: int = _MAX_NOTE) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
