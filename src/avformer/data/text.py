"""Where a clip's text comes from: a manifest ``text`` column, a sidecar ``.srt`` / ``.txt`` file, or a subtitle stream.

Text is optional per clip (VATT's video-text loss masks clips without it). :func:`resolve_text` picks, in order:

1. the row's ``text`` (the manifest column); several captions may be separated by newlines or ``" | "``;
2. a sidecar file with the media file's stem: ``clip.srt`` (each cue one segment, cues outside the row's
   ``start``/``end`` window dropped) or ``clip.txt`` (each non-empty line one segment);
3. the first subtitle stream of the container (``mov_text``, SRT, ASS... decoded by FFmpeg), each event one segment,
   restricted to the row window like SRT cues.

Segments are joined with newlines, the form that :func:`avformer.data.tokenize.split_segments` splits again.
:func:`with_resolved_text` does this once for a whole manifest before training (a cheap pass: subtitle streams are
demuxed without decoding any video).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import av

from avformer.data.manifest import Manifest, ManifestRow

__all__ = ["parse_srt", "resolve_text", "subtitle_stream_text", "with_resolved_text"]

_TIME = re.compile(r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})")
_TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")  # HTML-like tags and ASS override blocks


def _seconds(m: re.Match[str]) -> float:
    h, mi, s, ms = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _in_window(t0: float, t1: float, start: float | None, end: float | None) -> bool:
    return (end is None or t0 < end) and (start is None or t1 > start)


def _clean(text: str) -> str:
    return " ".join(_TAG.sub(" ", text.replace("\\N", " ")).split())


def parse_srt(text: str, start: float | None = None, end: float | None = None) -> list[str]:
    """Cue texts of an SRT document that overlap ``[start, end)`` (seconds; None = unbounded), tags removed.

    A cue's lines are joined into one segment; malformed blocks (no ``-->`` timing line) are skipped.
    """
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\ufeff", "").strip()):
        lines = block.strip().split("\n")
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue
        times = _TIME.findall(lines[timing])
        if len(times) >= 2:
            t0 = _seconds(_TIME.search(lines[timing]))  # type: ignore[arg-type]
            t1 = _seconds(list(_TIME.finditer(lines[timing]))[1])
            if not _in_window(t0, t1, start, end):
                continue
        seg = _clean(" ".join(lines[timing + 1 :]))
        if seg:
            out.append(seg)
    return out


def subtitle_stream_text(path: str, start: float | None = None, end: float | None = None) -> list[str]:
    """Event texts of the first subtitle stream of ``path`` overlapping ``[start, end)``; [] when there is none.

    Raises nothing for a file that cannot be opened or decoded: it simply has no usable text.
    """
    try:
        with av.open(path) as container:
            subs = [s for s in container.streams if s.type == "subtitle"]
            if not subs:
                return []
            stream = subs[0]
            tb = float(stream.time_base) if stream.time_base is not None else 0.0
            out = []
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                t0 = packet.pts * tb
                t1 = t0 + (packet.duration or 0) * tb
                if not _in_window(t0, max(t1, t0 + 1e-6), start, end):
                    continue
                for sub in packet.decode():
                    for event in sub if hasattr(sub, "__iter__") else [sub]:
                        raw = getattr(event, "dialogue", None) or getattr(event, "text", None) or b""
                        text = _clean(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
                        if text:
                            out.append(text)
            return out
    except (av.FFmpegError, OSError, ValueError):
        return []


def resolve_text(row: ManifestRow, *, sidecar: bool = True, subtitles: bool = True) -> str | None:
    """The clip's text segments joined by newlines (see the module docstring for the order), or None."""
    if row.text:
        return row.text
    if "://" not in row.path:
        media = Path(row.path)
        if sidecar:
            srt, txt = media.with_suffix(".srt"), media.with_suffix(".txt")
            if srt.is_file():
                segs = parse_srt(srt.read_text(encoding="utf-8", errors="replace"), row.start, row.end)
                if segs:
                    return "\n".join(segs)
            if txt.is_file():
                lines = [_clean(line) for line in txt.read_text(encoding="utf-8", errors="replace").splitlines()]
                if any(lines):
                    return "\n".join(line for line in lines if line)
        if subtitles and media.is_file():
            segs = subtitle_stream_text(str(media), row.start, row.end)
            if segs:
                return "\n".join(segs)
    return None


def with_resolved_text(manifest: Manifest, *, sidecar: bool = True, subtitles: bool = True) -> Manifest:
    """A copy of ``manifest`` whose rows carry the text :func:`resolve_text` finds (rows without text keep None)."""
    rows = [dataclasses.replace(r, text=resolve_text(r, sidecar=sidecar, subtitles=subtitles)) for r in manifest]
    return dataclasses.replace(manifest, rows=rows)
