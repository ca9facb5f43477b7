"""``avformer localize FILE... --run RUN``: where in the picture is the sound? (an ``av_correspondence`` run).

Each file is read as evaluation reads a clip (the centre window of the run's length, or ``--start``), its AVOL
heatmap computed with its own sound, and ``OUT/<file name>.png`` written: frames spread over the window with the
heatmap laid over the part of the frame the model saw, its peak marked, and the model's probability that sound and
picture belong together. ``--heatmap map`` (default) shows AVOL's map over places; ``gradient`` the gradient of
AVOL's clip logit with respect to the pixels (:func:`avformer.eval.localization.gradient_heatmap`). ``--mp4`` also
writes ``OUT/<file name>.mp4``: every frame of the window with the overlay, and the window's sound. One line per file
on stdout::

    clip.mp4  p(match) 0.97  peak (41, 18) of 32x32  ->  out/clip.mp4.png

``--eval MANIFEST`` instead evaluates the run on a manifest (:mod:`avformer.eval.localization`): correspondence
accuracy of each head, the pointing game on clips with an events sidecar (``avformer synth --events``) with its
chance level, and with ``--mosaic`` the 2×2 mosaic game (chance 0.25); ``--json`` prints the numbers as one object.

Exit status: 0 when every file was localised; 1 when a file failed (one line ``PATH: error: REASON`` on stderr each,
the others still run); 2 for a user mistake (bad arguments, a run that cannot be loaded or is not an
``av_correspondence`` run, an unreadable manifest).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avformer.cli.outputs import unique_output
from avformer.data.media import MediaError
from avformer.eval.localization import (
    HEATMAPS,
    Localizer,
    evaluate_localization,
    load_localizer,
    peak,
    plot_localization,
    write_overlay_mp4,
)
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.device import resolve_device
from avformer.utils.errors import UsageError, one_line

__all__ = ["main"]

_PROG = "avformer localize"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=_PROG, description="Heatmap of where the sound comes from, with an av_correspondence run."
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="video files with sound")
    p.add_argument(
        "--run", required=True, metavar="RUN_OR_CKPT", help="run folder (best.pt, else last.pt) or checkpoint"
    )
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the PNGs / MP4s (default: current folder)")
    p.add_argument("--mp4", action="store_true", help="also write an MP4 of the window with the overlay on every frame")
    p.add_argument("--heatmap", choices=HEATMAPS, default="map",
                   help="map: AVOL's map over places (default); gradient: |d logit / d pixel|")  # fmt: skip
    p.add_argument("--start", type=float, default=None, metavar="S", help="window start in seconds (default: centre)")
    p.add_argument("--eval", metavar="MANIFEST", help="evaluate on a manifest instead of localising files")
    p.add_argument("--mosaic", action="store_true", help="with --eval: the 2x2 mosaic game (chance 0.25)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="with --eval: the first N clips only")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="with --eval: clips per batch (default: the run's train.batch_size)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="with --eval: print the numbers as one JSON object")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto ...")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="decode-time budget per file (default 60)")
    return p


def _fail(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if bool(args.files) == bool(args.eval):
        return _fail("give either FILE... (heatmap pictures) or --eval MANIFEST (metrics), not both or neither")
    if args.mosaic and not args.eval:
        return _fail("--mosaic goes with --eval MANIFEST")
    if (args.batch_size is not None and args.batch_size < 1) or (args.limit is not None and args.limit < 1):
        return _fail("--batch-size and --limit must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            return _fail("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    try:
        cfg, task, ckpt = load_localizer(args.run, prefer=args.checkpoint)
        device = resolve_device(args.device)
        localizer = Localizer(cfg, task, device, timeout_s=args.timeout if args.timeout > 0 else None)
    except (FileNotFoundError, CheckpointError, UsageError, ValueError, TypeError, KeyError, RuntimeError) as e:
        return _fail(f"cannot load the run {args.run}: {one_line(e)}")
    if args.eval:
        try:
            res = evaluate_localization(
                localizer, args.eval, batch_size=args.batch_size, limit=args.limit, mosaics=args.mosaic
            )
        except UsageError as e:
            return _fail(one_line(e))
        if args.json:
            print(json.dumps({"run": str(ckpt), "manifest": args.eval, **res}))
        else:
            print(f"{args.eval}: {int(res['clips'])} clips ({int(res['skipped'])} unreadable), run {ckpt}")
            for k in ("ave_acc", "avol_acc"):
                if k in res:
                    print(f"  correspondence {k[:-4]:<5} {res[k]:.3f}   (chance 0.5, {int(res['pairs'])} pairs)")
            for suffix, when in (("", "burst frames"), ("_all_frames", "all frames")):
                if f"pointing{suffix}" in res:
                    print(
                        f"  pointing       {res['pointing' + suffix]:.3f} AVOL map, "
                        f"{res['pointing_gradient' + suffix]:.3f} gradient   (chance "
                        f"{res['pointing_chance' + suffix]:.3f}; {when}, {int(res['pointing_clips'])} clips)"
                    )
            if "mosaic_acc" in res:
                print(
                    f"  mosaic         {res['mosaic_acc']:.3f} AVOL map, {res['mosaic_acc_gradient']:.3f} gradient   "
                    f"(chance 0.25, {int(res['mosaic_trials'])} trials)"
                )
        return 0
    out_dir = Path(args.out)
    used: set[Path] = set()
    failed = 0
    for path in args.files:
        try:
            clip = localizer.load(path, start=args.start)
            localizer.score([clip])
            png = plot_localization(unique_output(out_dir, path, ".png", used), clip, kind=args.heatmap)
            extra = ""
            if args.mp4:
                mp4 = write_overlay_mp4(
                    unique_output(out_dir, path, ".mp4", used), clip, cfg.data.video.fps, kind=args.heatmap
                )
                extra = f", {mp4}"
        except (MediaError, OSError, ValueError, RuntimeError) as e:
            failed += 1
            print(f"{path}: error: {one_line(e)}", file=sys.stderr, flush=True)
            continue
        size = clip.geometry.size
        py, px = peak(clip.map_of(args.heatmap), (size, size), clip.places_of(args.heatmap))
        print(
            f"{path}  p(match) {clip.probability:.2f}  peak ({px}, {py}) of {size}x{size}  ->  {png}{extra}", flush=True
        )
    if len(args.files) > 1:
        print(f"{len(args.files)} files: {len(args.files) - failed} localised, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
