"""``avformer sync FILE... --run RUN``: the delay of the sound behind the picture, from a trained ``av_sync`` run.

Each file is read as the run's evaluation reads a window (``--clips`` windows of the run's window length spread
over the file, audio and video of the same time span), and the model's softmax over the offset classes averaged
(see :mod:`avformer.eval.sync`). Output per file::

    clip.mp4: sound +0.250 s behind the picture (confidence 0.83; baseline +0.250 s; 1 window of 2 s, 0.2 s)

A positive delay means the sound comes after the picture. One PNG per file (the score over the candidate delays,
the baseline's correlation, the estimate) goes to ``--out`` (default: the current folder) as
``<file name>.sync.png``; ``--no-png`` skips it. ``--json`` prints one JSON object per file instead of the text.

A file that cannot be estimated (missing, corrupt, a stream missing, shorter than the window) gives one line
``PATH: error: REASON`` on stderr and the command goes on with the next file.

Exit status: 0 when every file got an estimate, 1 when any file failed, 2 when the run cannot be loaded or is not
a synchronisation run, or an argument is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avformer.cli.outputs import unique_output
from avformer.eval.sync import SyncEstimator, plot_sync_scores
from avformer.models.loading import load_run
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.device import resolve_device

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer sync",
        description="Estimate how far the sound lags the picture in media files, with a trained av_sync run.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="video files with an audio track")
    p.add_argument("--run", required=True, metavar="RUN_OR_CKPT", help="run folder (best.pt, else last.pt) or .pt")
    p.add_argument("--clips", type=int, default=1, metavar="N", help="windows per file, spread uniformly (default 1)")
    p.add_argument("--out", default=".", metavar="DIR", help="folder of the PNGs (default: the current folder)")
    p.add_argument("--no-png", action="store_true", help="do not write the score plots")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="decode budget per window (default 60)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder")
    p.add_argument("--device", default="cpu", help="cpu (default), auto, cuda, cuda:1 ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.clips < 1:
        print("avformer sync: error: --clips must be >= 1", file=sys.stderr)
        return 2
    try:
        run = load_run(args.run, prefer=args.checkpoint, require_classes=False)
        estimator = SyncEstimator(
            run,
            num_clips=args.clips,
            device=resolve_device(args.device),
            timeout_s=args.timeout if args.timeout > 0 else None,
        )
    except (FileNotFoundError, CheckpointError, ValueError, TypeError, KeyError, RuntimeError) as e:
        msg = " ".join(str(e).split())
        print(f"avformer sync: error: cannot use the run {args.run}: {msg}", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    used: set[Path] = set()
    failed = 0
    for path in args.files:
        est = estimator.estimate(path)
        if not est.ok:
            failed += 1
            print(f"{path}: error: {est.error}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps(est.to_dict()), flush=True)
            continue
        png = None
        if not args.no_png:
            try:
                png = plot_sync_scores(unique_output(out_dir, path, ".sync.png", used), est)
            except OSError as e:
                print(f"avformer sync: error: cannot write the plot into {out_dir}: {e.strerror or e}", file=sys.stderr)
                return 1
        if args.json:
            print(json.dumps(est.to_dict() | {"png": str(png) if png else None}), flush=True)
            continue
        base = est.baseline_delay
        n = len(est.windows)
        length = est.windows[0][1] - est.windows[0][0]
        print(
            f"{path}: sound {est.delay:+.3f} s behind the picture (confidence {est.confidence:.2f}"
            + (f"; baseline {base:+.3f} s" if base is not None else "")
            + f"; {n} window{'s' * (n != 1)} of {length:g} s, {est.seconds:.1f} s)"
            + (f"  -> {png}" if png else ""),
            flush=True,
        )
    if not args.json and len(args.files) > 1:
        print(f"{len(args.files)} files: {len(args.files) - failed} estimated, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
