"""Pre-decoded tar shards (WebDataset layout): the writer behind ``avformer prepare`` and a streaming reader.

Decoding H.264/AAC is the usual bottleneck of video training. :func:`write_shards` decodes every manifest row once
(frames already at the training fps and short side, audio already mono at the target rate) into tar shards, and
:class:`ShardDataset` streams them back through the same transforms as
:class:`~avformer.data.dataset.AVDataset`, so the decoder leaves the training loop.

Shard format (version 1)
------------------------
``OUTDIR/shard-000000.tar``, ``shard-000001.tar``, ...: plain POSIX (ustar) tar files, not compressed as a whole.
A sample is a run of consecutive members named ``<key>.<ext>`` (WebDataset's convention: the key is the member name
up to the first dot of its base name). ``key`` is the manifest row index, zero-padded to 8 digits (row ids can hold
dots and slashes, so they go in the JSON). Members, in this order:

======================  =================================================================================
member                  content
======================  =================================================================================
``<key>.json``          UTF-8 JSON: ``id``, ``index`` (manifest row), ``path`` (source file), ``labels``
                        (class names), ``text`` (or null), ``start`` / ``end`` (source seconds of the stored
                        window), ``duration`` (stored seconds), ``fps``, ``num_frames``, ``sample_rate``,
                        ``num_samples``, ``has_video``, ``has_audio``, ``warnings`` (partial-decode notes)
``<key>.video.npy.gz``  (T, H, W, 3) uint8 RGB in ``.npy`` format, gzip level 1 (``<key>.video.npy``, not
                        compressed, with ``video_compression="none"``); frame ``i`` is the picture shown at
                        ``start + i / fps`` (:func:`~avformer.data.media.decode_clip`'s grid). Absent when the
                        row has no video (or ``video=False``)
``<key>.audio.npy``     (S,) float16 (or float32, ``audio_dtype``) mono at ``sample_rate``; ``audio[k]`` is at
                        ``start + k / sample_rate``. Absent when the row has no audio (or ``audio=False``)
======================  =================================================================================

Members carry mtime 0, uid/gid 0 and mode 0644, so a shard's bytes depend only on the data: the same manifest and
settings give identical shards whatever ``workers`` is. ``OUTDIR/index.json`` lists the shards (name, sample count,
bytes), the class list, the decode settings, and every row that failed with its reason (``failed``) and every row
decoded with warnings (``warnings``). It is written last: a directory without it is an unfinished ``prepare``.
Shards and the index are written to a temporary name, fsynced and renamed (never a half-written file).

Why gzip'd ``.npy`` and not per-frame JPEG (measured on 40 AV-Digits clips, 16 frames 64x64 + 1 s of audio, one
CPU thread; JPEG/PNG through Pillow): raw ``.npy`` 192 KB/clip, gzip-1 64 KB (decode 0.7 ms),
gzip-6 58 KB (0.6 ms, 3x slower to write), JPEG q90 24 KB (decode 2.8 ms, mean abs error 2.2 grey levels),
PNG 67 KB (1.9 ms). JPEG is 2.7x smaller here but 4x slower to read and lossy; on CPU-bound machines the read
cost is what limits training, and lossless storage lets a shard sample equal a direct decode exactly. For large
natural video (256 px, many frames) JPEG would be roughly 10x smaller and worth adding as an option. In a
training epoch over AV-Digits (2 DataLoader workers, 16 frames of 64 px, 128-bin fbank) the whole loading path
costs 4.7 ms of CPU per clip from gzip'd shards, 4.4 ms from uncompressed ones (2.2x the disk: 596 MB instead of
274 MB) and 7.2 ms from the MP4 files; most of the rest is the transforms both paths share (random resized crop
with antialiasing, fbank). gzip stays the default; ``prepare --no-compress`` trades disk for that 0.3 ms. Audio is
float16 by default (2 bytes, no clipping above 1.0; relative precision 2^-11), not gzip'd (only 8 % smaller). Its
rounding noise sits about 66 dB below the signal: harmless for training, but visible in the log of near-empty mel
bands (AAC cuts the top of the spectrum): on AV-Digits the normalised AST fbank moves by 0.04 on average per clip at
most, 0.36 at worst (int16 would halve that and clip overshoots above 1.0). ``audio_dtype="float32"`` (``prepare
--audio-float32``) stores the decoder's samples exactly, at twice the audio size.

Reading: order, epochs and resume
---------------------------------
An epoch reads every sample of the index exactly once, split across distributed ranks and DataLoader workers, and
its order is a pure function of ``(seed, epoch, world_size, rank, num_workers, batch_size, shuffle_buffer)``:

1. The shard list is shuffled with ``(seed, epoch)`` (training only) and concatenated into one stream of N samples.
2. Rank ``r`` of ``R`` takes the contiguous range ``r`` of R near-equal parts (sizes differ by at most one sample;
   ``len(dataset)`` is this rank's share).
3. The rank's ``nb = ceil(n / B)`` batches are dealt to the ``W`` workers as contiguous input ranges of whole
   batches (``nb // W`` or one more each); the worker that the DataLoader asks last holds the one partial batch.
   So every batch but the rank's last is full and ``len(loader)`` is exact: the trainer's epoch loop sees every
   sample once.
4. Each worker passes its range through a **shuffle buffer** of ``shuffle_buffer`` samples (training only), seeded
   from ``(seed, epoch, rank, worker)``: a sample enters when its turn in the stream comes, and a random one of the
   buffer goes out. The buffer runs on *positions*, from the index's counts, before any byte is read, so the
   worker knows its whole output order in advance and reads each shard once, keeping only the samples it still
   has to emit (at most about ``shuffle_buffer`` of them, as compressed bytes).
5. The DataLoader asks the workers in turn, so the loader's batch ``j`` is batch ``j // W`` of worker ``j % W``.

The order therefore depends on ``num_workers`` (and on ``batch_size``): a run resumed with another number of
workers would see other batches, and :meth:`ShardDataset.load_state_dict` refuses that. Without workers (0) and
with one, the order is the same. Per-sample randomness (temporal window, crops, flips, SpecAugment) comes from
``(seed, epoch, manifest index)``, exactly as in ``AVDataset``, so it does not depend on the order or the workers.

**Mid-epoch resume.** Because the order is known in advance, resuming at batch ``k`` of epoch ``e`` only needs
``(e, k)``: :meth:`ShardDataset.fast_forward` (or ``load_state_dict(state_dict(k))``) makes the next iteration of
epoch ``e`` start at batch ``k``; every worker drops the outputs it produced before ``k`` from its plan and opens
only the shards holding what is left (the samples still in the shuffle buffer at ``k`` included). Nothing skipped
is decompressed or transformed. With ``placeholders=True`` the skipped batches still come out, as empty batches of
skip markers (``batch_size == 0`` after :func:`~avformer.data.dataset.collate`): that is the form the trainer's
resume expects, since it re-reads and drops the batches already trained. Without calling ``fast_forward`` the
trainer's resume also works, but decodes the dropped batches.

Decided where the issue was silent:

- ``--clip-seconds S`` stores the centre ``S`` seconds of each row's window (the eval window of ``AVDataset``);
  without it the whole row window is stored and training takes a random window of ``cfg.window_seconds`` inside
  what was stored, as ``AVDataset`` does inside the file.
- Stored frames at ``fps`` F are re-gridded to the config's fps f by picking, for the grid time ``s + i / f``, the
  stored frame shown at that time (``floor(t * F)``). With F == f (the intended use) this is exact.
- A DataConfig whose audio rate differs from the stored one is an error (no resampling at read time); another fps
  or a larger ``short_side`` than stored is a warning.
- Rank and world size come from the constructor, else from ``torch.distributed`` when it is initialised at
  construction (inside DataLoader workers the process group is not usable, so it is read once, up front).
- A sample that cannot be parsed (corrupt member) becomes a skip marker with its reason, like a bad file in
  ``AVDataset``; a shard that cannot be opened or holds fewer samples than the index says raises (a broken dataset,
  not a broken file). Opening an http(s) URL is retried 3 times; a connection that drops mid-shard raises.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import math
import multiprocessing as mp
import os
import posixpath
import random
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from avformer.data.dataset import _SKIP, DataConfig, WindowTransform, _stack_views, collate, worker_init
from avformer.data.manifest import Manifest, ManifestRow
from avformer.data.media import MediaError, decode_clip
from avformer.data.video import random_clip_window, uniform_clip_windows

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "PrepareConfig",
    "ShardDataset",
    "ShardIndex",
    "ShardInfo",
    "StoredSample",
    "WorkerPlan",
    "count_samples",
    "epoch_plan",
    "iter_shard",
    "load_index",
    "make_shard_loader",
    "read_sample",
    "write_shards",
]

log = logging.getLogger(__name__)

FORMAT = "avformer-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SHARD_PATTERN = "shard-{:06d}.tar"
META_EXT = "json"
VIDEO_EXT = "video.npy.gz"
VIDEO_EXT_RAW = "video.npy"  # video_compression="none"
AUDIO_EXT = "audio.npy"
_KEY_DIGITS = 8
_GZIP_LEVEL = 1  # 10 % larger than level 6 and 3x faster to write; reading speed is the same
_EPS = 1e-6  # seconds / frames: tolerance when mapping grid times to stored frames (as media.py)
_OPEN_RETRIES = 3
_TMP_SUFFIX = ".tmp"


# --------------------------------------------------------------------------------------------------------------
# index


@dataclass(frozen=True)
class ShardInfo:
    """One shard: where it is, how many samples it holds, its size in bytes (None when unknown)."""

    url: str
    samples: int
    bytes: int | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(urllib.parse.urlparse(self.url).path) if "://" in self.url else Path(self.url).name


@dataclass
class ShardIndex:
    """The contents of ``index.json`` with shard locations resolved (see the module docstring).

    Attributes:
        shards: in write order.
        classes: class names in label-index order.
        multilabel: labels are multi-hot.
        decode: the settings frames and audio were stored with (``fps``, ``size``, ``sample_rate``, ...).
        failed: rows that could not be written: ``{"index", "id", "path", "reason"}`` each.
        warnings: rows written with decode warnings: ``{"index", "id", "warnings"}`` each.
        source: where the index was read from ('' for one built in memory).
        extra: other top-level keys, kept as they are.
    """

    shards: list[ShardInfo]
    classes: list[str]
    multilabel: bool = False
    decode: dict[str, Any] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "num_samples": self.num_samples,
            "num_failed": len(self.failed),
            "shards": [{"url": s.name, "samples": s.samples, "bytes": s.bytes} for s in self.shards],
            "classes": list(self.classes),
            "multilabel": self.multilabel,
            "decode": self.decode,
            **self.extra,
            "failed": self.failed,
            "warnings": self.warnings,
        }


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _local_path(url: str) -> str:
    if url.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return url


def _open(url: str, timeout_s: float) -> BinaryIO:
    """A binary stream over a local path, a ``file://`` URL or an http(s) URL (opening retried for http)."""
    if not _is_remote(url):
        return open(_local_path(url), "rb")
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"{url}: unsupported URL scheme {scheme!r} (local paths, file://, http:// and https://)")
    last: Exception | None = None
    for attempt in range(_OPEN_RETRIES):
        try:
            return urllib.request.urlopen(url, timeout=timeout_s)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500 and e.code not in (408, 429):  # the answer will not change
                raise OSError(f"{url}: HTTP {e.code} {e.reason}") from e
            last = e
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.2 * 2**attempt)
    raise OSError(f"{url}: cannot open after {_OPEN_RETRIES} tries: {last}")


