"""Estimate the audio-video offset of media files with a trained ``av_sync`` run (``avformer sync``), and plot it.

:class:`SyncEstimator` reads ``num_clips`` windows of the run's window length spread uniformly over the file, each
with its audio and video *as they are in the file* (the same time span of both streams), transforms them as the
run's evaluation does, and averages the model's softmax over the offset classes (and the envelope baseline's
correlations, :mod:`avformer.metrics.sync`, for comparison).

Sign: the model was trained on pairs whose audio window starts ``o`` seconds after the video window (class ``o``),
i.e. the sound of an event comes ``o`` seconds *early* in the pair. A file whose sound lags its picture by ``d``
seconds therefore looks like class ``-d``. :attr:`SyncEstimate.delay` reports ``d`` (positive: the sound comes
after the picture; read the audio ``d`` seconds later, ``data.views.audio_offset: d``, to bring it in sync).

Every failure of a file is one line (:attr:`SyncEstimate.error`): a missing or corrupt file, a stream missing
(synchronisation needs both), a file shorter than the window, a decode time-out.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from avformer.data.dataset import WindowTransform, collate
from avformer.data.media import MediaError, decode_clip, media_duration
from avformer.data.sampling import uniform_clip_windows
from avformer.metrics.sync import envelope_baseline_scores, offset_shifts
from avformer.models.loading import LoadedRun
from avformer.models.task_heads import TASK_HEADS
from avformer.tasks.registry import TaskData, get_task
from avformer.tasks.sync import SyncTask
from avformer.utils.checkpoint import CheckpointError, load_checkpoint

__all__ = ["SyncEstimate", "SyncEstimator", "plot_sync_scores", "sync_task"]


@dataclass
class SyncEstimate:
    """The result for one file.

    Attributes:
        path: the file as given.
        offsets: the run's offset classes (seconds, training convention: audio window later by ``o``).
        error: one line saying why there is no estimate (None when there is one).
        probs: (K,) the model's softmax over the offset classes, averaged over the windows.
        baseline: (K,) the envelope baseline's correlation per class, averaged over the windows (None when the
            run's audio is not a spectrogram).
        windows: the windows read (seconds).
        seconds: wall time spent on the file.
    """

    path: str
    offsets: tuple[float, ...]
    error: str | None = None
    probs: torch.Tensor | None = None
    baseline: torch.Tensor | None = None
    windows: list[tuple[float, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def delays(self) -> list[float]:
        """Per class, the delay of the sound behind the picture it stands for (``-offset``)."""
        return [-o + 0.0 for o in self.offsets]

    @property
    def delay(self) -> float:
        """Estimated delay (s) of the sound behind the picture (negative: the sound comes first)."""
        assert self.probs is not None
        return self.delays[int(self.probs.argmax())]

    @property
    def confidence(self) -> float:
        """The softmax probability of the estimated class."""
        assert self.probs is not None
        return float(self.probs.max())

    @property
    def baseline_delay(self) -> float | None:
        """The baseline's estimate (s), None without one."""
        return None if self.baseline is None else self.delays[int(self.baseline.argmax())]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out: dict[str, Any] = {"path": self.path, "ok": self.ok, "error": self.error}
        if self.ok:
            out |= {
                "delay": self.delay,
                "confidence": round(self.confidence, 6),
                "baseline_delay": self.baseline_delay,
                "delays": self.delays,
                "probs": [round(float(p), 6) for p in self.probs] if self.probs is not None else None,
                "windows": [list(w) for w in self.windows],
                "seconds": round(self.seconds, 3),
            }
        return out


def sync_task(run: LoadedRun, *, use_ema: bool = True) -> SyncTask:
    """The ``av_sync`` task of a loaded run, around its model, with the task's own head (the correlation head that
    :func:`~avformer.models.loading.load_run` leaves out with every task head) loaded from the run's checkpoint.

    Raises:
        ValueError: not an ``av_sync`` run, or options that do not fit its model.
        avformer.utils.checkpoint.CheckpointError: the checkpoint cannot be read or lacks the head.
    """
    if run.cfg.task is None or run.cfg.task.name != "av_sync":
        raise ValueError("not a synchronisation run (its task is not av_sync)")
    entry = get_task("av_sync")
    task = entry.build(run.model, entry.parse_options(run.cfg.task.options), TaskData.of(run.cfg.data))
    assert isinstance(task, SyncTask)
    if task.head is not None:
        ckpt = load_checkpoint(run.checkpoint)
        ema = ckpt.get("ema")
        state = ema["shadow"] if use_ema and isinstance(ema, dict) and "shadow" in ema else ckpt.get("model", {})
        prefix = f"{TASK_HEADS}."
        heads = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        if not heads:
            raise CheckpointError(f"{run.checkpoint}: no weights of the av_sync correlation head in this checkpoint")
        try:
            task.model.get_submodule(TASK_HEADS).load_state_dict(heads)
        except RuntimeError as e:
            raise CheckpointError(f"{run.checkpoint}: the correlation head does not fit: {e}") from e
    task.model.eval()
    return task


