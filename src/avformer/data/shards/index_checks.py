"""Checks on an untrusted shard index: where its shards may be and how ``index.json`` must be shaped.

:func:`~avformer.data.shards.format.load_index` reads the index and applies these checks; a shard location or a
structure they refuse becomes a one-line ``ValueError`` naming the index (and the entry).

An index may have been edited by someone else (a shared bucket, a downloaded data set), so reading one never
reaches outside what the user named. Decided where the issue was silent:

- **Where shards may be.** The shard locations of an index are confined to the index's folder. For a local index
  (a path or a ``file://`` URL), each shard path, as written with ``..`` folded, must lie inside the folder of
  ``index.json``; absolute paths and ``file://`` URLs elsewhere are refused (:func:`_confine_local`). Symlinks
  in the folder are followed (they are the folder owner's choice, not the index's: a shard symlinked from a
  download cache, such as Hugging Face's ``snapshots/`` -> ``blobs/``, reads as before). For an index fetched
  by http(s) (the URL the user typed counts as their permission),
  shard URLs must have the index URL's scheme, host, port and credentials and lie under its folder (the path up to
  its last ``/``), with no ``..`` segment even percent-encoded (:func:`_confine_remote`). Anything else, and every
  scheme but http(s) and ``file``, is refused with a one-line ``ValueError`` naming the index and the entry.
  ``allow_urls=True`` lets http(s) shard URLs point anywhere (never other schemes, never local paths outside the
  folder); those URLs are logged once, as a warning, when the index is loaded. A list of shards passed directly
  (:meth:`~avformer.data.shards.format.ShardIndex.from_urls`) is not confined: the caller named each one.
- **The index itself** must be UTF-8 JSON of at most :data:`~avformer.data.shards.format.MAX_INDEX_BYTES` (read
  in pieces, :func:`_read_capped`) with the structure the writer produces (``shards`` a list of
  ``{"url": str, "samples": int >= 0, "bytes": int >= 0 | null}``, ``classes`` a list of strings, ``failed`` rows
  ``{"index": int, "id": str, "path": str, "reason": str}``, ...; :func:`_structure_problem`); anything else is a
  one-line ``ValueError`` naming the file, never a ``KeyError`` / ``TypeError``.

It also holds what the other shard modules share for untrusted input: the format's name and version
(:data:`FORMAT`, :data:`FORMAT_VERSION`, re-exported by :mod:`~avformer.data.shards.format`), the JSON type tests
(:func:`_is_int`, :func:`_is_number`, :func:`_is_str_list`) and one-line messages (:func:`_clean`, :func:`_why`).
"""

from __future__ import annotations

import math
import os
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["FORMAT", "FORMAT_VERSION"]

FORMAT = "avformer-shards"
FORMAT_VERSION = 1


# -- messages ----------------------------------------------------------------------------------------------------


