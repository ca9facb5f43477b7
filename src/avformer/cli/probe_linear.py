"""``avformer probe-linear``: linear probe on a run's frozen features, next to the same probe on a random encoder.

    avformer probe-linear RUN --train MANIFEST --val MANIFEST [--modality video audio] [--no-baseline]

Extracts the encoder features of every train and val clip once with the run's encoders (``RUN``: a run folder of
``avformer pretrain`` or ``avformer train``, or a checkpoint; VATT's AGG outputs, an AV model's per-modality features
computed with the other modality masked, a single encoder's pooled output), fits a multinomial logistic regression
per modality (:func:`avformer.eval.representations.fit_linear_probe`: L2 strength chosen on a held-out fifth of train)
and prints val top-1.
Unless ``--no-baseline``, the same is done with a randomly initialised encoder of the same architecture
(``--baseline-seed``), so the gain from pretraining is read off one table. ``--json FILE`` writes the numbers.

Exit status: 0 done; 2 a bad run folder, manifest or argument.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avformer.cli._help import plain
from avformer.data.manifest import ManifestError, read_manifest
from avformer.eval.representations import (
    Embeddings,
    extract_embeddings,
    fit_linear_probe,
    represented_modalities,
    retrieval_metrics,
)
from avformer.models.loading import load_run
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.errors import report

__all__ = ["main", "probe"]


def probe(
    run: str | Path,
    train_manifest: str | Path,
    val_manifest: str | Path,
    *,
    modalities: tuple[str, ...] = ("video", "audio"),
    baseline: bool = True,
    baseline_seed: int = 0,
    batch_size: int = 64,
    workers: int = 0,
) -> dict[str, Any]:
    """Probe results: ``{"pretrained": {modality: metrics, "retrieval": val retrieval metrics}, "random_init":
    {modality: metrics}, "params": int, "checkpoint": str}``."""
    loaded = load_run(run, require_classes=False)
    cfg, model, ckpt = loaded.cfg, loaded.model, loaded.checkpoint
    missing = [m for m in modalities if m not in represented_modalities(model)]
    if missing:
        raise ValueError(f"{ckpt}: model {cfg.model.name!r} has no {' or '.join(missing)} encoder (--modality)")
    train = read_manifest(train_manifest, cfg.root)
    if not train.classes:
        raise ManifestError(f"{train_manifest}: a linear probe needs a label column")
    val = read_manifest(val_manifest, cfg.root)
    # one class order for both (train's, then val-only classes, which are scored but never predicted right); a
    # val set that lacks some train classes must still use train's indices
    classes = [*train.classes, *(c for c in val.classes if c not in train.classes)]
    if val.classes != classes:
        val = read_manifest(val_manifest, cfg.root, classes=classes)
    if train.classes != classes:
        train = read_manifest(train_manifest, cfg.root, classes=classes)
    models: dict[str, nn.Module] = {"pretrained": model}
    if baseline:
        torch.manual_seed(baseline_seed)
        models["random_init"] = loaded.fresh_model()
    out: dict[str, Any] = {"checkpoint": str(ckpt), "params": sum(p.numel() for p in model.parameters())}
    for name, m in models.items():
        emb: dict[str, Embeddings] = {
            split: extract_embeddings(m, man, cfg.data, batch_size=batch_size, workers=workers)
            for split, man in (("train", train), ("val", val))
        }
        res: dict[str, Any] = {}
        if name == "pretrained":  # zero-shot retrieval on val comes free with its embeddings
            res["retrieval"] = retrieval_metrics(emb["val"])
        for mod in modalities:
            feats = {s: getattr(e, f"{mod}_pooled") for s, e in emb.items()}
            assert feats["train"] is not None and feats["val"] is not None
            res[mod] = fit_linear_probe(
                feats["train"], emb["train"].labels, feats["val"], emb["val"].labels, len(train.classes)
            )
        out[name] = res
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer probe-linear", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", help="run folder of `avformer pretrain` (best.pt, else last.pt) or a checkpoint")
    p.add_argument("--train", required=True, help="labeled manifest the probe is fit on")
    p.add_argument("--val", required=True, help="labeled manifest it is scored on")
    p.add_argument("--modality", nargs="+", choices=("video", "audio"), default=["video", "audio"])
    p.add_argument("--no-baseline", action="store_true", help="skip the random-init encoder")
    p.add_argument("--baseline-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--json", help="also write the results here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        res = probe(
            args.run,
            args.train,
            args.val,
            modalities=tuple(args.modality),
            baseline=not args.no_baseline,
            baseline_seed=args.baseline_seed,
            batch_size=args.batch_size,
            workers=args.workers,
        )
    except (FileNotFoundError, ManifestError, CheckpointError, TypeError, ValueError) as e:
        return report("avformer probe-linear", e)
    print(f"linear probe, val top-1 ({res['checkpoint']}, {res['params']:,} params)")
    print("| modality | pretrained | random init |")
    print("|---|---|---|")
    for mod in args.modality:
        base = res.get("random_init", {}).get(mod, {}).get("top1")
        print(f"| {mod} | {res['pretrained'][mod]['top1']:.3f} | {'-' if base is None else f'{base:.3f}'} |")
    ret = res["pretrained"].get("retrieval") or {}
    shown = [
        f"{k} {ret[k]:.3f}" for k in ("a2v_R@1", "a2v_mAP", "v2a_R@1", "v2a_mAP", "t2v_R@1", "t2v_mAP") if k in ret
    ]
    if shown:
        print("zero-shot retrieval on val (pretrained): " + ", ".join(shown))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0
