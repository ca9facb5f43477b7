"""``avformer prepare MANIFEST OUTDIR``: decode a dataset once into tar shards of frames and audio.

Training then reads the shards with :class:`avformer.data.shards.ShardDataset` instead of decoding the source
files (see :mod:`avformer.data.shards` for the format). Every row that cannot be decoded is listed with its reason,
in the printed summary and in ``OUTDIR/index.json``; the exit status is 0 when at least one sample was written,
1 when none was (or the output cannot be written), 2 for bad arguments or an unreadable manifest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from avformer.data.manifest import ManifestError, read_manifest
from avformer.data.shards import INDEX_NAME, PrepareConfig, ShardInfo, write_shards
from avformer.data.synth import default_workers
from avformer.utils.progress import Progress

__all__ = ["main"]

_MAX_LISTED = 20  # failed rows printed; index.json lists them all


def _parser() -> argparse.ArgumentParser:
    d = PrepareConfig()
    p = argparse.ArgumentParser(
        prog="avformer prepare",
        description="Decode every row of a manifest once (frames at --fps with short side --size, mono audio at "
        "--sample-rate) into tar shards OUTDIR/shard-NNNNNN.tar + OUTDIR/index.json, for fast training reads. "
        "Rows that fail are listed with their reason.",
    )
    p.add_argument("manifest", help="manifest file (csv / jsonl / vggsound / kinetics / ast-json)")
    p.add_argument("outdir", help="destination folder (created)")
    p.add_argument("--root", default=None, help="folder relative media paths start from (default: the manifest's)")
    p.add_argument("--classes", default=None, help="class order: text file (one a line) or class_labels_indices.csv")
    p.add_argument("--fps", type=float, default=d.fps, help="frame rate of the stored frames (default %(default)s)")
    p.add_argument("--size", type=int, default=d.size, help="short side of the stored frames (default %(default)s)")
    p.add_argument("--native-size", action="store_true", help="store frames at their own size (overrides --size)")
    p.add_argument("--sample-rate", type=int, default=d.sample_rate, help="audio rate, Hz (default %(default)s)")
    p.add_argument(
        "--clip-seconds",
        type=float,
        default=None,
        help="store the centre CLIP_SECONDS of each row (default: the whole row window / file)",
    )
    p.add_argument(
        "--audio-float32", action="store_true", help="store audio as float32 (exact; default float16, half the size)"
    )
    p.add_argument(
        "--no-compress",
        action="store_true",
        help="store frames as raw .npy (about 3x larger, faster to read) instead of gzip'd",
    )
    p.add_argument("--no-video", action="store_true", help="store audio only")
    p.add_argument("--no-audio", action="store_true", help="store video only")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--shard-size", type=int, default=None, help="samples per shard (default 1000)")
    size.add_argument("--shard-mb", type=float, default=None, help="megabytes per shard (instead of --shard-size)")
    p.add_argument(
        "--shuffle-seed",
        type=int,
        default=None,
        help="write rows in a seeded random order (for manifests sorted by class; default: manifest order)",
    )
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default min(2, CPUs))")
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="decode time limit per row, s (%(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the shards of an earlier prepare in OUTDIR")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``avformer prepare``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        cfg = PrepareConfig(
            fps=args.fps,
            size=None if args.native_size else args.size,
            sample_rate=args.sample_rate,
            clip_seconds=args.clip_seconds,
            video=not args.no_video,
            audio=not args.no_audio,
            shard_size=None if args.shard_mb is not None else (args.shard_size or 1000),
            shard_bytes=round(args.shard_mb * 2**20) if args.shard_mb is not None else None,
            shuffle_seed=args.shuffle_seed,
            timeout_s=args.timeout,
            audio_dtype="float32" if args.audio_float32 else "float16",
            video_compression="none" if args.no_compress else "gzip",
        )
    except ValueError as e:
        print(f"avformer prepare: {e}", file=sys.stderr)
        return 2
    try:
        manifest = read_manifest(args.manifest, root=args.root, classes=args.classes)
    except (ManifestError, OSError) as e:
        print(f"avformer prepare: cannot read the manifest: {e}", file=sys.stderr)
        return 2
    workers = default_workers() if args.workers is None else max(1, args.workers)
    out = Path(args.outdir)
    total = len(manifest)

    def on_shard(info: ShardInfo) -> None:
        print(f"  {info.name}: {info.samples} samples, {(info.bytes or 0) / 2**20:.1f} MB", flush=True)

    print(f"prepare {total} rows of {args.manifest} -> {out} ({workers} worker{'s' * (workers > 1)})", flush=True)
    start = time.perf_counter()
    try:
        with Progress("prepare", total, unit="rows") as bar:
            index = write_shards(
                manifest,
                out,
                cfg,
                workers=workers,
                overwrite=args.overwrite,
                on_shard=on_shard,
                on_row=lambda done, _id: bar.update(done),
            )
    except FileExistsError as e:
        print(f"avformer prepare: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # not a folder, no permission, disk full: one line, not a traceback
        print(f"avformer prepare: cannot write to {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    n, mb = index.num_samples, sum(s.bytes or 0 for s in index.shards) / 2**20
    print(
        f"wrote {n}/{total} samples in {len(index.shards)} shard{'s' * (len(index.shards) != 1)} ({mb:.1f} MB) "
        f"in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f} rows/s)"
    )
    print(f"  index   {out / INDEX_NAME}")
    if index.warnings:
        print(f"  {len(index.warnings)} rows decoded with warnings (partial files; listed in the index)")
    if index.failed:
        print(f"{len(index.failed)} rows failed (all listed in {INDEX_NAME} under 'failed'):")
        for row in index.failed[:_MAX_LISTED]:
            print(f"  {row['id']}: {row['reason']}")
        if len(index.failed) > _MAX_LISTED:
            print(f"  ... and {len(index.failed) - _MAX_LISTED} more")
    else:
        print("no rows failed")
    if n == 0:
        print("avformer prepare: no sample was written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
