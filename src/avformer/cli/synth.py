"""``avformer synth OUTDIR``: write the procedurally generated audio-visual dataset (MP4 files + CSV manifests).

See :mod:`avformer.data.synth` for what the clips contain and why both modalities are needed.
"""

from __future__ import annotations

import argparse
import sys
import time

from avformer.data.synth import CLASS_NAMES, SynthConfig, default_workers, write_dataset

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    defaults = SynthConfig()
    p = argparse.ArgumentParser(
        prog="avformer synth",
        description="Write synthetic clips (moving shapes that make sounds; class = shape x sound, 9 classes) as "
        "H.264 + AAC MP4 files, with manifest.csv, train.csv, val.csv, meta.csv, classes.txt and README.txt.",
    )
    p.add_argument("outdir", help="destination folder (created; files of the same names are overwritten)")
    p.add_argument("--n", type=int, default=defaults.num_clips, help="number of clips (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="dataset seed (default %(default)s)")
    p.add_argument("--seconds", type=float, default=defaults.seconds, help="clip length (default %(default)s)")
    p.add_argument("--size", type=int, default=defaults.size, help="frame height = width, even (default %(default)s)")
    p.add_argument("--fps", type=int, default=defaults.fps, help="video frame rate (default %(default)s)")
    p.add_argument(
        "--difficulty",
        type=float,
        default=defaults.difficulty,
        help="nuisance strength, 0 clean .. 1 hard (default %(default)s)",
    )
    p.add_argument(
        "--shape-colours",
        action="store_true",
        help="each shape gets its own hue family (an easy visual cue; the demo uses it)",
    )
    p.add_argument(
        "--events",
        action="store_true",
        help="audio-visual events: sound bursts at random times, each on the frame of a visual event (flash, pulse, "
        "jump) of the sounding object; writes clips/NNNNNN.events.json beside each clip (for sync / localisation)",
    )
    p.add_argument(
        "--objects",
        default="1",
        metavar="N or MIN-MAX",
        help="objects per clip with --events, only one of which sounds (default 1; e.g. 2-4)",
    )
    p.add_argument("--crf", type=int, default=defaults.crf, help="x264 quality (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="processes (default min(2, CPUs))")
    return p


def _objects(text: str) -> tuple[int, int]:
    """``"3"`` -> (3, 3), ``"2-4"`` -> (2, 4)."""
    lo, sep, hi = text.partition("-")
    try:
        return (int(lo), int(hi) if sep else int(lo))
    except ValueError:
        raise ValueError(f"--objects takes N or MIN-MAX (e.g. 2-4), got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Run ``avformer synth``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        cfg = SynthConfig(
            events=args.events,
            objects=_objects(args.objects),
            num_clips=args.n,
            seed=args.seed,
            seconds=args.seconds,
            size=args.size,
            fps=args.fps,
            difficulty=args.difficulty,
            shape_colours=args.shape_colours,
            crf=args.crf,
        )
    except ValueError as e:
        print(f"avformer synth: {e}", file=sys.stderr)
        return 2
    workers = default_workers() if args.workers is None else max(1, args.workers)
    start = time.perf_counter()
    try:
        manifest = write_dataset(args.outdir, cfg, workers=workers)
    except OSError as e:  # not a folder, no permission, disk full: one line, not a traceback
        print(f"avformer synth: cannot write to {args.outdir}: {e.strerror or e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    out = manifest.parent
    with (out / "train.csv").open() as f:
        num_train = sum(1 for _ in f) - 1
    kind = f", events, {cfg.objects[0]}-{cfg.objects[1]} objects" if cfg.events else ""
    print(
        f"wrote {cfg.num_clips} clips ({len(CLASS_NAMES)} classes{kind}, {cfg.num_frames} frames {cfg.size}x{cfg.size} "
        f"@ {cfg.fps} fps + {cfg.sample_rate} Hz mono audio, {cfg.seconds:g} s) to {out}/clips"
    )
    print(f"  manifest  {manifest}")
    print(f"  splits    {out / 'train.csv'} ({num_train}), {out / 'val.csv'} ({cfg.num_clips - num_train})")
    print("  also      meta.csv, classes.txt, README.txt" + (", clips/*.events.json" if cfg.events else ""))
    print(f"time {elapsed:.1f} s ({cfg.num_clips / elapsed:.1f} clips/s, {workers} worker{'s' * (workers > 1)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
