"""Manifest-driven audio-visual dataset, collation that survives bad files, and a DataLoader factory.

A sample is a dict with fixed keys:

==============  ==========================================================================================
key             value
==============  ==========================================================================================
``video``       (C, T, H, W) float32, normalised (present when ``"video"`` is in ``modalities``)
``audio``       (1, F, T) log-mel or (1, S) waveform (present when ``"audio"`` is in ``modalities``)
``has_video``   bool tensor: False when the file has no usable video stream (``video`` is then zeros)
``has_audio``   bool tensor: False when the file has no audio (``audio`` is then zeros: a placeholder that
                models and losses must mask out via ``has_audio``, never treat as real silence)
``label``       int64 class index (single-label) or (K,) float32 multi-hot (multi-label); -1 when unlabeled
``id``          str, the row id
``index``       int, position in the manifest
``text``        str, only when the row has a caption
``audio_offset`` float32 seconds the audio window is shifted against the video, per view (only with
                ``DataConfig.views`` offsets; see :class:`~avformer.data.config.ViewConfig`)
``audio_offset_class`` int64 index of ``audio_offset`` in ``DataConfig.views.audio_offset_grid`` (grid mode only)
==============  ==========================================================================================

With ``DataConfig.views.num_views > 1`` a training sample holds its views on a leading view axis: ``video``
(V, C, T, H, W), ``audio`` (V, ...), ``has_video`` / ``has_audio`` (V,).

A row that cannot be loaded (missing file, undecodable media, neither stream usable) gives a *skip marker*
instead of a sample; :func:`collate` drops markers and reports them in the batch (``batch["skipped"]``), and
:class:`LoadStats` sums them across workers, so an epoch never dies for one bad file and nothing is lost silently.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from avformer.data.audio import AudioFeatures, spec_augment
from avformer.data.config import DataConfig, SpecAugmentConfig
from avformer.data.manifest import Manifest
from avformer.data.media import Clip, MediaError, decode_clip, media_duration
from avformer.data.video import VideoTransform, random_clip_window, uniform_clip_windows
from avformer.data.views import ViewError, place_views
from avformer.data.wave_augment import WaveAugment
from avformer.utils.forking import freeze_inherited

__all__ = [
    "AVDataset",
    "DataConfig",
    "EvalSampler",
    "LoadStats",
    "SpecAugmentConfig",
    "collate",
    "loader_timeout",
    "make_loader",
    "set_epoch",
    "worker_init",
]

log = logging.getLogger(__name__)

_SKIP = "__skipped__"


class WindowTransform:
    """A decoded window (frames and waveform) -> model-ready views: the one place inputs are built.

    Used by :class:`AVDataset` (files), :class:`avformer.data.shards.ShardDataset` (pre-decoded shards) and
    ``avformer predict``, so all three feed a model identically.

    Args:
        cfg: data configuration.
        train: training augmentations (random resized crop, flip, waveform augmentations, dither, SpecAugment) or
            evaluation views.
    """

    def __init__(self, cfg: DataConfig, train: bool) -> None:
        self.cfg = cfg
        self.train = train
        self.video = VideoTransform(cfg.video, train=train) if "video" in cfg.modalities else None
        # train/eval mode: dither (cfg.audio.dither) is a train-time augmentation only
        self.audio = AudioFeatures(cfg.audio).train(train) if "audio" in cfg.modalities else None
        # waveform augmentations (speed, pitch, reverb, noise, filter, gain) of training audio, before the features
        wave_aug = train and self.audio is not None and cfg.wave_augment.enabled
        self.wave_augment = WaveAugment(cfg.wave_augment, cfg.audio.sample_rate) if wave_aug else None

    def __call__(
        self, path: str, frames: np.ndarray | None, wav: np.ndarray | None, gen: torch.Generator | None
    ) -> list[dict[str, Any]]:
        """Views of one window: one, or ``num_test_crops`` spatial crops (evaluation with video).

        Args:
            path: the source, for error messages.
            frames: (T, H, W, 3) uint8 decoded frames, or None / empty when the window has no video.
            wav: (S,) float32 mono waveform at ``cfg.audio.sample_rate``, or None / empty without audio.
            gen: the sample's random generator.

        Returns:
            Dicts with ``video``/``has_video`` and ``audio``/``has_audio`` for the configured modalities. An absent
            stream gives zeros of the right shape and a False flag.

        Raises:
            MediaError: none of the configured modalities is present in the window.
        """
        cfg = self.cfg
        has_video = frames is not None and len(frames) > 0
        has_audio = wav is not None and len(wav) > 0
        if not ((self.video is not None and has_video) or (self.audio is not None and has_audio)):
            raise MediaError(path, "none of the requested streams (" + ", ".join(cfg.modalities) + ") is present")
        out: dict[str, Any] = {}
        crops = 1 if self.train else cfg.num_test_crops
        videos: list[torch.Tensor] = []
        if self.video is not None:
            if has_video and crops > 1:
                assert frames is not None
                videos = self.video.test_views(frames, crops)
            elif has_video:
                assert frames is not None
                videos = [self.video(frames, generator=gen)]
            else:  # the same number of views with or without video, so samples stack into one batch
                size = cfg.video.size
                videos = [torch.zeros(3, cfg.video.num_frames, size, size)] * crops
            out["has_video"] = torch.tensor(has_video)
        if self.audio is not None:
            n = round(cfg.window_seconds * cfg.audio.sample_rate)
            buf = np.zeros(n, dtype=np.float32)
            if has_audio:
                assert wav is not None
                a = wav[:n]
                buf[: len(a)] = a  # shorter audio than the window: zero-padded at the end (AST pads the same way)
            wave = torch.from_numpy(buf)
            if self.wave_augment is not None and has_audio:  # the clip keeps its n samples
                wave = self.wave_augment(wave, gen)
            out["audio"] = self.audio(wave, generator=gen)
            if not has_audio:
                out["audio"] = torch.zeros_like(out["audio"])
            elif self.train and cfg.spec_augment.enabled and cfg.audio.kind != "waveform":
                out["audio"] = spec_augment(out["audio"], **asdict(cfg.spec_augment), generator=gen)
            out["has_audio"] = torch.tensor(has_audio)
        return [{**out, "video": v} for v in videos] if videos else [out]


class AVDataset(Dataset[dict[str, Any]]):
    """Rows of a :class:`Manifest` decoded and transformed into samples (see the module docstring for keys).

    Args:
        manifest: the rows and class list.
        cfg: data configuration.
        train: random temporal window and augmentations (True) or deterministic centre windows (False).
        seed: base seed; each sample's randomness comes from ``(seed, epoch, index)``, so runs are reproducible
            whatever the number of workers. Call :meth:`set_epoch` at each epoch.
    """

    def __init__(self, manifest: Manifest, cfg: DataConfig, *, train: bool = False, seed: int = 0) -> None:
        self.manifest = manifest
        self.cfg = cfg
        self.train = train
        self.seed = seed
        # in shared memory, so set_epoch reaches persistent DataLoader workers (they hold copies of the dataset)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._durations: dict[int, float | None] = {}  # per process; persistent workers keep theirs across epochs
        self.transform = WindowTransform(cfg, train)
        self.num_classes = len(manifest.classes)

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random windows and augmentations samples get (visible to running workers)."""
        self._epoch.fill_(epoch)

    def _generator(self, index: int) -> torch.Generator:
        key = zlib.crc32(f"{self.seed}:{self.epoch}:{index}".encode())
        return torch.Generator().manual_seed(key)

    def _label(self, index: int) -> torch.Tensor:
        row = self.manifest[index]
        idx = self.manifest.label_indices(row)
        if self.manifest.multilabel:
            target = torch.zeros(self.num_classes, dtype=torch.float32)
            target[idx] = 1.0
            return target
        return torch.tensor(idx[0] if idx else -1, dtype=torch.long)

    def _windows(self, index: int, duration: float | None, gen: torch.Generator) -> list[tuple[float, float | None]]:
        """Time windows (seconds) to read for one row: one random window (train) or N uniform ones (eval).

        ``duration`` is the file's header duration (only needed when the row has no ``end``).
        """
        row = self.manifest[index]
        length = self.cfg.window_seconds
        lo = row.start or 0.0
        hi = row.end if row.end is not None else duration
        if hi is None:  # unknown duration: read from the row start (every test view, so views stack alike)
            return [(lo, lo + length)] * (1 if self.train else self.cfg.num_test_clips)
        span = max(hi - lo, 0.0)
        if self.train:
            s, e = random_clip_window(span, length, gen)
            return [(lo + s, lo + e)]
        return [(lo + s, lo + e) for s, e in uniform_clip_windows(span, length, self.cfg.num_test_clips)]

    def _load_window(
        self,
        path: str,
        gen: torch.Generator,
        start: float = 0.0,
        end: float | None = None,
        window: Callable[[float | None], tuple[float, float | None]] | None = None,
    ) -> list[dict[str, Any]]:
        """The views of one window: one, or ``num_test_crops`` spatial crops (evaluation with video)."""
        want_v, want_a = self.transform.video is not None, self.transform.audio is not None
        clip = self._decode(path, start, end, video=want_v, audio=want_a, window=window)
        return self.transform(path, clip.video if clip.has_video else None, clip.audio if clip.has_audio else None, gen)

    def _decode(
        self,
        path: str,
        start: float,
        end: float | None,
        *,
        video: bool,
        audio: bool,
        window: Callable[[float | None], tuple[float, float | None]] | None = None,
    ) -> Clip:
        cfg = self.cfg
        clip: Clip = decode_clip(
            path,
            start,
            end,
            window=window,
            fps=cfg.video.fps,
            size=cfg.video.short_side if video else None,
            sample_rate=cfg.audio.sample_rate,
            video=video,
            audio=audio,
            timeout_s=cfg.decode_timeout_s,
        )
        for w in clip.warnings:
            log.warning("%s: %s", path, w)
        return clip

    def _view_sample(self, index: int, gen: torch.Generator) -> dict[str, Any]:
        """A sample of ``DataConfig.views``: its views (windows and audio offsets from :func:`place_views`)."""
        row, cfg = self.manifest[index], self.cfg
        if index not in self._durations and row.end is None:
            self._durations[index] = media_duration(row.path, timeout_s=cfg.decode_timeout_s)
        lo = row.start or 0.0
        hi = row.end if row.end is not None else self._durations[index]
        if hi is None:
            raise MediaError(row.path, "unknown duration: views and audio offsets need the clip's length")
        length = cfg.window_seconds
        try:
            windows = place_views(lo, hi, length, cfg.views, gen, train=self.train)
        except ViewError as e:
            raise MediaError(row.path, str(e)) from e
        want_v, want_a = self.transform.video is not None, self.transform.audio is not None
        views: list[dict[str, Any]] = []
        for w in windows:
            if not cfg.views.shifted:
                clip = self._decode(row.path, w.video_start, w.video_start + length, video=want_v, audio=want_a)
                frames, wav = clip.video if clip.has_video else None, clip.audio if clip.has_audio else None
            else:
                frames = None
                if want_v:
                    vclip = self._decode(row.path, w.video_start, w.video_start + length, video=True, audio=False)
                    frames = vclip.video if vclip.has_video else None
                aclip = self._decode(row.path, w.audio_start, w.audio_start + length, video=False, audio=True)
                need = round(length * cfg.audio.sample_rate * 0.99)  # 1 % of slack for the resampler's edges
                if not aclip.has_audio or len(aclip.audio) < need:
                    got = 0.0 if not aclip.has_audio else len(aclip.audio) / cfg.audio.sample_rate
                    raise MediaError(
                        row.path,
                        f"no audio for the window shifted by {w.offset:+.3f} s ({got:.3f} of {length:g} s decoded)",
                    )
                wav = aclip.audio
            for view in self.transform(row.path, frames, wav if want_a else None, gen):
                if cfg.views.shifted:
                    view["audio_offset"] = torch.tensor(w.offset, dtype=torch.float32)
                if w.offset_class is not None:
                    view["audio_offset_class"] = torch.tensor(w.offset_class, dtype=torch.int64)
                views.append(view)
        # every key per view, flags included (test views of one window pool their flags instead: _stack_views)
        return views[0] if len(views) == 1 else {k: torch.stack([v[k] for v in views]) for k in views[0]}

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.manifest[index]
        gen = self._generator(index)
        try:
            if self.cfg.views.active:
                sample = self._view_sample(index, gen)
            elif row.end is not None or index in self._durations:
                windows = self._windows(index, self._durations.get(index), gen)
                views = [v for s, e in windows for v in self._load_window(row.path, gen, s, e)]
            else:  # the windows depend on the file's length: choose them once it is open (one open, not two)
                windows = []

                def choose(duration: float | None) -> tuple[float, float | None]:
                    self._durations[index] = duration
                    windows.extend(self._windows(index, duration, gen))
                    return windows[0]

                views = self._load_window(row.path, gen, window=choose)
                views += [v for s, e in windows[1:] for v in self._load_window(row.path, gen, s, e)]
            if not self.cfg.views.active:
                sample = views[0] if len(views) == 1 else {k: _stack_views([v[k] for v in views]) for k in views[0]}
        except MediaError as e:
            return {_SKIP: True, "id": row.id, "index": index, "reason": e.reason}
        except (OSError, ValueError, RuntimeError) as e:  # anything else a broken file can raise: skip, never die
            return {_SKIP: True, "id": row.id, "index": index, "reason": f"{type(e).__name__}: {e}"}
        sample["label"] = self._label(index)
        sample["id"] = row.id
        sample["index"] = index
        if row.text is not None:
            sample["text"] = row.text
        return sample


