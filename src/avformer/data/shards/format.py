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

Shards and indexes are untrusted input
--------------------------------------
An index or a shard may have been edited by someone else (a shared bucket, a downloaded data set), so reading one
never reaches outside what the user named, never allocates what the bytes do not justify, and never crashes a
training run on one bad file:

- Where shards may be and how the index must be shaped: :mod:`~avformer.data.shards.index_checks`.
- The budgets and values a sample must keep (array and member sizes, audio range): :mod:`~avformer.data.shards.samples`.
- A bad sample raises :class:`ShardSampleError` (a ``ValueError``) from :func:`read_sample`, whose message names
  the shard and the key; :class:`~avformer.data.shards.reader.ShardDataset` turns it into a skip marker. A shard
  that cannot be opened, or that ends early or is corrupt mid-way, raises :class:`ShardReadError` (an ``OSError``)
  from :func:`iter_shard` with the number of samples read before; the reader turns the samples it still needed
  from that shard into skip markers.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import posixpath
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from avformer.data.shards.index_checks import (
    FORMAT,
    FORMAT_VERSION,
    _clean,
    _confine_local,
    _confine_remote,
    _read_capped,
    _Refused,
    _structure_problem,
    _why,
)
from avformer.data.shards.samples import (
    _AUDIO_DTYPES,
    _VIDEO_DTYPES,
    MAX_ARRAY_BYTES,
    MAX_AUDIO_ABS,
    META_EXT,
    ShardSampleError,
    _audio_problem,
    _gz_npy,
    _meta_problem,
    _npy,
)

__all__ = [
    "AUDIO_EXT",
    "ERROR_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "MAX_ARRAY_BYTES",
    "MAX_AUDIO_ABS",
    "MAX_INDEX_BYTES",
    "MAX_META_BYTES",
    "META_EXT",
    "SHARD_KEY",
    "SHARD_PATTERN",
    "VIDEO_EXT",
    "VIDEO_EXT_RAW",
    "ShardIndex",
    "ShardInfo",
    "ShardReadError",
    "ShardSampleError",
    "StoredSample",
    "count_samples",
    "iter_shard",
    "load_index",
    "read_sample",
]

log = logging.getLogger(__name__)

# FORMAT, FORMAT_VERSION (index_checks), META_EXT, MAX_ARRAY_BYTES and MAX_AUDIO_ABS (samples) are imported above
INDEX_NAME = "index.json"
SHARD_PATTERN = "shard-{:06d}.tar"
VIDEO_EXT = "video.npy.gz"
VIDEO_EXT_RAW = "video.npy"  # video_compression="none"
AUDIO_EXT = "audio.npy"
_ARRAY_EXTS = (VIDEO_EXT, VIDEO_EXT_RAW, AUDIO_EXT)
# keys of the dict iter_shard yields that are not members (a member's extension never holds "/")
SHARD_KEY = "/shard"  # the shard's file name (UTF-8), for messages
ERROR_KEY = "/error"  # why a member of the sample was not read (UTF-8): the sample is bad

MAX_META_BYTES = 16 << 20  # the JSON member, and any member of another extension
MAX_INDEX_BYTES = 256 << 20  # index.json (a few million failed rows)
_NPY_SLACK = 1 << 20  # an array member's budget over MAX_ARRAY_BYTES: the header, gzip's overhead
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
    """The contents of ``index.json`` with shard locations resolved (see :mod:`~avformer.data.shards.index_checks`).

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
        (:func:`count_samples`), no class list. The locations are not confined: the caller named each one."""
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


_MIN_SAMPLE_BYTES = 2048  # a stored sample is at least two tar members (JSON + one array), 1 KiB each