def load_index(source: str | os.PathLike[str], *, timeout_s: float = 60.0) -> ShardIndex:
    """Read ``index.json`` from a shard directory, the file itself, or a URL (of the file or its folder).

    Shard names in the index are relative to the index's location; they come back resolved (paths or URLs).

    Raises:
        FileNotFoundError: no index at a local location (e.g. an unfinished ``prepare``).
        ValueError: not an avformer shard index, or a newer format version.
    """
    src = os.fspath(source)
    resolve: Callable[[str], str]
    if _is_remote(src):
        url = src if src.endswith(".json") else src.rstrip("/") + "/" + INDEX_NAME
        with _open(url, timeout_s) as f:
            text = f.read().decode("utf-8")
        where = url

        def resolve(u: str) -> str:
            return urllib.parse.urljoin(url, u)
    else:
        path = Path(_local_path(src))
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no shard index (`avformer prepare` writes {INDEX_NAME} last; "
                "a folder without it is unfinished)"
            )
        text = path.read_text(encoding="utf-8")
        where = str(path)
        base = path.parent

        def resolve(u: str) -> str:
            return u if "://" in u or os.path.isabs(u) else str(base / u)

    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{where}: not an avformer shard index (format {data.get('format')!r})")
    if int(data.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{where}: shard format version {data['version']} is newer than this avformer's {FORMAT_VERSION}"
        )
    known = {"format", "version", "num_samples", "num_failed", "shards", "classes", "multilabel", "decode"}
    known |= {"failed", "warnings"}
    return ShardIndex(
        shards=[ShardInfo(resolve(s["url"]), int(s["samples"]), s.get("bytes")) for s in data["shards"]],
        classes=list(data.get("classes", [])),
        multilabel=bool(data.get("multilabel", False)),
        decode=dict(data.get("decode", {})),
        failed=list(data.get("failed", [])),
        warnings=list(data.get("warnings", [])),
        source=where,
        extra={k: v for k, v in data.items() if k not in known},
    )