def _stack_views(values: list[Any]) -> Any:
    """Several test views of one file: stack on a new leading 'view' axis (flags: any view has the stream)."""
    if values[0].dtype == torch.bool:
        return torch.stack(values).any()
    return torch.stack(values)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch, dropping skip markers.

    Returns:
        A dict with the sample keys stacked (``id`` and ``text`` as lists), plus ``skipped``: a list of
        ``(id, reason)`` for the rows dropped from this batch. A batch may have zero samples (``batch_size == 0``)
        when every row was bad; training loops must skip it.
    """
    good = [s for s in samples if _SKIP not in s]
    batch: dict[str, Any] = {"skipped": [(s["id"], s["reason"]) for s in samples if _SKIP in s]}
    batch["batch_size"] = len(good)
    if not good:
        return batch
    for key in good[0]:
        if key == "text":
            continue
        vals = [s[key] for s in good]
        if isinstance(vals[0], torch.Tensor):
            batch[key] = torch.stack(vals)
        elif key == "index":
            batch[key] = torch.tensor(vals)
        else:
            batch[key] = vals
    if any("text" in s for s in good):  # captions are optional per row: align them with the batch
        batch["text"] = [s.get("text") for s in good]
    return batch


@dataclass
class LoadStats:
    """Running count of loaded and skipped rows over an epoch (sums what each batch reports)."""

    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def update(self, batch: dict[str, Any]) -> None:
        self.loaded += int(batch["batch_size"])
        for row_id, reason in batch["skipped"]:
            log.warning("skipped %s: %s", row_id, reason)
            self.skipped.append((row_id, reason))

    def summary(self) -> str:
        total = self.loaded + len(self.skipped)
        text = f"{self.loaded}/{total} clips loaded, {len(self.skipped)} skipped"
        if self.skipped:
            reasons = Counter(r.split(":")[0] for _, r in self.skipped)
            text += " (" + ", ".join(f"{n}× {r}" for r, n in reasons.most_common(5)) + ")"
        return text


def worker_init(worker_id: int) -> None:
    """DataLoader worker set-up: one intra-op thread per worker (decoding threads are bounded by decode_clip).

    SIGTERM keeps torch's handling in workers: a SIGTERM sent to the whole process group (Slurm, ``timeout``)
    kills them, and the run ends with a one-line error (exit 1) at the last checkpoint instead of saving at the next
    step; SIGTERM to the main process alone, and SIGINT, save cleanly. Ignoring SIGTERM in workers (tried) made a
    process exit hang in multiprocessing's join of live persistent workers, and a fix for that coincided with a
    deadlock in torch's fd passing; see the reliability notes. Inherited objects are never garbage-collected in the
    worker (:mod:`avformer.utils.forking`).
    """
    freeze_inherited()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


class EvalSampler(Sampler[int]):
    """Rank ``r`` of ``R`` reads indices ``r, r + R, r + 2R, ...``: every index on exactly one rank, no padding.

    ``DistributedSampler`` pads the last ranks with repeated indices so that all ranks get the same count; that
    is right for training and wrong for evaluation (repeated clips would count twice in the metrics). Here the
    share sizes differ by at most one; :func:`avformer.train.trainer.evaluate` gathers the outputs of all ranks.
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.size, self.num_replicas, self.rank = size, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


