"""The shard format: its constants, the index (``index.json``) and reading a shard's samples back.

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
"""

from __future__ import annotations

import gzip
import io
import json
import os
import posixpath
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "AUDIO_EXT",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "META_EXT",
    "SHARD_PATTERN",
    "VIDEO_EXT",
    "VIDEO_EXT_RAW",
    "ShardIndex",
    "ShardInfo",
    "StoredSample",
    "count_samples",
    "iter_shard",
    "load_index",
    "read_sample",
]

FORMAT = "avformer-shards"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
SHARD_PATTERN = "shard-{:06d}.tar"
META_EXT = "json"
VIDEO_EXT = "video.npy.gz"
VIDEO_EXT_RAW = "video.npy"  # video_compression="none"
AUDIO_EXT = "audio.npy"
_OPEN_RETRIES = 3


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

    @classmethod
    def from_urls(cls, urls: Sequence[str], *, timeout_s: float = 60.0) -> ShardIndex:
        """The index of shards that come without ``index.json``: their sample counts read from the tar headers
        (:func:`count_samples`), no class list."""
        return cls([ShardInfo(u, count_samples(u, timeout_s=timeout_s)) for u in urls], [])

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
