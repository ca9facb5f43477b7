"""``avformer convert SRC --to DIR --from hf-ast|torchvision-mvit``: weights trained elsewhere as an avformer model.

    avformer convert ./ast-finetuned-audioset --from hf-ast --to exports/ast_audioset
    avformer convert mvit_v2_s-ae3be167.pth --from torchvision-mvit --to exports/mvit_k400 --classes k400.txt

Sources:
  hf-ast            a folder written by transformers' ASTForAudioClassification.save_pretrained (or ASTModel's):
                    config.json and model.safetensors or pytorch_model.bin; preprocessor_config.json, when there,
                    sets the normalisation. Built as ast_base with the folder's geometry; classes from id2label.
  torchvision-mvit  a torchvision mvit_v2_s state dict (.pth). Built as mvit_v2_s_16x4 (16 frames at 7.5 fps,
                    224 px centre crop of a 256 px short side); classes class_0... unless --classes names them.

DIR becomes an export folder (model.safetensors, config.yaml with the preprocessing the weights expect,
classes.txt), the folder ``avformer export`` writes: ``avformer eval``, ``predict``, ``embed`` and
``avformer.load()`` take it. ``--classes FILE`` (one name a line, logit order) replaces the source's class names.

The source is untrusted: .bin / .pth files are read with torch.load(weights_only=True), so a pickle that would run
code is refused; a path that is not a regular file is refused. A missing or unknown tensor or a shape that does not
fit is one error line.

Exit status: 0 done; 2 a bad source, folder or argument.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avformer.cli._help import plain
from avformer.models.convert import CONVERTERS, read_classes_file
from avformer.models.loading import EXPORT_DTYPES, EXPORTERS, export_run
from avformer.utils.errors import UsageError, report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer convert", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("src", metavar="SRC", help="the source folder (hf-ast) or file (torchvision-mvit)")
    p.add_argument("--to", required=True, metavar="DIR", help="export folder to write (created)")
    p.add_argument("--from", dest="source", required=True, choices=list(CONVERTERS), help="what SRC is")
    p.add_argument("--classes", metavar="FILE", help="class names, one a line, in logit order")
    p.add_argument("--format", choices=sorted(EXPORTERS), default="safetensors", help="weights format")
    p.add_argument("--dtype", choices=list(EXPORT_DTYPES), default="fp32", help="floating weights' type (fp32)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        classes = read_classes_file(args.classes) if args.classes else None
        run = CONVERTERS[args.source](args.src, classes)
        weights = export_run(run, args.to, fmt=args.format, dtype=args.dtype)
    except (UsageError, ValueError) as e:
        return report("avformer convert", e)
    n = sum(p.numel() for p in run.model.parameters())
    what = f"{len(run.classes)} classes" if run.classes else "no classifier"
    print(f"converted {args.src} -> {run.spec.name} ({n / 1e6:.2f} M params, {what}) -> {Path(weights).parent}")
    print(f"  {weights.name}: {weights.stat().st_size / 1e6:.1f} MB ({args.dtype})")
    return 0