def make_loader(
    dataset: AVDataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    drop_last: bool = False,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    pad: bool = True,
    collate_fn: Callable[[Sequence[dict[str, Any]]], dict[str, Any]] = collate,
) -> DataLoader[dict[str, Any]]:
    """A DataLoader with the collate, worker set-up and seeding this dataset needs.

    The order comes from a ``DistributedSampler`` (also with one process): a permutation drawn from
    ``(seed, epoch)``, so an epoch's order is known in advance (exact resume) and each of ``num_replicas``
    processes reads its own share (padded with repeats to equal shares). ``pad=False`` (evaluation, no shuffle):
    an :class:`EvalSampler` instead, each index on exactly one rank. Workers are persistent; call
    :func:`set_epoch` before each epoch. With workers, a batch that takes longer than :func:`loader_timeout`
    (a decoder stuck inside one FFmpeg call, which ``decode_timeout_s`` cannot interrupt) ends the loop with
    torch's "DataLoader timed out" error instead of a hang.
    """
    sampler: Sampler[int]
    cfg = getattr(dataset, "cfg", None)  # a DataConfig for an AVDataset; other map-style datasets have none
    if pad:
        sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
    else:
        if shuffle:
            raise ValueError("pad=False is for evaluation: it does not shuffle")
        sampler = EvalSampler(len(dataset), num_replicas, rank)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        worker_init_fn=worker_init if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        timeout=loader_timeout(batch_size, cfg) if num_workers > 0 and isinstance(cfg, DataConfig) else 0,
    )


def loader_timeout(batch_size: int, cfg: DataConfig) -> float:
    """Seconds a worker may take for one batch: every clip of it at its decode time limit, 4 times over (several
    test clips, a retried open, a slow disk), plus 2 minutes for the workers' start. A bound against a hang, not
    an expectation."""
    return 120.0 + 4.0 * batch_size * max(cfg.decode_timeout_s, 1.0) * max(cfg.num_test_clips, 1)


def set_epoch(loader: DataLoader[dict[str, Any]], epoch: int) -> None:
    """Start epoch ``epoch``: a new sample order and new per-sample randomness, also in running workers."""
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if isinstance(loader.dataset, AVDataset):
        loader.dataset.set_epoch(epoch)
