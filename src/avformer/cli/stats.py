"""``avformer stats MANIFEST``: dataset mean/std of the log-mel features, for ``audio: {mean, std}`` in a config.

Reads the manifest's clips (``[start, end]`` windows when the manifest has them), computes the raw features of
each (no padding, no normalisation) and merges exact float64 moments, one clip at a time. Files that fail to decode
are skipped and counted, never fatal. ``--max-clips`` takes evenly spaced rows, so a manifest sorted by class is
still sampled across classes.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from avformer.data.audio import RunningMoments
    from avformer.data.manifest import ManifestRow

__all__ = ["main"]

_T = TypeVar("_T")


@dataclass
class _ClipResult:
    path: str
    moments: RunningMoments | None  # None when the clip was skipped
    error: str | None = None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer stats",
        description="Compute the mean and std of the audio features over a manifest (dataset normalisation).",
    )
    p.add_argument("manifest", help="manifest file (CSV) listing the clips")
    p.add_argument("--root", default=None, help="folder that relative paths in the manifest are under")
    p.add_argument("--max-clips", type=int, default=None, help="use at most N clips, evenly spaced (default: all)")
    p.add_argument("--workers", type=int, default=1, help="decoding threads (default: 1)")
    p.add_argument("--config", default=None, help="take kind, sample rate and mel bins from this recipe's data.audio")
    p.add_argument("--kind", choices=("fbank", "logmel"), default=None, help="feature kind (default: fbank)")
    p.add_argument("--sample-rate", type=int, default=None, help="Hz (default: 16000)")
    p.add_argument("--num-mel-bins", type=int, default=None, help="mel bins (default: 128, AST's)")
    return p


def _evenly_spaced(items: list[_T], n: int | None) -> list[_T]:
    if n is None or n >= len(items):
        return items
    return [items[i * len(items) // n] for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.max_clips is not None and args.max_clips <= 0:
        print("avformer stats: --max-clips must be > 0", file=sys.stderr)
        return 2
    if args.workers <= 0:
        print("avformer stats: --workers must be > 0", file=sys.stderr)
        return 2

    import torch

    from avformer.data.audio import AudioFeatureConfig, AudioFeatures, RunningMoments
    from avformer.data.manifest import read_manifest
    from avformer.data.media import MediaError, load_audio

    try:
        settings = {"kind": "fbank", "sample_rate": 16000, "num_mel_bins": 128}  # without --config: AST's
        if args.config is not None:
            from avformer.config import load

            recipe = load(args.config).data.audio
            settings = {k: getattr(recipe, k) for k in settings}
        given = {"kind": args.kind, "sample_rate": args.sample_rate, "num_mel_bins": args.num_mel_bins}
        settings |= {k: v for k, v in given.items() if v is not None}  # explicit flags win over the recipe
        cfg = AudioFeatureConfig(**settings, num_frames=None, mean=None, std=None)
        rows = read_manifest(args.manifest, root=args.root)
    except (OSError, ValueError) as e:
        print(f"avformer stats: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    rows = _evenly_spaced(list(rows), args.max_clips)
    if not rows:
        print(f"avformer stats: no clips in {args.manifest}", file=sys.stderr)
        return 1
    frontend = AudioFeatures(cfg).eval()

    def one(row: ManifestRow) -> _ClipResult:
        path, start, end = row.path, row.start or 0.0, row.end
        try:
            wav, _ = load_audio(path, sample_rate=cfg.sample_rate, start=start, end=end)
            with torch.inference_mode():
                feats = frontend.spectrogram(torch.as_tensor(wav, dtype=torch.float32).reshape(-1))
        except (MediaError, OSError, ValueError) as e:  # bad or too-short file: skip and count
            return _ClipResult(path, None, f"{type(e).__name__}: {e}")
        if feats.shape[0] == 0:
            return _ClipResult(path, None, f"shorter than one {cfg.frame_length_ms} ms window")
        return _ClipResult(path, RunningMoments.of(feats))

    t0 = time.perf_counter()
    total = RunningMoments()
    used, skipped = 0, []
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        for res in pool.map(one, rows):
            if res.moments is None:
                skipped.append(res)
            else:
                total.merge(res.moments)
                used += 1
    elapsed = time.perf_counter() - t0

    for res in skipped[:10]:
        print(f"skipped {res.path}: {res.error}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"... and {len(skipped) - 10} more skipped", file=sys.stderr)
    print(f"clips: {used} used, {len(skipped)} skipped; {total.count} values; {elapsed:.1f} s")
    if used == 0:
        print("avformer stats: no usable clip", file=sys.stderr)
        return 1
    print(f"mean: {total.mean:.7g}")
    print(f"std: {total.std:.7g}")
    stats = f"{{mean: {total.mean:.7g}, std: {total.std:.7g}}}"
    print(f"# for the experiment config, under data: (with num_mel_bins: {cfg.num_mel_bins}, kind: {cfg.kind}),")
    print(f"# or as an override of avformer train: 'data.audio={stats}'")
    print(f"audio: {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
