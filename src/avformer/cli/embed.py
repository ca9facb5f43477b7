"""``avformer embed``: embeddings of every clip of a manifest with a trained model, written to disk with an index.

    avformer embed RUN MANIFEST --out DIR [--batch-size 64] [--workers 0]

Any run whose model encodes audio and/or video works (VATT, MMT and other AV models, a single encoder).
``DIR/embeddings.pt`` holds (``torch.load``) the encoder features (``video_pooled``, ``audio_pooled``), the
common-space embeddings where the model has them (``video_va``, ``audio_va``: VATT's video-audio space or an AV
model's contrastive projections; ``video_vt``, ``text_vt`` for VATT clips with text; ``av_fused``, the joint
audio-visual embedding of a fusion that makes one, e.g. ``agnostic``), ``labels``,
``has_video`` / ``has_audio`` / ``has_text`` and the ``run`` it came from; ``DIR/index.csv`` lists the rows in the
same order (``row,id,path,label,has_video,has_audio,text``). ``avformer retrieve DIR ...`` searches it. Retrieval
metrics of the manifest (a→v, v→a, t→v; mAP when it has labels) are printed and saved in ``DIR/retrieval.json``.

Exit status: 0 done; 2 a bad run folder, manifest or argument.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch

from avformer.cli._help import plain
from avformer.data.manifest import ManifestError, read_manifest
from avformer.data.text import with_resolved_text
from avformer.eval.representations import Embeddings, extract_embeddings, retrieval_metrics
from avformer.models.loading import load_run
from avformer.utils.checkpoint import CheckpointError, save_checkpoint
from avformer.utils.errors import report

__all__ = ["main", "write_index"]


def write_index(out: Path, emb: Embeddings, run: Path) -> None:
    """``embeddings.pt`` + ``index.csv`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in emb.to_dict().items() if isinstance(v, torch.Tensor)}
    data |= {"ids": emb.ids, "paths": emb.paths, "classes": emb.classes, "texts": emb.texts, "run": str(run)}
    save_checkpoint(out / "embeddings.pt", data)  # atomic: an index is never half-written
    with (out / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "id", "path", "label", "has_video", "has_audio", "text"])
        for i in range(len(emb.ids)):
            lab = int(emb.labels[i])
            w.writerow([
                int(emb.index[i]), emb.ids[i], emb.paths[i], emb.classes[lab] if lab >= 0 else "",
                int(emb.has_video[i]), int(emb.has_audio[i]), emb.texts[i] or "",
            ])  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer embed", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", help="run folder of `avformer pretrain` or a checkpoint")
    p.add_argument("manifest", help="manifest of the clips to embed (labels and text optional)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run = load_run(args.run, require_classes=False)
        cfg, model, ckpt = run.cfg, run.model, run.checkpoint
        manifest = with_resolved_text(read_manifest(args.manifest, cfg.root))
        print(f"embedding {len(manifest)} clips of {args.manifest} with {ckpt}", flush=True)
        emb = extract_embeddings(
            model, manifest, cfg.data, batch_size=args.batch_size, workers=args.workers, progress=True
        )
    except (FileNotFoundError, ManifestError, CheckpointError, TypeError, ValueError) as e:
        return report("avformer embed", e)
    out = Path(args.out)
    write_index(out, emb, ckpt)
    metrics = retrieval_metrics(emb)
    (out / "retrieval.json").write_text(json.dumps(metrics, indent=2))
    print(f"{len(emb.ids)}/{len(manifest)} clips embedded -> {out / 'embeddings.pt'}, {out / 'index.csv'}")
    for k in ("a2v_R@1", "a2v_median_rank", "a2v_mAP", "t2v_R@1", "t2v_mAP"):
        if k in metrics:
            print(f"  {k} {metrics[k]:.4f}")
    return 0
