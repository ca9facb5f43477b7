"""Vetting one stored sample before and after its arrays are materialised: the budgets a shard's bytes must keep.

:func:`~avformer.data.shards.format.read_sample` applies these checks; whatever they refuse becomes a
:class:`ShardSampleError` (a ``ValueError``) whose message names the shard and the key, which
:class:`~avformer.data.shards.reader.ShardDataset` turns into a skip marker.

A shard may have been edited by someone else, so reading one never allocates what the bytes do not justify and
never crashes a training run on one bad sample. Decided where the issue was silent:

- **Array budget.** Before an array is materialised its ``.npy`` header is parsed (``numpy.lib.format``, pickles
  never allowed, a header dict of at most ``_NPY_MAX_HEADER`` bytes) and the sample is refused when the dtype is
  not the stored one (``uint8`` video of shape (T, H, W, 3); ``float16`` / ``float32`` audio of shape (S,)), when
  the declared size exceeds :data:`MAX_ARRAY_BYTES` (1 GiB), or when it differs from the bytes present
  (uncompressed, :func:`_npy`) or decompressed (gzip, :func:`_gz_npy`: the stream is inflated at most to the
  declared size plus one byte, in chunks of ``_INFLATE_CHUNK``, so a gzip bomb stops there). Before that, a tar
  member larger than its budget (:data:`MAX_ARRAY_BYTES` plus 1 MiB for arrays,
  :data:`~avformer.data.shards.format.MAX_META_BYTES` for the JSON and any other member) is not read at all
  (:func:`~avformer.data.shards.format.iter_shard`). ``prepare`` fails a row whose arrays exceed the budget instead
  of writing a sample that readers would refuse.
- **Values.** Stored audio holding NaN or Inf, or samples beyond ±:data:`MAX_AUDIO_ABS` (decoded audio lies within
  about ±1; random bytes in a float32 member give values like 1e30 that overflow the filterbank), is a bad sample
  (:func:`_audio_problem`, also used by the writer). So is a JSON member without the fields and types the reader
  uses (:func:`_meta_problem`).

:data:`MAX_ARRAY_BYTES`, :data:`MAX_AUDIO_ABS`, :data:`META_EXT` and :class:`ShardSampleError` are re-exported by
:mod:`~avformer.data.shards.format`.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from avformer.data.shards.index_checks import _clean, _is_int, _is_number, _is_str_list, _why

__all__ = ["MAX_ARRAY_BYTES", "MAX_AUDIO_ABS", "META_EXT", "ShardSampleError"]

META_EXT = "json"  # the sample's JSON member (the other member names are in avformer.data.shards.format)

MAX_ARRAY_BYTES = 1 << 30  # a stored array's declared size, video or audio (about 6 min of 256x455 frames at 8 fps)
MAX_AUDIO_ABS = 1000.0  # decoded audio lies within about +-1
_NPY_MAX_HEADER = 10000  # numpy's own limit on the header's dict (np.load's default max_header_size)
_INFLATE_CHUNK = 16 << 20
_NPY_PEEK = 1 << 16  # inflated first to read the header: magic + length + _NPY_MAX_HEADER fit in it
_VIDEO_DTYPES = (np.dtype(np.uint8),)
_AUDIO_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))


class ShardSampleError(ValueError):
    """A stored sample that cannot be used; the message names the shard and the key.

    Attributes:
        key: the sample's key.
        shard: the shard's file name ('' when unknown).
        reason: why, without the shard and key.
        meta: the sample's JSON when it parsed (None otherwise).
    """

    def __init__(self, key: str, reason: str, *, shard: str = "", meta: dict[str, Any] | None = None) -> None:
        self.key, self.shard, self.reason, self.meta = key, shard, reason, meta
        where = f"shard {_clean(shard)} key {_clean(key)}" if shard else f"key {_clean(key)}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype[Any]
    offset: int  # bytes before the data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _npy_header(data: bytes | bytearray, what: str, dtypes: tuple[np.dtype[Any], ...], ndim: int) -> _NpyHeader:
    """Parse and vet the header of a ``.npy`` (``ValueError`` saying what is wrong)."""
    f = io.BytesIO(data)
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f, max_header_size=_NPY_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f, max_header_size=_NPY_MAX_HEADER)
        else:
            raise ValueError(f".npy version {version} (1.0 and 2.0 are read)")
    except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError) as e:
        raise ValueError(f"corrupt {what} member (bad .npy header: {_why(e)[:200]})") from e
    if dtype not in dtypes:
        raise ValueError(f"{what} has dtype {dtype.str}, not {' or '.join(d.name for d in dtypes)}")
    if len(shape) != ndim or any(n < 0 for n in shape) or (ndim == 4 and shape[3] != 3):
        want = "(T, H, W, 3)" if ndim == 4 else "(S,)"
        raise ValueError(f"{what} has shape {shape}, not {want}")
    head = _NpyHeader(tuple(shape), bool(fortran), dtype, f.tell())
    if head.nbytes > MAX_ARRAY_BYTES:
        raise ValueError(
            f"{what} declares shape {shape} {dtype.name} = {head.nbytes} bytes "
            f"({head.nbytes / 2**30:.1f} GiB), over the {MAX_ARRAY_BYTES}-byte budget"
        )
    return head


def _from_buffer(buf: bytes | bytearray, head: _NpyHeader) -> np.ndarray:
    count = math.prod(head.shape)
    a = np.frombuffer(buf, dtype=head.dtype, count=count, offset=head.offset)
    return a.reshape(head.shape, order="F" if head.fortran else "C")


def _npy(data: bytes, what: str, dtypes: tuple[np.dtype[Any], ...], ndim: int) -> np.ndarray:
    """An uncompressed ``.npy`` member, after its header passed :func:`_npy_header` and its size matches."""
    head = _npy_header(data, what, dtypes, ndim)
    if len(data) - head.offset != head.nbytes:
        raise ValueError(
            f"corrupt {what} member (its header declares {head.nbytes} bytes of data, it holds "
            f"{len(data) - head.offset})"
        )
    return _from_buffer(data, head).copy()  # writable, as np.load's


def _gz_npy(data: bytes, what: str, dtypes: tuple[np.dtype[Any], ...], ndim: int) -> np.ndarray:
    """A gzip'd ``.npy`` member, inflated at most to the size its header declares (plus one byte, to notice more)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper: its CRC and length are checked at the end
    try:
        buf = bytearray(d.decompress(data, _NPY_PEEK))
        head = _npy_header(buf, what, dtypes, ndim)
        need = head.offset + head.nbytes
        while len(buf) <= need and not d.eof:  # in chunks: no second copy of a large array
            chunk = d.decompress(d.unconsumed_tail, min(_INFLATE_CHUNK, need + 1 - len(buf)))
            if not chunk and not d.unconsumed_tail:
                break  # the input ended before the gzip stream did
            buf += chunk
    except zlib.error as e:
        raise ValueError(f"corrupt {what} member ({_why(e)})") from e
    if len(buf) > need or d.unused_data:
        raise ValueError(f"corrupt {what} member (inflates to more than the {need} bytes its header declares)")
    if not d.eof:
        raise ValueError(f"corrupt {what} member (the gzip stream ends early, after {len(buf)} bytes)")
    if len(buf) < need:
        raise ValueError(f"corrupt {what} member (inflates to {len(buf)} bytes, its header declares {need})")
    return _from_buffer(buf, head)  # over the bytearray: writable, no copy


