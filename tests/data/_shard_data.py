"""The small data set the shard tests prepare: synthetic clips plus a garbage file and a missing path."""

from __future__ import annotations

from pathlib import Path

from avformer.data.synth import SynthConfig, write_dataset

NUM_GOOD = 12


def write_with_bad_rows(out: Path) -> Path:
    """``NUM_GOOD`` synthetic clips (1.5 s, 32x32 at 8 fps) in ``out`` + a garbage file + a missing path in
    ``bad.csv``; returns ``out``."""
    write_dataset(out, SynthConfig(num_clips=NUM_GOOD, seconds=1.5, size=32, fps=8), workers=1)
    (out / "garbage.mp4").write_bytes(b"this is not a video\n" * 50)
    lines = (out / "manifest.csv").read_text().splitlines()
    lines += ["garbage.mp4,circle_hum,0", "missing/none.mp4,circle_hum,0"]
    (out / "bad.csv").write_text("\n".join(lines) + "\n")
    return out
