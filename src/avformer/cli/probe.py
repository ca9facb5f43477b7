"""``avformer probe FILE...``: what each media file holds and whether it really decodes.

One line per file (status, container, duration, streams, and the reason for partial/error files), then a summary
line ``N files: X ok, Y partial (usable), Z unusable``. ``--json`` prints one JSON object per file and a final
summary object instead. Exit status 1 if any file is unusable (status ``error``), else 0.

Probing decodes every audio/video stream without RGB conversion (see :func:`avformer.data.media.probe` for the
rules: long files are checked at the head and the tail, and a per-file time limit, the open included, stops the
check early). Only regular files are read: a FIFO, directory, socket or device is an ``error`` line at once
(``not a regular file (a FIFO)``), never a hang. A file whose header declares far more than decodes (``declared
duration 1000000000.0 s but decodable content ends at 3.0 s``) is ``partial``; the JSON record carries the
measured end as ``decoded_end``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from avformer.data.media import ProbeInfo, probe

__all__ = ["format_line", "main"]


def format_line(info: ProbeInfo) -> str:
    """One line for a probed file: ``status  path  container  duration  streams[  | reason]``."""
    duration = f"{info.duration:.2f}s" if info.duration is not None else "?s"
    parts = [f"{info.status:<13}", info.path, info.container or "-", duration, info.describe_streams() or "-"]
    line = "  ".join(parts)
    if info.reason:
        line += f"  | {info.reason}"
    return " ".join(line.splitlines())


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer probe", description="Print streams, duration and usability of media files."
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="media files, or manifests (their rows' files)")
    p.add_argument("--json", action="store_true", help="print one JSON object per line instead of text")
    p.add_argument(
        "--timeout", type=float, default=20.0, metavar="S", help="time cap per file, opening included (default 20)"
    )
    p.add_argument(
        "--head",
        type=float,
        default=30.0,
        metavar="S",
        help="decode the first S seconds of long files, plus their last 5 s (default 30)",
    )
    return p


_MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json")


def _expand(files: list[str]) -> list[str]:
    """The files to probe: each argument, or, for a manifest (CSV / JSONL / AST JSON that reads as one), the media
    files of its rows."""
    from avformer.data.manifest import ManifestError, read_manifest

    out: list[str] = []
    for f in files:
        if f.lower().endswith(_MANIFEST_SUFFIXES) and os.path.isfile(f):
            try:
                out += list(dict.fromkeys(r.path for r in read_manifest(f)))
                continue
            except (ManifestError, OSError, ValueError):
                pass  # not a manifest: probe it as a file (it will say what it is)
        out.append(f)
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    counts = {"ok": 0, "partial": 0, "unusable": 0}
    args.files = _expand(args.files)
    for path in args.files:
        info = probe(path, timeout_s=args.timeout, head_s=args.head)
        if not info.usable:
            counts["unusable"] += 1
        elif info.status == "partial":
            counts["partial"] += 1
        else:
            counts["ok"] += 1
        print(json.dumps(dataclasses.asdict(info)) if args.json else format_line(info), flush=True)
    n = len(args.files)
    if args.json:
        print(json.dumps({"summary": {"files": n, **counts}}))
    else:
        print(f"{n} files: {counts['ok']} ok, {counts['partial']} partial (usable), {counts['unusable']} unusable")
    return 1 if counts["unusable"] else 0


if __name__ == "__main__":
    sys.exit(main())
