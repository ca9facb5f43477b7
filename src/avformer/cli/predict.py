"""``avformer predict RUN_OR_CKPT FILE...``: the top labels of media files, from a trained run.

Each file (any container FFmpeg reads: mp4, mkv, webm, avi, mpg, gif, wav, mp3, flac, ...) is read as evaluation
reads it: ``--clips`` windows of the run's clip length spread uniformly over the whole file (only those windows
are decoded, so long or 8K files stay cheap), transformed with the run's data config, and the windows'
probabilities averaged (see :mod:`avformer.eval.predict`). Output per file::

    clip.mp4  (3 clips of 1 s, audio+video; predicted in 0.4 s)
      note: no audio track — predicting from video only
       1. dog barking        0.812
       2. ...

A missing stream is said in a ``note:`` line and an audio-visual model predicts from the stream that is there; a
single-modality model whose stream is absent, and any file that cannot be read (missing, corrupt, unsupported,
no usable stream), gives one line ``PATH: error: REASON`` on stderr and the command goes on with the next file.

``--json`` prints one JSON object per file (``ok``, ``error``, ``top``, ``notes``, ...) on stdout instead of the
text. ``--png DIR`` writes ``DIR/<file name>.png`` per predicted file: a strip of frames, the log-mel spectrogram
and the top-k bars.

``--backend torchscript`` or ``onnxruntime`` runs the model file that ``avformer export --format torchscript|onnx``
wrote into an export folder (CPU; the same decoding and features; see :mod:`avformer.models.export_formats`);
``eager`` (the default) runs the PyTorch model.

Exit status: 0 when every file got a prediction, 1 when any file failed, 2 when the run cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avformer.cli.outputs import unique_output
from avformer.eval.predict import FilePrediction, FilePredictor
from avformer.eval.report import plot_prediction
from avformer.models.export_formats import BACKENDS, load_backend
from avformer.models.loading import load_run
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.device import resolve_device
from avformer.utils.errors import UsageError

__all__ = ["format_prediction", "main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer predict", description="Print the top-k labels of media files with a trained run."
    )
    p.add_argument("run", metavar="RUN_OR_CKPT", help="run folder (best.pt, else last.pt) or a checkpoint file")
    p.add_argument("files", nargs="+", metavar="FILE", help="video or audio files")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="labels shown per file (default 5)")
    p.add_argument("--clips", type=int, default=3, metavar="N", help="windows per file, spread uniformly (default 3)")
    p.add_argument("--png", metavar="DIR", help="write one PNG per file (frames, spectrogram, top-k) into DIR")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")
    p.add_argument("--multilabel", action="store_true", help="sigmoid scores (a run trained on multi-label data)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="decode-time budget per file (default 60)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--backend", choices=BACKENDS, default="eager",
                   help="eager (PyTorch), or the export folder's model.torchscript.pt / model.onnx (CPU)")  # fmt: skip
    return p


def format_prediction(pred: FilePrediction) -> str:
    """The text block of one predicted file (errors are printed separately, on one line)."""
    streams = "+".join(s for s, on in (("audio", pred.has_audio), ("video", pred.has_video)) if on)
    n = len(pred.windows)
    first = pred.windows[0] if pred.windows else None
    span = f" of {first[1] - first[0]:g} s" if first is not None and first[1] is not None else ""
    lines = [f"{pred.path}  ({n} clip{'s' if n != 1 else ''}{span}, {streams}; predicted in {pred.seconds:.1f} s)"]
    lines += [f"  note: {note}" for note in pred.notes]
    width = max((len(name) for name, _ in pred.top), default=0)
    lines += [f"  {i:2d}. {name.ljust(width)}  {p:.3f}" for i, (name, p) in enumerate(pred.top, 1)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.topk < 1 or args.clips < 1:
        print("avformer predict: error: --topk and --clips must be >= 1", file=sys.stderr)
        return 2
    try:
        run = load_run(args.run, prefer=args.checkpoint)
    except (FileNotFoundError, CheckpointError, ValueError, TypeError, KeyError, RuntimeError) as e:
        print(f"avformer predict: error: cannot load the run {args.run}: {e}", file=sys.stderr)
        return 2
    device = resolve_device(args.device) if args.backend == "eager" else resolve_device("cpu")
    try:
        backend = None if args.backend == "eager" else load_backend(args.backend, run.model, args.run)
    except UsageError as e:
        print(f"avformer predict: error: {e}", file=sys.stderr)
        return 2
    predictor = FilePredictor(
        run,
        num_clips=args.clips,
        topk=args.topk,
        multilabel=args.multilabel,
        device=device,
        keep_display=args.png is not None,
        timeout_s=args.timeout if args.timeout > 0 else None,
        backend=backend,
    )
    png_dir = Path(args.png) if args.png else None
    used: set[Path] = set()
    failed = 0
    for path in args.files:
        pred = predictor.predict(path)
        if not pred.ok:
            failed += 1
            print(f"{path}: error: {pred.error}", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(pred.to_dict()), flush=True)
        elif pred.ok:
            print(format_prediction(pred), flush=True)
        if png_dir is not None and pred.ok and pred.display is not None:
            d = pred.display
            end = f"{d.window[1]:.1f}" if d.window[1] is not None else "end"
            plot_prediction(
                unique_output(png_dir, path, ".png", used),
                pred.top,
                frames=d.frames,
                spectrogram=d.spectrogram,
                title=f"{Path(path).name}  (window {d.window[0]:.1f}–{end} s)",
            )
    if not args.json and len(args.files) > 1:
        print(f"{len(args.files)} files: {len(args.files) - failed} predicted, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
