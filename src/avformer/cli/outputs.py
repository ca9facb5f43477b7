"""Output file names of the commands that write one picture (or video) per input file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["unique_output"]


def unique_output(out_dir: Path, path: str, suffix: str, used: set[Path]) -> Path:
    """``DIR/<file name><suffix>`` for input ``path``; a second input of the same name gets ``<name>-2<suffix>``,
    and so on (``used`` holds the names given so far, and gets the new one)."""
    base = Path(path).name or "input"
    target, i = out_dir / f"{base}{suffix}", 2
    while target in used:
        target, i = out_dir / f"{base}-{i}{suffix}", i + 1
    used.add(target)
    return target
