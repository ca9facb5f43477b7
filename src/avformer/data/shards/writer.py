"""Writing shards (``avformer prepare``): :class:`PrepareConfig` and :func:`write_shards`.

Decoding H.264/AAC is the usual bottleneck of video training. :func:`write_shards` decodes every manifest row once
(frames already at the training fps and short side, audio already mono at the target rate) into tar shards in the
layout of :mod:`avformer.data.shards.format`, so the decoder leaves the training loop.

Decided where the issue was silent:

- ``--clip-seconds S`` stores the centre ``S`` seconds of each row's window (the eval window of ``AVDataset``);
  without it the whole row window is stored and training takes a random window of ``cfg.window_seconds`` inside
  what was stored, as ``AVDataset`` does inside the file.
- A row whose stored arrays would exceed what readers accept
  (:data:`~avformer.data.shards.format.MAX_ARRAY_BYTES` per array, finite audio within
  ±:data:`~avformer.data.shards.format.MAX_AUDIO_ABS`) fails with that reason and is listed in ``failed``, rather
  than written as a sample every reader would skip.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import multiprocessing as mp
import os
import random
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avformer.data.manifest import Manifest, ManifestRow
from avformer.data.media import MediaError, decode_clip
from avformer.data.shards.format import (
    AUDIO_EXT,
    INDEX_NAME,
    MAX_ARRAY_BYTES,
    META_EXT,
    SHARD_PATTERN,
    VIDEO_EXT,
    VIDEO_EXT_RAW,
    ShardIndex,
    ShardInfo,
    _audio_problem,
)
from avformer.data.video import uniform_clip_windows
from avformer.utils.forking import collect_before_fork, freeze_inherited

__all__ = ["PrepareConfig", "write_shards"]

_KEY_DIGITS = 8
_GZIP_LEVEL = 1  # 10 % larger than level 6 and 3x faster to write; reading speed is the same
_TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare`` stores per row and how it cuts shards.

    Attributes:
        fps: frame rate of the stored frames (the training ``video.fps``).
        size: short side of the stored frames (the training ``video.short_side``); None = native size (bounded
            by :data:`~avformer.data.media.DEFAULT_MAX_SIDE`).
        sample_rate: audio rate (the training ``audio.sample_rate``).
        clip_seconds: store the centre ``clip_seconds`` of each row window; None = the whole window / file.
        video, audio: which streams to store.
        shard_size: at most this many samples per shard (None = no limit).
        shard_bytes: at most about this many bytes per shard (None = no limit; a bigger sample gets a shard alone).
        shuffle_seed: write rows in an order shuffled with this seed (None = manifest order). Manifests sorted by
            class want this: a shuffle buffer mixes only samples that are close in the stream.
        timeout_s: decode time limit per row (a row over it fails with that reason).
        audio_dtype: ``"float16"`` (half the size) or ``"float32"`` (bit-exact features; see
            :mod:`avformer.data.shards.format`).
        video_compression: ``"gzip"`` (level 1, about 3x smaller) or ``"none"`` (fastest to read).
    """

    fps: float = 8.0
    size: int | None = 256
    sample_rate: int = 16000
    clip_seconds: float | None = None
    video: bool = True
    audio: bool = True
    shard_size: int | None = 1000
    shard_bytes: int | None = None
    shuffle_seed: int | None = None
    timeout_s: float = 60.0
    audio_dtype: str = "float16"
    video_compression: str = "gzip"

    def __post_init__(self) -> None:
        if self.video_compression not in ("gzip", "none"):
            raise ValueError(f"video_compression must be 'gzip' or 'none', got {self.video_compression!r}")
        if self.audio_dtype not in ("float16", "float32"):
            raise ValueError(f"audio_dtype must be 'float16' or 'float32', got {self.audio_dtype!r}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.clip_seconds is not None and self.clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        if not (self.video or self.audio):
            raise ValueError("nothing to store: video=False and audio=False")
        if self.shard_size is not None and self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.shard_bytes is not None and self.shard_bytes < 1:
            raise ValueError(f"shard_bytes must be >= 1, got {self.shard_bytes}")

    def decode_settings(self) -> dict[str, Any]:
        """The ``decode`` block of ``index.json``."""
        return {
            "fps": self.fps,
            "size": self.size,
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "video": self.video,
            "audio": self.audio,
            "video_encoding": "uint8 (T, H, W, 3) .npy"
            + (f", gzip level {_GZIP_LEVEL}" if self.video_compression == "gzip" else ""),
            "audio_encoding": f"{self.audio_dtype} (S,) .npy",
        }


@dataclass
class _RowResult:
    index: int
    id: str
    path: str
    members: list[tuple[str, bytes]] | None  # None: failed
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def _sample_key(index: int) -> str:
    return f"{index:0{_KEY_DIGITS}d}"


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def _decode_row(row: ManifestRow, cfg: PrepareConfig) -> Any:
    lo = row.start or 0.0
    common: dict[str, Any] = {
        "fps": cfg.fps,
        "size": cfg.size,
        "sample_rate": cfg.sample_rate,
        "video": cfg.video,
        "audio": cfg.audio,
        "timeout_s": cfg.timeout_s,
    }
    if cfg.clip_seconds is None:
        return decode_clip(row.path, lo, row.end, **common)
    length = cfg.clip_seconds

    def window(duration: float | None) -> tuple[float, float | None]:
        hi = row.end if row.end is not None else duration
        if hi is None or hi - lo <= length:  # short or unknown: read up to `length` (headers can under-report)
            return lo, lo + length
        s, e = uniform_clip_windows(hi - lo, length, 1)[0]
        return lo + s, lo + e

    return decode_clip(row.path, window=window, **common)


def _encode_row(job: tuple[int, ManifestRow, PrepareConfig]) -> _RowResult:
    """Decode one row and encode its shard members (runs in the worker processes)."""
    index, row, cfg = job
    res = _RowResult(index, row.id, row.path, None)
    try:
        clip = _decode_row(row, cfg)
    except MediaError as e:
        res.reason = e.reason
        return res
    except Exception as e:  # anything a broken file can raise: reported with its reason, never fatal
        res.reason = " ".join(f"{type(e).__name__}: {e}".split())
        return res
    has_video = clip.video is not None and len(clip.video) > 0
    has_audio = clip.audio is not None and len(clip.audio) > 0
    if not (has_video or has_audio):
        res.reason = "no frames and no audio in the window"
        return res
    audio = clip.audio.astype(cfg.audio_dtype) if has_audio else None
    for what, array in (("video", clip.video if has_video else None), ("audio", audio)):
        if array is not None and array.nbytes > MAX_ARRAY_BYTES:
            res.reason = (
                f"{what} of {array.nbytes} bytes is over the {MAX_ARRAY_BYTES}-byte limit shard readers accept "
                "(store less: --clip-seconds, --size)"
            )
            return res
    if audio is not None and (problem := _audio_problem(audio)) is not None:
        res.reason = f"decoded {problem}"
        return res
    end = clip.end if clip.end is not None else clip.start
    meta = {
        "id": row.id,
        "index": index,
        "path": row.path,
        "labels": list(row.labels),
        "text": row.text,
        "start": clip.start,
        "end": end,
        "duration": max(end - clip.start, 0.0),
        "fps": clip.fps if has_video else None,
        "num_frames": len(clip.video) if has_video else 0,
        "sample_rate": clip.sample_rate,
        "num_samples": len(clip.audio) if has_audio else 0,
        "has_video": has_video,
        "has_audio": has_audio,
        "warnings": list(clip.warnings),
    }
    key = _sample_key(index)
    members = [(f"{key}.{META_EXT}", json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"))]
    if has_video:
        if cfg.video_compression == "gzip":
            members.append((f"{key}.{VIDEO_EXT}", gzip.compress(_npy_bytes(clip.video), _GZIP_LEVEL, mtime=0)))
        else:
            members.append((f"{key}.{VIDEO_EXT_RAW}", _npy_bytes(clip.video)))
    if audio is not None:
        members.append((f"{key}.{AUDIO_EXT}", _npy_bytes(audio)))
    res.members, res.warnings = members, list(clip.warnings)
    return res


def _prepare_worker_init() -> None:
    freeze_inherited()
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _tar_bytes(size: int) -> int:
    """Bytes a member of ``size`` bytes takes in a ustar file (header + data padded to 512)."""
    return 512 + -(-size // 512) * 512


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, 0, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class _ShardWriter:
    """Writes ``shard-NNNNNN.tar`` files one after the other, each to a temporary name, renamed when complete."""

    def __init__(self, outdir: Path, cfg: PrepareConfig) -> None:
        self.outdir, self.cfg = outdir, cfg
        self.shards: list[ShardInfo] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._count = self._bytes = 0

    def add(self, members: list[tuple[str, bytes]]) -> ShardInfo | None:
        """Append one sample; returns the shard it closed first, if any."""
        size = sum(_tar_bytes(len(b)) for _, b in members)
        closed = None
        full_count = self.cfg.shard_size is not None and self._count >= self.cfg.shard_size
        full_bytes = self.cfg.shard_bytes is not None and self._bytes + size > self.cfg.shard_bytes
        if self._tar is not None and self._count > 0 and (full_count or full_bytes):
            closed = self.close()
        if self._tar is None:
            self._tmp = self.outdir / (SHARD_PATTERN.format(len(self.shards)) + f"{_TMP_SUFFIX}{os.getpid()}")
            # closed by close() / abort(): the shard stays open across add() calls
            self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
            self._count = self._bytes = 0
        for name, data in members:
            self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
        self._count += 1
        self._bytes += size
        return closed

    def close(self) -> ShardInfo | None:
        if self._tar is None or self._tmp is None:
            return None
        self._tar.close()
        final = self.outdir / SHARD_PATTERN.format(len(self.shards))
        _fsync_replace(self._tmp, final)
        info = ShardInfo(final.name, self._count, final.stat().st_size)
        self.shards.append(info)
        self._tar, self._tmp = None, None
        return info

    def abort(self) -> None:
        if self._tar is not None:
            with contextlib.suppress(Exception):
                self._tar.close()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
        self._tar, self._tmp = None, None


def _existing_outputs(out: Path) -> list[Path]:
    return sorted(out.glob("shard-*.tar")) + ([out / INDEX_NAME] if (out / INDEX_NAME).exists() else [])


def write_shards(
    manifest: Manifest,
    outdir: str | os.PathLike[str],
    cfg: PrepareConfig | None = None,
    *,
    workers: int = 1,
    overwrite: bool = False,
    on_shard: Callable[[ShardInfo], None] | None = None,
    on_row: Callable[[int, str], None] | None = None,
) -> ShardIndex:
    """Decode every row of ``manifest`` once and write shards + ``index.json`` into ``outdir``.

    Rows are decoded by ``workers`` processes but written in one fixed order (manifest order, or shuffled with
    ``cfg.shuffle_seed``), so the output does not depend on ``workers``. A row that fails is listed in the index's
    ``failed`` with its reason, never dropped silently.

    Args:
        manifest: rows to store (paths already resolved).
        outdir: destination folder (created).
        cfg: what to store; default :class:`PrepareConfig`.
        workers: decoding processes (1 = in this process).
        overwrite: replace the shards and index of an earlier ``prepare`` (else their presence is an error);
            shards of the earlier run that the new one did not write are removed after the new index is in place.
        on_shard: called with each shard once it is complete.
        on_row: called with ``(rows done, row id)`` after each row.

    Returns:
        The written index (``shards`` hold file names relative to ``outdir``).

    Raises:
        FileExistsError: ``outdir`` holds shards or an index and ``overwrite`` is False.
    """
    cfg = cfg or PrepareConfig()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    previous = _existing_outputs(out)
    if previous and not overwrite:
        raise FileExistsError(f"{out} already holds shards or {INDEX_NAME} (pass overwrite / --overwrite)")
    for stale in out.glob(f"*{_TMP_SUFFIX}*"):  # temporaries of a run that was killed
        if stale.name.startswith("shard-") or stale.name.startswith(INDEX_NAME):
            stale.unlink(missing_ok=True)

    order = list(range(len(manifest)))
    if cfg.shuffle_seed is not None:
        random.Random(cfg.shuffle_seed).shuffle(order)
    jobs = ((i, manifest[i], cfg) for i in order)
    writer = _ShardWriter(out, cfg)
    failed: list[dict[str, Any]] = []
    warned: list[dict[str, Any]] = []
    results: Iterable[_RowResult]
    pool = None
    try:
        if workers > 1:
            collect_before_fork()
            pool = mp.get_context().Pool(workers, initializer=_prepare_worker_init)
            chunk = max(1, min(8, len(order) // (8 * workers)))
            results = pool.imap(_encode_row, jobs, chunksize=chunk)  # ordered: output independent of workers
        else:
            results = map(_encode_row, jobs)
        for done, res in enumerate(results, 1):
            if res.members is None:
                failed.append({"index": res.index, "id": res.id, "path": res.path, "reason": res.reason})
            else:
                if res.warnings:
                    warned.append({"index": res.index, "id": res.id, "warnings": res.warnings})
                closed = writer.add(res.members)
                if closed is not None and on_shard is not None:
                    on_shard(closed)
            if on_row is not None:
                on_row(done, res.id)
        closed = writer.close()
        if closed is not None and on_shard is not None:
            on_shard(closed)
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    index = ShardIndex(
        shards=writer.shards,
        classes=list(manifest.classes),
        multilabel=manifest.multilabel,
        decode=cfg.decode_settings(),
        failed=failed,
        warnings=warned,
        source=str(out / INDEX_NAME),
        extra={"manifest": {"source": manifest.source, "rows": len(manifest), "shuffle_seed": cfg.shuffle_seed}},
    )
    tmp = out / f"{INDEX_NAME}{_TMP_SUFFIX}{os.getpid()}"
    tmp.write_text(json.dumps(index.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    _fsync_replace(tmp, out / INDEX_NAME)
    keep = {s.name for s in writer.shards} | {INDEX_NAME}
    for p in previous:
        if p.name not in keep:
            p.unlink(missing_ok=True)
    return index