_META_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "id": ("a string", lambda x: isinstance(x, str)),
    "index": ("an integer >= 0", lambda x: _is_int(x) and x >= 0),
    "path": ("a string", lambda x: isinstance(x, str)),
    "labels": ("a list of strings", _is_str_list),
    "duration": ("a number >= 0", lambda x: _is_number(x) and x >= 0),
    "has_video": ("true or false", lambda x: isinstance(x, bool)),
    "has_audio": ("true or false", lambda x: isinstance(x, bool)),
}


def _meta_problem(meta: Any) -> str | None:
    """What keeps a sample's JSON from being usable by the reader (None: nothing)."""
    if not isinstance(meta, dict):
        return f"its {META_EXT} member is a JSON {type(meta).__name__}, not an object"
    for key, (what, ok) in _META_FIELDS.items():
        if not ok(meta.get(key)):
            return f"{META_EXT} field {key!r} is not {what}"
    if not (meta.get("text") is None or isinstance(meta["text"], str)):
        return f"{META_EXT} field 'text' is not a string or null"
    if meta["has_video"] and not (_is_number(meta.get("fps")) and meta["fps"] > 0):
        return f"{META_EXT} field 'fps' is not a positive number"
    if meta["has_audio"] and not (_is_int(meta.get("sample_rate")) and meta["sample_rate"] > 0):
        return f"{META_EXT} field 'sample_rate' is not a positive integer"
    return None


def _audio_problem(audio: np.ndarray) -> str | None:
    """What makes stored audio unusable (None: nothing): non-finite values, or values far beyond ±1."""
    finite = np.isfinite(audio)
    bad = audio.size - int(np.count_nonzero(finite))
    if bad:
        return f"audio holds {bad} non-finite values (NaN/Inf)"
    loud = int(np.count_nonzero(np.abs(audio) > MAX_AUDIO_ABS))
    if loud:
        return f"audio holds {loud} values beyond ±{MAX_AUDIO_ABS:g} (decoded audio lies within about ±1)"
    return None