# --------------------------------------------------------------------------------------------------------------
# reading tar shards


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset's rule: ``dir/abc.video.npy.gz`` -> (``dir/abc``, ``video.npy.gz``)."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext


def iter_shard(
    url: str, wanted: Callable[[int], bool] | None = None, *, timeout_s: float = 60.0
) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """The samples of one shard, in order: ``(position, key, {ext: bytes})``.

    Args:
        url: local path, ``file://`` or http(s) URL.
        wanted: ``wanted(position)``; the members of other samples are not read (seeked over in local files,
            read through and dropped in streams). None reads everything.
        timeout_s: socket timeout for URLs.
    """
    with _open(url, timeout_s) as f, tarfile.open(fileobj=f, mode="r:" if f.seekable() else "r|") as tf:
        pos, key, want = -1, None, False
        members: dict[str, bytes] = {}
        for ti in tf:
            if not ti.isfile():
                continue
            k, ext = _split_name(ti.name)
            if k != key:
                if key is not None and want:
                    yield pos, key, members
                pos, key, members = pos + 1, k, {}
                want = wanted is None or wanted(pos)
            if want:
                data = tf.extractfile(ti)
                assert data is not None
                members[ext] = data.read()
        if key is not None and want:
            yield pos, key, members


def count_samples(url: str, *, timeout_s: float = 60.0) -> int:
    """Number of samples in a shard (reads the tar headers; a stream is read through)."""
    n = 0
    with _open(url, timeout_s) as f, tarfile.open(fileobj=f, mode="r:" if f.seekable() else "r|") as tf:
        key = None
        for ti in tf:
            if ti.isfile() and (k := _split_name(ti.name)[0]) != key:
                key, n = k, n + 1
    return n


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@dataclass
class StoredSample:
    """One sample as stored: its JSON and arrays (``video`` (T, H, W, 3) uint8, ``audio`` (S,) float16)."""

    key: str
    meta: dict[str, Any]
    video: np.ndarray | None
    audio: np.ndarray | None