class SyncEstimator:
    """Offset estimates for media files from a loaded ``av_sync`` run.

    Args:
        run: from :func:`avformer.models.loading.load_run` (``require_classes=False``).
        num_clips: windows per file, spread uniformly over it (1 = the centre window).
        device: where the model runs.
        timeout_s: decode-time budget per window (None: the run's ``data.decode_timeout_s``).

    Raises:
        ValueError: not an ``av_sync`` run with an offset grid (``data.views.audio_offset_grid``), or options that do
            not fit its model.
        avformer.utils.checkpoint.CheckpointError: the task's head cannot be loaded from the run's checkpoint.
    """

    def __init__(
        self, run: LoadedRun, *, num_clips: int = 1, device: str | torch.device = "cpu", timeout_s: float | None = None
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        data = run.cfg.data
        self.offsets = tuple(data.views.audio_offset_grid)
        if run.cfg.task is None or run.cfg.task.name != "av_sync" or not self.offsets:
            raise ValueError("not a synchronisation run (task av_sync with data.views.audio_offset_grid)")
        self.task = sync_task(run)
        if tuple(self.task.options.offsets) != self.offsets:
            raise ValueError("the run's task.options.offsets differ from its data.views.audio_offset_grid")
        self.cfg = replace(data, num_test_clips=1, num_test_crops=1)
        self.num_clips = num_clips
        self.device = torch.device(device)
        self.timeout_s = timeout_s if timeout_s is not None else data.decode_timeout_s
        self.model = self.task.model.to(self.device).eval()
        self.transform = WindowTransform(self.cfg, train=False)

    def estimate(self, path: str | os.PathLike[str]) -> SyncEstimate:
        """Estimate one file; never raises for a bad file (see :attr:`SyncEstimate.error`)."""
        t0 = time.perf_counter()
        result = SyncEstimate(os.fspath(path), self.offsets)
        try:
            self._estimate(result)
        except MediaError as e:
            result.error = e.reason or str(e)
        except (OSError, ValueError, RuntimeError) as e:
            result.error = f"{type(e).__name__}: {e}"
        if result.error is not None:
            result.error = " ".join(result.error.split()) or "unknown error"
            result.probs = result.baseline = None
        result.seconds = time.perf_counter() - t0
        return result

    def _estimate(self, result: SyncEstimate) -> None:
        path, cfg = result.path, self.cfg
        length = cfg.window_seconds
        duration = media_duration(path, timeout_s=self.timeout_s)
        if duration is None or not math.isfinite(duration):
            raise MediaError(path, "unknown duration: cannot place the windows")
        if duration < length - 1e-6:
            raise MediaError(path, f"the file ({duration:.2f} s) is shorter than the run's {length:g} s window")
        windows = list(dict.fromkeys(uniform_clip_windows(duration, length, self.num_clips)))
        samples = []
        need = round(length * cfg.audio.sample_rate * 0.99)
        for start, end in windows:
            clip = decode_clip(
                path, start, end, fps=cfg.video.fps, size=cfg.video.short_side,
                sample_rate=cfg.audio.sample_rate, timeout_s=self.timeout_s,
            )  # fmt: skip
            if not clip.has_video or clip.video is None or len(clip.video) == 0:
                raise MediaError(path, "no usable video stream: synchronisation needs both streams")
            if not clip.has_audio or clip.audio is None or len(clip.audio) == 0:
                raise MediaError(path, "no audio track: synchronisation needs both streams")
            if len(clip.audio) < need:
                got = len(clip.audio) / cfg.audio.sample_rate
                raise MediaError(path, f"only {got:.2f} s of audio in the {start:.2f}-{end:.2f} s window")
            samples += self.transform(path, clip.video, clip.audio, None)
        batch = collate(samples)
        audio, video = batch["audio"].to(self.device), batch["video"].to(self.device)
        with torch.no_grad():
            has_a, has_v = batch["has_audio"].to(self.device), batch["has_video"].to(self.device)
            logits = self.task.scores({"audio": audio, "video": video, "has_audio": has_a, "has_video": has_v})
        result.probs = logits.float().softmax(dim=1).mean(dim=0).cpu()
        if audio.ndim == 4:
            shifts = offset_shifts(self.offsets, video.shape[2] / length)
            result.baseline = envelope_baseline_scores(audio, video, shifts).mean(dim=0).cpu()
        result.windows = [(float(s), float(e)) for s, e in windows]


def plot_sync_scores(out_png: str | Path, estimate: SyncEstimate, *, title: str | None = None) -> Path:
    """One PNG: the model's probability per candidate delay (bars), the baseline's correlation (line, right axis)
    and the estimate (dashed line). Fixed size (6.4 x 3.6 in at 100 dpi), built without pyplot."""
    if estimate.probs is None:
        raise ValueError(f"{estimate.path}: no estimate to plot")
    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    delays = np.asarray(estimate.delays)
    order = np.argsort(delays)
    x, p = delays[order], estimate.probs.numpy()[order]
    width = 0.8 * float(np.min(np.diff(x))) if len(x) > 1 else 0.1
    handles = [ax.bar(x, p, width=width, color="tab:blue", alpha=0.8, label="model (softmax)")]
    handles.append(
        ax.axvline(estimate.delay, color="tab:red", ls="--", lw=1.2, label=f"estimate {estimate.delay:+.3f} s")
    )
    ax.set_xlabel("delay of the sound behind the picture (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0.0, 1.0)
    if estimate.baseline is not None:
        right = ax.twinx()
        b = estimate.baseline.numpy()[order]
        finite = np.isfinite(b)
        (line,) = right.plot(x[finite], b[finite], "o-", color="tab:orange", ms=3, label="envelope baseline")
        right.set_ylabel("baseline correlation")
        handles.append(line)
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    name = Path(estimate.path).name
    ax.set_title(
        title or f"{name}: sound {estimate.delay:+.3f} s behind the picture (p = {estimate.confidence:.2f})", fontsize=9
    )
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=fig.dpi)
    return out