def _check_count(where: str, i: int, location: str, samples: int) -> None:
    """A local shard cannot hold more samples than its size allows: an index that claims so (an epoch plan of
    a billion placeholders) is refused. Remote shards are not checked (their size is unknown until read)."""
    if _is_remote(location):
        return
    try:
        size = os.path.getsize(_local_path(location))
    except OSError:
        return  # a missing shard: its samples become skipped samples when it is read
    if samples > max(1, size // _MIN_SAMPLE_BYTES):
        raise ValueError(
            f"{where}: shard {i} claims {samples} samples, more than its {size} bytes can hold "
            f"(at most {size // _MIN_SAMPLE_BYTES})"
        )


def load_index(source: str | os.PathLike[str], *, timeout_s: float = 60.0, allow_urls: bool = False) -> ShardIndex:
    """Read ``index.json`` from a shard directory, the file itself, or a URL (of the file or its folder).

    Shard names in the index are relative to the index's location; they come back resolved (local shards as
    their real paths, remote ones as URLs). The index is untrusted input: see
    :mod:`~avformer.data.shards.index_checks` for what it may name and how it must be shaped.

    Args:
        source: a shard folder, its ``index.json`` (path or ``file://`` URL), or an http(s) URL of either.
        timeout_s: socket timeout for URLs.
        allow_urls: let the index name http(s) shards anywhere, not only under its own folder (local paths
            outside the folder and other schemes stay refused). Each such URL is logged when the index is loaded.

    Raises:
        FileNotFoundError: no index at a local location (e.g. an unfinished ``prepare``).
        ValueError: (one line, naming the index) not UTF-8 JSON, not an avformer shard index, a newer format
            version, a malformed entry, or a shard location outside what the index may name.
    """
    src = os.fspath(source)
    resolve: Callable[[str], tuple[str, bool]]
    if _is_remote(src):
        url = src if src.endswith(".json") else src.rstrip("/") + "/" + INDEX_NAME
        with _open(url, timeout_s) as f:
            raw = _read_capped(f, MAX_INDEX_BYTES + 1)
        where = url

        def resolve(u: str) -> tuple[str, bool]:
            return _confine_remote(u, url, allow_urls)
    else:
        path = Path(_local_path(src))
        if path.is_dir():
            path = path / INDEX_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no shard index (`avformer prepare` writes {INDEX_NAME} last; "
                "a folder without it is unfinished)"
            )
        where = str(path)
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError(f"{where}: {path.stat().st_size} bytes, over the {MAX_INDEX_BYTES}-byte index limit")
        raw = path.read_bytes()
        base = path.parent
        folder = Path(os.path.realpath(base))

        def resolve(u: str) -> tuple[str, bool]:
            return _confine_local(u, base, folder, allow_urls)

    if len(raw) > MAX_INDEX_BYTES:
        raise ValueError(f"{where}: over the {MAX_INDEX_BYTES}-byte index limit")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not a shard index (not UTF-8 text: byte {e.start})") from e
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{where}: not a shard index (not valid JSON: {_why(e)})") from e
    problem = _structure_problem(data)
    if problem is not None:
        raise ValueError(f"{where}: not a valid avformer shard index ({problem})")

    shards: list[ShardInfo] = []
    outside: list[str] = []
    for i, s in enumerate(data["shards"]):
        try:
            location, is_outside = resolve(s["url"])
        except _Refused as e:
            raise ValueError(f"{where}: shard {i} ({_clean(repr(s['url']))}) refused: it {e}") from None
        if is_outside:
            outside.append(location)
        _check_count(where, i, location, s["samples"])
        shards.append(ShardInfo(location, s["samples"], s.get("bytes")))
    if outside:
        listed = ", ".join(_clean(u) for u in outside[:10]) + (
            f" and {len(outside) - 10} more" if len(outside) > 10 else ""
        )
        log.warning(
            "%s: %d shard URL(s) outside the index's folder, allowed by allow_urls: %s", where, len(outside), listed
        )
        if len(outside) > 10:
            log.info("%s: all shard URLs outside the index's folder: %s", where, " ".join(outside))

    known = {"format", "version", "num_samples", "num_failed", "shards", "classes", "multilabel", "decode"}
    known |= {"failed", "warnings"}
    return ShardIndex(
        shards=shards,
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


class ShardReadError(OSError):
    """A shard that cannot be opened, or that ends early / is corrupt after ``samples`` whole samples.

    Attributes:
        url: the shard.
        samples: samples read whole before the failure (0 when it could not be opened).
        opened: False when the shard could not be opened at all.
        cause: what failed, ``Type: message`` on one line.
    """

    def __init__(self, url: str, samples: int, cause: str, *, opened: bool = True) -> None:
        self.url, self.samples, self.cause, self.opened = url, samples, cause, opened
        name = ShardInfo(url, 0).name
        what = f"truncated or corrupt after {samples} samples" if opened else "cannot be opened"
        super().__init__(f"shard {_clean(name)}: {what} ({cause})")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (crosses DataLoader workers)
        return _shard_read_error, (self.url, self.samples, self.cause, self.opened)


def _shard_read_error(url: str, samples: int, cause: str, opened: bool) -> ShardReadError:
    return ShardReadError(url, samples, cause, opened=opened)


# what reading a broken or hostile tar can raise (http.client.IncompleteRead is no OSError)
_READ_ERRORS = (OSError, EOFError, tarfile.TarError, ValueError, zlib.error, http.client.HTTPException)


def _split_name(name: str) -> tuple[str, str]:
    """WebDataset's rule: ``dir/abc.video.npy.gz`` -> (``dir/abc``, ``video.npy.gz``)."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return (posixpath.join(folder, stem) if folder else stem), ext


def _member_budget(ext: str) -> int:
    return MAX_ARRAY_BYTES + _NPY_SLACK if ext in _ARRAY_EXTS else MAX_META_BYTES


def _at_end_of_archive(f: BinaryIO, offset: int) -> bool:
    """Whether the block at ``offset`` is a tar end-of-archive (zero) block."""
    f.seek(offset)
    return f.read(tarfile.BLOCKSIZE) == bytes(tarfile.BLOCKSIZE)


def iter_shard(
    url: str, wanted: Callable[[int], bool] | None = None, *, timeout_s: float = 60.0
) -> Iterator[tuple[int, str, dict[str, bytes]]]:
    """The samples of one shard, in order: ``(position, key, {ext: bytes})``.

    Besides the members, each dict holds :data:`SHARD_KEY` (the shard's file name) and, when a member was over its
    size budget and left unread, :data:`ERROR_KEY` (why); both start with ``/``, which no extension holds.
    :func:`read_sample` refuses a sample with :data:`ERROR_KEY`.

    Args:
        url: local path, ``file://`` or http(s) URL.
        wanted: ``wanted(position)``; the members of other samples are not read (seeked over in local files,
            read through and dropped in streams). None reads everything.
        timeout_s: socket timeout for URLs.

    Raises:
        ShardReadError: the shard cannot be opened, or ends early / is corrupt (after the samples yielded so far).
    """
    name = ShardInfo(url, 0).name.encode("utf-8", "replace")
    try:
        f = _open(url, timeout_s)
    except _READ_ERRORS as e:
        raise ShardReadError(url, 0, _why(e), opened=False) from e
    pos, key, want = -1, None, False
    try:
        with f, tarfile.open(fileobj=f, mode="r:" if f.seekable() else "r|") as tf:
            members: dict[str, bytes] = {}
            for ti in tf:
                tf.members = []  # tarfile keeps every header read: a tar of tiny members would fill memory
                if not ti.isfile():
                    continue
                k, ext = _split_name(ti.name)
                if k != key:
                    if key is not None and want:
                        yield pos, key, members
                    pos, key, members = pos + 1, k, {SHARD_KEY: name}
                    want = wanted is None or wanted(pos)
                if not want:
                    continue
                if ti.size > _member_budget(ext):
                    why = f"member {_clean(ti.name)} holds {ti.size} bytes, over its {_member_budget(ext)}-byte budget"
                    members[ERROR_KEY] = why.encode("utf-8")
                    continue
                data = tf.extractfile(ti)
                assert data is not None
                members[ext] = data.read()
            # tarfile ends quietly at a cut or corrupt header past the first one: only a zero block is the end
            if f.seekable() and not _at_end_of_archive(f, tf.offset):
                raise tarfile.ReadError(f"no end-of-archive block at byte {tf.offset} (cut short or corrupt)")
            if key is not None and want:
                yield pos, key, members
    except _READ_ERRORS as e:
        raise ShardReadError(url, max(pos, 0), _why(e)) from e


def count_samples(url: str, *, timeout_s: float = 60.0) -> int:
    """Number of samples in a shard (reads the tar headers; a stream is read through).

    Raises:
        OSError: the shard cannot be opened.
        ValueError: it is not a readable tar file.
    """
    n = 0
    with _open(url, timeout_s) as f:
        try:
            with tarfile.open(fileobj=f, mode="r:" if f.seekable() else "r|") as tf:
                key = None
                for ti in tf:
                    tf.members = []  # as in iter_shard
                    if ti.isfile() and (k := _split_name(ti.name)[0]) != key:
                        key, n = k, n + 1
                if f.seekable() and not _at_end_of_archive(f, tf.offset):
                    raise tarfile.ReadError(f"no end-of-archive block at byte {tf.offset} (cut short or corrupt)")
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise ValueError(f"{url}: not a readable tar shard ({_why(e)})") from e
    return n


# -- one sample --------------------------------------------------------------------------------------------------


@dataclass
class StoredSample:
    """One sample as stored: its JSON and arrays (``video`` (T, H, W, 3) uint8, ``audio`` (S,) float16)."""

    key: str
    meta: dict[str, Any]
    video: np.ndarray | None
    audio: np.ndarray | None


def read_sample(key: str, members: dict[str, bytes], *, video: bool = True, audio: bool = True) -> StoredSample:
    """Parse one sample's members (from :func:`iter_shard`); ``video``/``audio`` False leave them undecoded.

    Every array is vetted before it is allocated (dtype, shape, :data:`MAX_ARRAY_BYTES`, the bytes present) and
    audio after (finite, within ±:data:`MAX_AUDIO_ABS`); see :mod:`~avformer.data.shards.samples`.

    Raises:
        ShardSampleError: the sample cannot be used (the message names the shard, when known, and the key).
    """
    shard = members.get(SHARD_KEY, b"").decode("utf-8", "replace")
    meta: dict[str, Any] | None = None

    def bad(reason: str) -> ShardSampleError:
        return ShardSampleError(key, reason, shard=shard, meta=meta)

    if ERROR_KEY in members:
        raise bad(members[ERROR_KEY].decode("utf-8", "replace"))
    if META_EXT not in members:
        raise bad(f"no {META_EXT} member")
    try:
        parsed = json.loads(members[META_EXT].decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise bad(f"corrupt {META_EXT} member ({_why(e)[:200]})") from e
    problem = _meta_problem(parsed)
    if problem is not None:
        raise bad(problem)
    meta = parsed
    v = a = None
    try:
        if video and meta["has_video"]:
            if VIDEO_EXT in members:
                v = _gz_npy(members[VIDEO_EXT], "video", _VIDEO_DTYPES, 4)
            elif VIDEO_EXT_RAW in members:
                v = _npy(members[VIDEO_EXT_RAW], "video", _VIDEO_DTYPES, 4)
            else:
                raise ValueError(f"has_video is true but there is no {VIDEO_EXT} or {VIDEO_EXT_RAW} member")
        if audio and meta["has_audio"]:
            if AUDIO_EXT not in members:
                raise ValueError(f"has_audio is true but there is no {AUDIO_EXT} member")
            a = _npy(members[AUDIO_EXT], "audio", _AUDIO_DTYPES, 1)
            problem = _audio_problem(a)
            if problem is not None:
                raise ValueError(problem)
    except ValueError as e:
        raise bad(str(e)) from e
    return StoredSample(key, meta, v, a)