def read_sample(key: str, members: dict[str, bytes], *, video: bool = True, audio: bool = True) -> StoredSample:
    """Parse one sample's members (from :func:`iter_shard`); ``video``/``audio`` False leave them undecoded."""
    meta = json.loads(members[META_EXT].decode("utf-8"))
    v = None
    if video and meta.get("has_video"):
        v = _npy(gzip.decompress(members[VIDEO_EXT]) if VIDEO_EXT in members else members[VIDEO_EXT_RAW])
    a = _npy(members[AUDIO_EXT]) if audio and meta.get("has_audio") else None
    return StoredSample(key, meta, v, a)


# --------------------------------------------------------------------------------------------------------------
# writing (avformer prepare)


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
        audio_dtype: ``"float16"`` (half the size) or ``"float32"`` (bit-exact features; see the module docstring).
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
    if has_audio:
        members.append((f"{key}.{AUDIO_EXT}", _npy_bytes(clip.audio.astype(cfg.audio_dtype))))
    res.members, res.warnings = members, list(clip.warnings)
    return res


def _prepare_worker_init() -> None:
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


# --------------------------------------------------------------------------------------------------------------
# epoch plan


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share of one epoch.

    Attributes:
        shards: shard indices (into the index's list) overlapping the worker's input range, in reading order.
        outputs: the worker's samples in the order it yields them, as ``(shard index, position in shard)``.
    """

    shards: list[int]
    outputs: list[tuple[int, int]]


def _split_even(total: int, parts: int, part: int) -> tuple[int, int]:
    """Contiguous range ``part`` of ``parts`` near-equal ranges of ``range(total)`` (the first ones 1 longer)."""
    q, r = divmod(total, parts)
    start = part * q + min(part, r)
    return start, start + q + (part < r)


def _worker_sizes(n: int, batch_size: int, num_workers: int) -> list[int]:
    """Samples per worker: whole batches dealt round-robin; the worker asked last holds the partial one."""
    nb = -(-n // batch_size)
    if nb == 0:
        return [0] * num_workers
    last, deficit = (nb - 1) % num_workers, nb * batch_size - n
    return [
        (nb // num_workers + (w < nb % num_workers)) * batch_size - (deficit if w == last else 0)
        for w in range(num_workers)
    ]


def _shuffle_buffer(n: int, size: int, rng: random.Random) -> list[int]:
    """Output order of a shuffle buffer of ``size`` over the inputs ``0 .. n-1``.

    Inputs fill the buffer; once it is full each new input replaces a uniformly chosen buffered one, which is
    emitted; at the end the rest of the buffer comes out shuffled. Output ``t`` is an input ``<= t + size``.
    """
    out: list[int] = []
    buf: list[int] = []
    for p in range(n):
        if len(buf) < size:
            buf.append(p)
            continue
        j = rng.randrange(size)
        out.append(buf[j])
        buf[j] = p
    rng.shuffle(buf)
    out.extend(buf)
    return out


def epoch_plan(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    shuffle_buffer: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
) -> WorkerPlan:
    """What one DataLoader worker of one rank reads in one epoch, and in which order (module docstring, steps 1-4).

    Args:
        counts: samples per shard, in index order.
        seed, epoch: the order's seed.
        shuffle: shuffle the shard order and pass samples through the shuffle buffer (training).
        shuffle_buffer: buffer size in samples (<= 1: no buffer).
        batch_size: the DataLoader's batch size (the unit dealt to workers).
        rank, world_size: this process among the distributed ones.
        worker, num_workers: this DataLoader worker (num_workers 0 and 1 are the same).
    """
    num_workers = max(1, num_workers)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} outside [0, {num_workers})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(counts)))
    if shuffle:
        random.Random(f"avformer-shards:{seed}:{epoch}").shuffle(order)
    ra, rb = _split_even(sum(counts), world_size, rank)
    sizes = _worker_sizes(rb - ra, batch_size, num_workers)
    wa = ra + sum(sizes[:worker])
    wb = wa + sizes[worker]
    inputs: list[tuple[int, int]] = []
    shards: list[int] = []
    offset = 0
    for s in order:
        lo, hi = max(wa, offset), min(wb, offset + counts[s])
        if lo < hi:
            shards.append(s)
            inputs.extend((s, m) for m in range(lo - offset, hi - offset))
        offset += counts[s]
        if offset >= wb:
            break
    if shuffle and shuffle_buffer > 1 and len(inputs) > 1:
        rng = random.Random(f"avformer-shuffle-buffer:{seed}:{epoch}:{rank}:{worker}")
        return WorkerPlan(shards, [inputs[p] for p in _shuffle_buffer(len(inputs), shuffle_buffer, rng)])
    return WorkerPlan(shards, inputs)


def _batches_before(batches: int, worker: int, num_workers: int) -> int:
    """How many of the loader's first ``batches`` batches came from ``worker`` (the loader asks in turn)."""
    return max(0, -(-(batches - worker) // num_workers))


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

    See the module docstring for how the order of an epoch is defined, and for resuming mid-epoch. Build the loader
    with :func:`make_shard_loader`, which takes the batch size from here (the order is defined per batch).

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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if cfg.views.active:
            raise ValueError(
                "data.views (several views, audio offsets) are read from the media files; the shard reader does not "
                "support them yet: train from the manifest (train_manifest) instead"
            )
        if isinstance(source, (str, os.PathLike)):
            self.index = load_index(source, timeout_s=timeout_s)
        else:
            if classes is None:
                raise ValueError("a list of shards has no class list: pass classes= (or [] for unlabeled data)")
            urls = [os.fspath(s) for s in source]
            self.index = ShardIndex([ShardInfo(u, count_samples(u, timeout_s=timeout_s)) for u in urls], [])
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
        """Read the shards in order, keeping what ``outputs`` still needs, and yield samples in ``outputs`` order."""
        needed: dict[int, set[int]] = {}
        for s, m in outputs:
            needed.setdefault(s, set()).add(m)
        pending: dict[tuple[int, int], tuple[str, dict[str, bytes]]] = {}
        t = 0
        for s in shard_order:
            want = needed.get(s)
            if not want:
                continue
            remaining = set(want)
            shard = self.index.shards[s]
            for m, key, members in iter_shard(shard.url, want.__contains__, timeout_s=self.timeout_s):
                pending[(s, m)] = (key, members)
                remaining.discard(m)
                while t < len(outputs) and outputs[t] in pending:
                    yield self._sample(*pending.pop(outputs[t]), epoch)
                    t += 1
                if not remaining:
                    break
            if remaining:
                raise RuntimeError(
                    f"{shard.url}: holds fewer samples than the index says ({shard.samples}); "
                    f"position {min(remaining)} is missing"
                )
        if t != len(outputs):  # cannot happen when every shard holds what the index says
            raise RuntimeError(f"shard stream ended with {len(outputs) - t} samples not yielded")

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
            index = int(stored.meta["index"])
        except (KeyError, ValueError, OSError, EOFError, zlib.error) as e:
            return {_SKIP: True, "id": key, "index": -1, "reason": f"corrupt shard sample {key}: {type(e).__name__}"}
        meta = stored.meta
        try:
            views = self._views(stored, self._generator(index, epoch))
        except MediaError as e:
            return {_SKIP: True, "id": meta["id"], "index": index, "reason": e.reason}
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            return {_SKIP: True, "id": meta["id"], "index": index, "reason": f"{type(e).__name__}: {e}"}
        sample = views[0] if len(views) == 1 else {k: _stack_views([v[k] for v in views]) for k in views[0]}
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
        if self.train:
            windows = [random_clip_window(duration, length, gen)]
        else:
            windows = uniform_clip_windows(duration, length, cfg.num_test_clips)
        return [v for s, e in windows for v in self._window_views(stored, s, e, gen)]

    def _window_views(
        self, stored: StoredSample, start: float, end: float, gen: torch.Generator
    ) -> list[dict[str, Any]]:
        # the same WindowTransform as AVDataset, on stored arrays instead of a decode (tests compare the two)
        cfg, meta = self.cfg, stored.meta
        frames = None
        if stored.video is not None:
            frames = _frames_at(stored.video, float(meta["fps"]), start, end, cfg.video.fps)
        wav = None
        if stored.audio is not None:
            a0 = round(start * int(meta["sample_rate"]))
            wav = stored.audio[a0 : a0 + max(round((end - start) * int(meta["sample_rate"])), 0)]
        return self.transform(meta["path"], frames, wav, gen)


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