def _clean(text: str, limit: int = 200) -> str:
    """``text`` fit for a one-line message: as it is when short and printable, else its (cut) ``repr``."""
    if len(text) <= limit and text.isprintable():
        return text
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _why(e: BaseException) -> str:
    """``Type: message`` of an exception on one line."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


# -- where shards may be ----------------------------------------------------------------------------------------


class _Refused(Exception):
    """A shard location outside what the index may name (the message says why)."""


_ALLOW_HINT = "allow_urls=True allows http(s) shard URLs anywhere"


def _confine_local(url: str, base: Path, folder: Path, allow_urls: bool) -> tuple[str, bool]:
    """A shard location of a local index -> (what to open, whether it is an http(s) URL outside the folder).

    ``base`` is the index's folder as named (relative entries are joined to it; ``folder``, the same resolved, is
    not used for the check, which is lexical: see the module docstring).
    """
    if "://" in url:
        parsed = urllib.parse.urlparse(url)
        scheme = parsed.scheme.lower()
        if scheme in ("http", "https"):
            if allow_urls:
                return url, True
            raise _Refused(f"is an http(s) URL; a local index names files in its folder ({_ALLOW_HINT})")
        if scheme != "file":
            raise _Refused(f"has the unsupported URL scheme {_clean(scheme)!r}")
        if parsed.netloc not in ("", "localhost"):
            raise _Refused(f"is a file URL on another host ({_clean(parsed.netloc)!r})")
        path = Path(urllib.request.url2pathname(parsed.path))
    else:
        path = Path(url)
    # confined as written (``..`` folded, symlinks not followed): the index is untrusted, the folder's own files
    # (a shard symlinked from a download cache, e.g. Hugging Face's snapshots/ -> blobs/) are the user's
    home = Path(os.path.abspath(base))
    where = Path(os.path.abspath(path if path.is_absolute() else base / path))
    if where == home or not where.is_relative_to(home):
        raise _Refused(f"resolves to {_clean(str(where))}, outside the index's folder {home}")
    return str(where), False


def _origin(parts: urllib.parse.ParseResult) -> tuple[str, str | None, int | None, str | None, str | None]:
    """Scheme, host, port (the scheme's default when absent), user and password of a URL."""
    scheme = parts.scheme.lower()
    port = parts.port  # ValueError: not a port number
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    host = parts.hostname.lower() if parts.hostname else None
    return scheme, host, port, parts.username, parts.password


def _confine_remote(url: str, index_url: str, allow_urls: bool) -> tuple[str, bool]:
    """A shard location of an index fetched by http(s) -> (its URL, whether it lies outside the index's folder)."""
    full = urllib.parse.urljoin(index_url, url)
    parts, home = urllib.parse.urlparse(full), urllib.parse.urlparse(index_url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        what = f"a {_clean(scheme)} location" if scheme else "a location without a scheme"
        raise _Refused(f"is {what}; an index fetched by {home.scheme} names only http(s) shards")
    try:
        same_origin = _origin(parts) == _origin(home)
    except ValueError as e:
        raise _Refused(f"is not a valid URL ({_why(e)})") from e
    folder = urllib.parse.unquote(home.path[: home.path.rfind("/") + 1] or "/")
    path = urllib.parse.unquote(parts.path)
    segments = path.split("/")
    inside = path.startswith(folder) and "\\" not in path and ".." not in segments and "." not in segments
    if same_origin and inside:
        return full, False
    if allow_urls:
        return full, True
    where = urllib.parse.urlunparse(home._replace(path=folder, params="", query="", fragment=""))
    raise _Refused(f"is outside the index URL's folder {where} ({_ALLOW_HINT})")


# -- structure ---------------------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_str_list(x: Any) -> bool:
    return isinstance(x, list) and all(isinstance(c, str) for c in x)


_DECODE_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "fps": ("a positive number or null", lambda x: x is None or (_is_number(x) and x > 0)),
    "size": ("a positive integer or null", lambda x: x is None or (_is_int(x) and x > 0)),
    "sample_rate": ("a positive integer or null", lambda x: x is None or (_is_int(x) and x > 0)),
    "clip_seconds": ("a positive number or null", lambda x: x is None or (_is_number(x) and x > 0)),
    "video": ("true or false", lambda x: isinstance(x, bool)),
    "audio": ("true or false", lambda x: isinstance(x, bool)),
}


def _check_rows(rows: Any, name: str, fields: dict[str, tuple[str, Callable[[Any], bool]]]) -> str | None:
    """What is wrong with the ``failed`` / ``warnings`` list of an index (None: nothing)."""
    if not isinstance(rows, list):
        return f"{name!r} is not a list"
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"{name}[{i}] is not an object"
        for key, (what, ok) in fields.items():
            if not ok(row.get(key)):
                return f"{name}[{i}].{key} is not {what}"
    return None


_FAILED_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "index": ("an integer", _is_int),
    "id": ("a string", lambda x: isinstance(x, str)),
    "path": ("a string", lambda x: isinstance(x, str)),
    "reason": ("a string", lambda x: isinstance(x, str)),
}
_WARNING_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "index": ("an integer", _is_int),
    "id": ("a string", lambda x: isinstance(x, str)),
    "warnings": ("a list of strings", _is_str_list),
}


def _structure_problem(data: Any) -> str | None:
    """What keeps ``data`` (parsed ``index.json``) from being a version-1 index (None: nothing)."""
    if not isinstance(data, dict):
        return f"the top level is a JSON {type(data).__name__}, not an object"
    if data.get("format") != FORMAT:
        return f"format is {repr(data.get('format'))[:60]}, not {FORMAT!r}"
    version = data.get("version", 0)
    if not _is_int(version):
        return "version is not an integer"
    if version > FORMAT_VERSION:
        return f"shard format version {version} is newer than this avformer's {FORMAT_VERSION}"
    shards = data.get("shards")
    if not isinstance(shards, list):
        return "'shards' is missing or not a list"
    for i, s in enumerate(shards):
        if not isinstance(s, dict):
            return f"shards[{i}] is not an object"
        url = s.get("url")
        if not isinstance(url, str) or not url or any(ord(c) < 32 or ord(c) == 127 for c in url):
            return f"shards[{i}].url is not a non-empty string without control characters"
        if not (_is_int(s.get("samples")) and s["samples"] >= 0):
            return f"shards[{i}].samples is not an integer >= 0"
        if not (s.get("bytes") is None or (_is_int(s["bytes"]) and s["bytes"] >= 0)):
            return f"shards[{i}].bytes is not an integer >= 0 or null"
    if not _is_str_list(data.get("classes", [])):
        return "'classes' is not a list of strings"
    if not isinstance(data.get("multilabel", False), bool):
        return "'multilabel' is not true or false"
    decode = data.get("decode", {})
    if not isinstance(decode, dict):
        return "'decode' is not an object"
    for key, (what, ok) in _DECODE_TYPES.items():
        if key in decode and not ok(decode[key]):
            return f"decode.{key} is not {what}"
    return _check_rows(data.get("failed", []), "failed", _FAILED_FIELDS) or _check_rows(
        data.get("warnings", []), "warnings", _WARNING_FIELDS
    )


def _read_capped(f: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``f``, read in pieces (``HTTPResponse.read(n)`` allocates ``n`` up front)."""
    out = bytearray()
    while len(out) < limit:
        piece = f.read(min(1 << 20, limit - len(out)))
        if not piece:
            break
        out += piece
    return bytes(out)
