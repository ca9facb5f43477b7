"""Reading shards: :class:`ShardDataset` (a streaming dataset) and :func:`make_shard_loader` (its DataLoader).

:class:`ShardDataset` streams the shards written by :func:`~avformer.data.shards.writer.write_shards` back through
the same transforms as :class:`~avformer.data.dataset.AVDataset`, in the order that
:mod:`avformer.data.shards.plan` defines.

**Mid-epoch resume.** Because the order is known in advance, resuming at batch ``k`` of epoch ``e`` only needs
``(e, k)``: :meth:`ShardDataset.fast_forward` (or ``load_state_dict(state_dict(k))``) makes the next iteration of
epoch ``e`` start at batch ``k``; every worker drops the outputs it produced before ``k`` from its plan and opens
only the shards holding what is left (the samples still in the shuffle buffer at ``k`` included). Nothing skipped
is decompressed or transformed. With ``placeholders=True`` the skipped batches still come out, as empty batches of
skip markers (``batch_size == 0`` after :func:`~avformer.data.dataset.collate`): that is the form the trainer's
resume expects, since it re-reads and drops the batches already trained. Without calling ``fast_forward`` the
trainer's resume also works, but decodes the dropped batches.

Decided where the issue was silent:

- Stored frames at ``fps`` F are re-gridded to the config's fps f by picking, for the grid time ``s + i / f``, the
  stored frame shown at that time (``floor(t * F)``). With F == f (the intended use) this is exact.
- A DataConfig whose audio rate differs from the stored one is an error (no resampling at read time); another fps
  or a larger ``short_side`` than stored is a warning.
- Rank and world size come from the constructor, else from ``torch.distributed`` when it is initialised at
  construction (inside DataLoader workers the process group is not usable, so it is read once, up front).
- Shards and indexes are untrusted input (:mod:`avformer.data.shards.format` says what is refused and why). A
  sample that cannot be used (corrupt or oversized member, bad JSON, non-finite audio) becomes a skip marker whose
  reason names the shard and key (``shard shard-000003.tar key 00000042: audio holds 7 non-finite values``), like
  a bad file in ``AVDataset``.
- A shard that cannot be opened, ends early, is corrupt mid-way, or holds fewer samples than the index says never
  raises out of the iteration (in a DataLoader worker that would end the run with a traceback from another
  process): each sample this worker still needed from it comes out as a skip marker, in its planned place, with a
  reason naming the shard and what happened (``shard shard-000003.tar: truncated or corrupt after 5 of 12 samples
  (ReadError: unexpected end of data)``), and the failure is logged once per shard and process. So the epoch keeps
  its batches (and a resume its order), and :class:`~avformer.data.dataset.LoadStats` counts every lost sample.
  Opening an http(s) URL is retried 3 times; a connection that drops mid-shard is such a failure.
- A sample whose label is missing from the class list is a skip marker when the index's own class list lacks it
  too (the shard contradicts its index); when only the caller's ``classes`` lack it, or the shards came as a list
  (no index), it raises as before (a configuration error, e.g. val shards with a class the training set lacks).
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from avformer.data.dataset import _SKIP, DataConfig, WindowTransform, _stack_views, collate, worker_init
from avformer.data.media import MediaError
from avformer.data.shards.format import (
    SHARD_KEY,
    ShardIndex,
    ShardInfo,
    ShardReadError,
    ShardSampleError,
    StoredSample,
    iter_shard,
    load_index,
    read_sample,
)
from avformer.data.shards.plan import WorkerPlan, _batches_before, _split_even, epoch_plan
from avformer.data.video import random_clip_window, uniform_clip_windows
from avformer.data.views import ViewError, place_views

__all__ = ["ShardDataset", "make_shard_loader"]

log = logging.getLogger(__name__)

_EPS = 1e-6  # seconds / frames: tolerance when mapping grid times to stored frames (as avformer.data.media)


# --------------------------------------------------------------------------------------------------------------
# streaming dataset


def _frames_at(video: np.ndarray, stored_fps: float, start: float, end: float, fps: float) -> np.ndarray | None:
    """Stored frames shown at the grid ``start + i / fps`` (``< end``, within the stored frames); None if none."""
    idx: list[int] = []
    i = 0
    while True:
        t = start + i / fps
        if t >= end - _EPS:
            break
        j = math.floor(t * stored_fps + _EPS)
        if j >= len(video):
            break
        idx.append(max(j, 0))
        i += 1
    if not idx:
        return None
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return video[idx[0] : idx[0] + len(idx)]
    return video[idx]


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError("pass both rank and world_size, or neither")
    if rank is not None and world_size is not None:
        r, w = rank, world_size
    elif dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    else:
        r, w = 0, 1
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank {r} outside [0, {w})")
    return r, w


class ShardDataset(IterableDataset[dict[str, Any]]):
    """Samples streamed from shards written by :func:`write_shards`, with the keys and transforms of ``AVDataset``.

    See :mod:`avformer.data.shards.plan` for how the order of an epoch is defined, and the module docstring for
    resuming mid-epoch. Build the loader with :func:`make_shard_loader`, which takes the batch size from here (the
    order is defined per batch).

    Args:
        source: a shard folder, an ``index.json`` (path or URL), or a list of shard paths / URLs (their samples are
            counted by reading them once, and ``classes`` is then required).
        cfg: data configuration (the same as for ``AVDataset``).
        train: random windows and augmentations, shuffled order (True) or centre windows in index order (False).
        seed: seed of the order and of the per-sample randomness (from ``(seed, epoch, manifest index)``).
        batch_size: batch size of the DataLoader that will read this dataset.
        shuffle: shuffle (default: ``train``).
        shuffle_buffer: samples in the shuffle buffer of each worker (memory: about this many compressed samples).
        classes: class list; default the index's (required for a list of shards; ``[]`` for unlabeled data).
        labels: False drops the stored labels (every sample's ``label`` is -1): what self-supervised training sees.
        rank, world_size: this process among distributed ones; default from ``torch.distributed`` when
            initialised, else 0 of 1.
        timeout_s: socket timeout for URLs.
        allow_urls: let the index name http(s) shards anywhere, not only under its own folder (see
            :func:`~avformer.data.shards.format.load_index`; a list of shards is taken as given).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        cfg: DataConfig,
        *,
        train: bool = False,
        seed: int = 0,
        batch_size: int = 1,
        shuffle: bool | None = None,
        shuffle_buffer: int = 1000,
        classes: Sequence[str] | None = None,
        labels: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        timeout_s: float = 60.0,
        allow_urls: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(source, (str, os.PathLike)):
            self.index = load_index(source, timeout_s=timeout_s, allow_urls=allow_urls)
        else:
            if classes is None:
                raise ValueError("a list of shards has no class list: pass classes= (or [] for unlabeled data)")
            self.index = ShardIndex.from_urls([os.fspath(s) for s in source], timeout_s=timeout_s)
        if not self.index.shards:
            raise ValueError(f"{self.index.source or 'shard list'}: no shards")
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.batch_size = batch_size
        self.shuffle = train if shuffle is None else shuffle
        self.shuffle_buffer = shuffle_buffer
        self.timeout_s = timeout_s
        self.classes = list(classes) if classes is not None else list(self.index.classes)
        self.multilabel = self.index.multilabel
        self.num_classes = len(self.classes)
        self.labels = labels
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        # labels a sample may carry without contradicting its index (None: no index file to contradict)
        self._index_classes = set(self.index.classes) if self.index.source else None
        self._reported: set[str] = set()  # shards whose failure this process has logged
        self.rank, self.world_size = _rank_world(rank, world_size)
        self._check_settings()
        # shared memory, so persistent DataLoader workers see what the main process sets (as AVDataset._epoch)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        # fast-forward: (epoch, batches, placeholders, num_workers expected or 0); epoch -1 = none
        self._ff = torch.tensor([-1, 0, 0, 0], dtype=torch.int64).share_memory_()
        self._workers_seen = torch.zeros((), dtype=torch.int64).share_memory_()  # written by the iterating process
        self.transform = WindowTransform(cfg, train)

    def _check_settings(self) -> None:
        d, cfg, where = self.index.decode, self.cfg, self.index.source or "shards"
        if not d:
            return
        if "audio" in cfg.modalities and d.get("audio", True) and d.get("sample_rate") != cfg.audio.sample_rate:
            raise ValueError(
                f"{where}: audio stored at {d.get('sample_rate')} Hz, the config wants {cfg.audio.sample_rate} Hz "
                "(re-run prepare with --sample-rate)"
            )
        missing = [m for m in cfg.modalities if not d.get(m, True)]
        if len(missing) == len(cfg.modalities):
            raise ValueError(f"{where}: stored without {', '.join(missing)}; the config reads only that")
        if "video" in cfg.modalities and d.get("video", True):
            if d.get("fps") is not None and abs(float(d["fps"]) - cfg.video.fps) > _EPS:
                log.warning("%s: frames stored at %g fps, re-gridded to %g fps", where, d["fps"], cfg.video.fps)
            if d.get("size") is not None and int(d["size"]) < cfg.video.short_side:
                log.warning(
                    "%s: frames stored with short side %d, below video.short_side %d (upscaled at eval)",
                    where,
                    d["size"],
                    cfg.video.short_side,
                )

    @property
    def prepare_failures(self) -> list[dict[str, Any]]:
        """The rows ``avformer prepare`` could not write, as its index lists them (``failed``): ``{"index", "id",
        "path", "reason"}`` each, in manifest order; ``[]`` for a list of shards (no index). A copy."""
        return [dict(row) for row in self.index.failed]

    # -- epochs, length, resume ------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Samples this rank reads per epoch."""
        a, b = _split_even(self.index.num_samples, self.world_size, self.rank)
        return b - a

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (order and per-sample randomness); visible to running workers.

        A pending :meth:`fast_forward` for another epoch is dropped.
        """
        self._epoch.fill_(epoch)
        if int(self._ff[0]) != epoch:
            self._ff.copy_(torch.tensor([-1, 0, 0, 0]))

    def fast_forward(
        self, batches: int, *, epoch: int | None = None, placeholders: bool = False, num_workers: int | None = None
    ) -> None:
        """Make the next iteration of ``epoch`` (default: the current one) start at its batch ``batches``.

        Args:
            batches: batches of that epoch already consumed (the trainer's ``batches_done``).
            epoch: the epoch it applies to; iterating another epoch ignores it (and ``set_epoch`` to another
                epoch clears it).
            placeholders: yield the skipped batches as empty batches (``batch_size == 0`` after collate, nothing
                decoded) instead of leaving them out: use this under the trainer, which drops them itself.
            num_workers: the number of workers the batches were produced with; iterating with another number
                raises (the order would differ). None: not checked.
        """
        if batches < 0:
            raise ValueError(f"batches must be >= 0, got {batches}")
        e = self.epoch if epoch is None else epoch
        self._ff.copy_(torch.tensor([e, batches, int(placeholders), max(0, num_workers or 0)]))

    def _fingerprint(self) -> dict[str, Any]:
        shards = zlib.crc32("\n".join(f"{s.name}:{s.samples}" for s in self.index.shards).encode())
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "rank": self.rank,
            "world_size": self.world_size,
            "shards": shards,
        }

    def state_dict(self, batches_done: int) -> dict[str, Any]:
        """Where a consumer stands: the epoch, ``batches_done`` batches of it, and what fixes the order.

        The consumer counts batches (the dataset runs in the workers and cannot); ``num_workers`` is the number
        this dataset was last iterated with.
        """
        seen = int(self._workers_seen)
        return {
            "epoch": self.epoch,
            "batches_done": batches_done,
            "num_workers": seen or None,
            "plan": self._fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any], *, placeholders: bool = False) -> None:
        """Resume from :meth:`state_dict`: set its epoch; the next iteration starts at its batch.

        Raises:
            ValueError: the state was saved with another order (seed, batch size, shards, ranks, buffer).
        """
        mine = self._fingerprint()
        theirs = dict(state["plan"])
        diff = [f"{k}: saved {theirs.get(k)!r}, now {v!r}" for k, v in mine.items() if theirs.get(k) != v]
        if diff:
            raise ValueError("cannot resume: the sample order would differ (" + "; ".join(diff) + ")")
        self.set_epoch(int(state["epoch"]))
        self.fast_forward(
            int(state["batches_done"]),
            epoch=int(state["epoch"]),
            placeholders=placeholders,
            num_workers=state.get("num_workers"),
        )

    def plan(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> WorkerPlan:
        """One worker's plan for ``epoch`` (default: the current one); see :func:`epoch_plan`."""
        return epoch_plan(
            [s.samples for s in self.index.shards],
            seed=self.seed,
            epoch=self.epoch if epoch is None else epoch,
            shuffle=self.shuffle,
            shuffle_buffer=self.shuffle_buffer,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            worker=worker,
            num_workers=num_workers,
        )

    def planned_order(self, num_workers: int = 0, epoch: int | None = None) -> list[tuple[str, int]]:
        """The order a DataLoader with ``num_workers`` yields this rank's samples in: ``(shard url, position)``."""
        w = max(1, num_workers)
        plans = [self.plan(i, w, epoch).outputs for i in range(w)]
        batches = [[p[k : k + self.batch_size] for k in range(0, len(p), self.batch_size)] for p in plans]
        order: list[tuple[str, int]] = []
        for j in range(max(len(b) for b in batches)):
            for b in batches:
                if j < len(b):
                    order += [(self.index.shards[s].url, m) for s, m in b[j]]
        return order

    # -- iteration -------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        num_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        epoch = self.epoch
        self._workers_seen.fill_(num_workers)
        ff_epoch, ff_batches, ff_placeholders, ff_workers = (int(x) for x in self._ff)
        skip_batches = 0
        if ff_epoch == epoch and ff_batches > 0:
            if ff_workers and max(1, ff_workers) != num_workers:
                raise RuntimeError(
                    f"cannot resume: the batches were produced with {ff_workers} DataLoader workers, this loader has "
                    f"{num_workers}; the order depends on it (avformer.data.shards)"
                )
            skip_batches = ff_batches
        plan = self.plan(worker, num_workers, epoch)
        skip = min(len(plan.outputs), _batches_before(skip_batches, worker, num_workers) * self.batch_size)
        if ff_placeholders:
            for s, m in plan.outputs[:skip]:
                name = self.index.shards[s].name
                yield {_SKIP: True, "id": f"{name}#{m}", "index": -1, "reason": "fast-forward: trained before resume"}
        yield from self._read(plan.shards, plan.outputs[skip:], epoch)

    def _read(self, shard_order: list[int], outputs: list[tuple[int, int]], epoch: int) -> Iterator[dict[str, Any]]:
        """Read the shards in order, keeping what ``outputs`` still needs, and yield samples in ``outputs`` order.

        A shard that fails (cannot be opened, ends early, corrupt, fewer samples than the index says) gives a skip
        marker for each of its samples still needed, in their planned places; nothing raises.
        """
        needed: dict[int, set[int]] = {}
        for s, m in outputs:
            needed.setdefault(s, set()).add(m)
        # (key, members) read from a shard, or a skip marker for a sample its shard could not give
        pending: dict[tuple[int, int], tuple[str, dict[str, bytes]] | dict[str, Any]] = {}
        t = 0
        for s in shard_order:
            want = needed.get(s)
            if not want:
                continue
            remaining = set(want)
            shard = self.index.shards[s]
            seen = [0]  # samples the tar has shown (positions passed to `wanted`)

            def wanted(m: int, want: set[int] = want, seen: list[int] = seen) -> bool:
                seen[0] = m + 1
                return m in want

            failure: ShardReadError | None = None
            samples = iter_shard(shard.url, wanted, timeout_s=self.timeout_s)
            try:
                while remaining:
                    try:
                        m, key, members = next(samples)
                    except StopIteration:
                        break
                    except ShardReadError as e:
                        failure = e
                        break
                    pending[(s, m)] = (key, members)
                    remaining.discard(m)
                    while t < len(outputs) and outputs[t] in pending:
                        yield self._emit(pending.pop(outputs[t]), epoch)
                        t += 1
            finally:
                samples.close()
            if remaining:
                reason = self._shard_failure(shard, seen[0], failure, len(remaining))
                for m in remaining:
                    pending[(s, m)] = {_SKIP: True, "id": f"{shard.name}#{m}", "index": -1, "reason": reason}
                while t < len(outputs) and outputs[t] in pending:
                    yield self._emit(pending.pop(outputs[t]), epoch)
                    t += 1
        if t != len(outputs):  # cannot happen: every planned sample was read or marked
            raise RuntimeError(f"shard stream ended with {len(outputs) - t} samples not yielded")

    def _emit(self, entry: tuple[str, dict[str, bytes]] | dict[str, Any], epoch: int) -> dict[str, Any]:
        return entry if isinstance(entry, dict) else self._sample(*entry, epoch)

    def _shard_failure(self, shard: ShardInfo, seen: int, failure: ShardReadError | None, lost: int) -> str:
        """The skip reason for the samples a shard could not give (logged once per shard and process)."""
        if failure is not None and not failure.opened:
            reason = f"shard {shard.name}: cannot be opened ({failure.cause})"
        elif failure is not None:
            reason = (
                f"shard {shard.name}: truncated or corrupt after {failure.samples} of {shard.samples} samples "
                f"({failure.cause})"
            )
        else:
            reason = f"shard {shard.name}: holds {seen} samples, the index says {shard.samples}"
        if shard.url not in self._reported:
            self._reported.add(shard.url)
            log.warning("%s; %d planned samples skipped", reason, lost)
        return reason

    # -- one sample ------------------------------------------------------------------------------------------

    def _generator(self, index: int, epoch: int) -> torch.Generator:
        key = zlib.crc32(f"{self.seed}:{epoch}:{index}".encode())  # the same stream as AVDataset
        return torch.Generator().manual_seed(key)

    def _label(self, labels: list[str]) -> torch.Tensor:
        if not self.labels:
            return torch.tensor(-1, dtype=torch.long)
        try:
            idx = [self._class_index[c] for c in labels]
        except KeyError as e:
            raise ValueError(f"label {e.args[0]!r} is not in the class list ({self.num_classes} classes)") from e
        if self.multilabel:
            target = torch.zeros(self.num_classes, dtype=torch.float32)
            target[idx] = 1.0
            return target
        return torch.tensor(idx[0] if idx else -1, dtype=torch.long)

    def _sample(self, key: str, members: dict[str, bytes], epoch: int) -> dict[str, Any]:
        try:
            stored = read_sample(
                key, members, video=self.transform.video is not None, audio=self.transform.audio is not None
            )
        except ShardSampleError as e:
            meta = e.meta
            return {
                _SKIP: True,
                "id": meta["id"] if meta is not None else key,
                "index": meta["index"] if meta is not None else -1,
                "reason": str(e),
            }
        meta = stored.meta
        index = int(meta["index"])
        unknown = [c for c in meta["labels"] if c not in self._class_index] if self.labels else []
        if unknown and self._index_classes is not None and not self._index_classes.issuperset(unknown):
            shard = members.get(SHARD_KEY, b"").decode("utf-8", "replace")  # the shard contradicts its index
            why = f"label {unknown[0]!r} is not in the index's class list"
            return {
                _SKIP: True,
                "id": meta["id"],
                "index": index,
                "reason": str(ShardSampleError(key, why, shard=shard)),
            }
        try:
            views = self._views(stored, self._generator(index, epoch))
        except MediaError as e:
            return {_SKIP: True, "id": meta["id"], "index": index, "reason": e.reason}
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            return {_SKIP: True, "id": meta["id"], "index": index, "reason": f"{type(e).__name__}: {e}"}
        if len(views) == 1:
            sample = views[0]
        elif self.cfg.views.active:  # every key per view, as AVDataset
            sample = {k: torch.stack([v[k] for v in views]) for k in views[0]}
        else:
            sample = {k: _stack_views([v[k] for v in views]) for k in views[0]}
        sample["label"] = self._label(meta["labels"])
        sample["id"] = meta["id"]
        sample["index"] = index
        if meta.get("text") is not None:
            sample["text"] = meta["text"]
        return sample

    def _views(self, stored: StoredSample, gen: torch.Generator) -> list[dict[str, Any]]:
        """Windows of the stored clip -> views, as ``AVDataset._windows`` + ``_load_window`` do for a file."""
        cfg, meta = self.cfg, stored.meta
        duration, length = float(meta["duration"]), cfg.window_seconds
        if cfg.views.active:
            return self._offset_views(stored, duration, length, gen)
        if self.train:
            windows = [random_clip_window(duration, length, gen)]
        else:
            windows = uniform_clip_windows(duration, length, cfg.num_test_clips)
        return [v for s, e in windows for v in self._window_views(stored, s, e, gen)]

    def _offset_views(
        self, stored: StoredSample, duration: float, length: float, gen: torch.Generator
    ) -> list[dict[str, Any]]:
        """``DataConfig.views`` from the stored clip, as ``AVDataset._view_sample`` from a file: the windows of
        :func:`place_views` over the stored span, the audio of a shifted view cut from the stored waveform."""
        cfg, meta = self.cfg, stored.meta
        try:
            windows = place_views(0.0, duration, length, cfg.views, gen, train=self.train)
        except ViewError as e:
            raise MediaError(meta["path"], str(e)) from e
        views: list[dict[str, Any]] = []
        for w in windows:
            frames = self._frames(stored, w.video_start, w.video_start + length)
            wav = self._wav(stored, w.audio_start, w.audio_start + length)
            if cfg.views.shifted and (wav is None or len(wav) < round(length * int(meta["sample_rate"]) * 0.99)):
                got = 0.0 if wav is None else len(wav) / int(meta["sample_rate"])
                raise MediaError(
                    meta["path"], f"no audio for the window shifted by {w.offset:+.3f} s ({got:.3f} of {length:g} s)"
                )
            for view in self.transform(meta["path"], frames, wav, gen):
                if cfg.views.shifted:
                    view["audio_offset"] = torch.tensor(w.offset, dtype=torch.float32)
                views.append(view)
        return views

    def _frames(self, stored: StoredSample, start: float, end: float) -> np.ndarray | None:
        """The stored frames of ``[start, end]`` seconds at the config's fps (None: no video)."""
        if stored.video is None:
            return None
        return _frames_at(stored.video, float(stored.meta["fps"]), start, end, self.cfg.video.fps)

    def _wav(self, stored: StoredSample, start: float, end: float) -> np.ndarray | None:
        """The stored samples of ``[start, end]`` seconds (None: no audio)."""
        if stored.audio is None:
            return None
        rate = int(stored.meta["sample_rate"])
        return stored.audio[round(start * rate) : round(start * rate) + max(round((end - start) * rate), 0)]

    def _window_views(
        self, stored: StoredSample, start: float, end: float, gen: torch.Generator
    ) -> list[dict[str, Any]]:
        # the same WindowTransform as AVDataset, on stored arrays instead of a decode (tests compare the two)
        frames, wav = self._frames(stored, start, end), self._wav(stored, start, end)
        return self.transform(stored.meta["path"], frames, wav, gen)


def make_shard_loader(
    dataset: ShardDataset,
    *,
    num_workers: int = 0,
    collate_fn: Callable[[Sequence[dict[str, Any]]], dict[str, Any]] = collate,
    pin_memory: bool = False,
) -> DataLoader[dict[str, Any]]:
    """A DataLoader over ``dataset`` with its batch size, ``collate``, one thread per worker, persistent workers.

    Call ``dataset.set_epoch(e)`` (or the trainer's ``set_loader_epoch``) before each epoch.

    Raises:
        ValueError: a pending resume (:meth:`ShardDataset.load_state_dict`) was saved with another number of workers.
    """
    expected = int(dataset._ff[3])
    if int(dataset._ff[0]) >= 0 and expected and expected != max(1, num_workers):
        raise ValueError(
            f"cannot resume: the batches were produced with {expected} DataLoader workers, this loader has "
            f"{max(1, num_workers)}; the order depends on it"
        )
    return DataLoader(
        dataset,
        batch_size=dataset.batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=worker_init if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )
