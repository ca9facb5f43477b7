"""``avformer pretrain``: self-supervised VATT pretraining from unlabeled videos (NCE video-audio, MIL-NCE video-text).

    avformer pretrain --config configs/experiment/av_digits_vatt_tiny.yaml [key=value ...] [--out DIR]

The train manifest's labels are dropped before anything reads them (pretraining sees videos and optional text only).
Text per clip comes from the manifest's ``text`` column, else a sidecar ``.srt`` / ``.txt`` next to the media file,
else the container's subtitle stream (:mod:`avformer.data.text`). When ``val_manifest`` is set, every evaluation
embeds the val clips and logs zero-shot audio↔video retrieval (R@K, median rank and, with labels, class-relevance
mAP ``a2v_mAP``; set ``train.best_metric: a2v_mAP``). The run folder holds ``config.yaml``, ``last.pt`` / ``best.pt``,
``metrics.csv`` and ``train_log.csv``; ``avformer probe-linear``, ``avformer embed`` and a fine-tuning ``init_from``
read it. Running the same command again resumes from ``last.pt``.

Several processes: ``torchrun --nproc_per_node N -m avformer pretrain --config ...``. ``train.batch_size`` is per
process; NCE and MIL-NCE take their negatives from every process's batch (a global batch of N × batch_size clips),
validation embeds each val clip once across the processes, and rank 0 alone writes the run folder. The heads'
BatchNorm statistics stay per process (a BatchNorm synchronised across processes needs GPUs).

Exit status: 0 done; 2 a bad config, override or manifest; 128 + N when signal N stopped training after saving.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist
from rich.console import Console

from avformer.cli.train import UsageError, add_config_args, config_from_args, init_distributed
from avformer.config import ConfigError, ExperimentConfig
from avformer.data.dataset import AVDataset, make_loader
from avformer.data.manifest import Manifest, ManifestError, read_manifest
from avformer.data.text import with_resolved_text
from avformer.models.registry import create_model
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.vatt_pretrain import VATTPretrainTask
from avformer.train.trainer import fit, seed_everything
from avformer.utils.distributed import is_main

__all__ = ["PretrainResult", "UsageError", "build_vatt", "main", "run_pretraining", "strip_labels"]


@dataclass
class PretrainResult:
    out_dir: Path
    summary: dict[str, Any]
    num_params: int
    seconds: float
    text_clips: int  # train clips that have text


def strip_labels(manifest: Manifest) -> Manifest:
    """The same rows without labels or classes: what self-supervised pretraining may see."""
    rows = [dataclasses.replace(r, labels=()) for r in manifest]
    return dataclasses.replace(manifest, rows=rows, classes=[], multilabel=False)


def build_vatt(cfg: ExperimentConfig) -> VisionAudioTextTransformer:
    """The VATT model of ``cfg.model`` (a :class:`UsageError` for another family or a bad override)."""
    try:
        model = create_model(cfg.model.name, **dict(cfg.model.overrides))
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"model {cfg.model.name!r}: {e}") from e
    if not isinstance(model, VisionAudioTextTransformer):
        raise UsageError(f"model {cfg.model.name!r} is not a VATT model (`avformer models --filter vatt` lists them)")
    return model


def _read(path: str | None, what: str, root: str | None) -> Manifest:
    if path is None:
        raise UsageError(f"{what} is not set in the config (set it in the YAML or as {what}=PATH)")
    if not Path(path).is_file():
        raise UsageError(f"{what}: no such file: {path}")
    try:
        return read_manifest(path, root)
    except ManifestError as e:
        raise UsageError(f"{what}: {e}") from e


def run_pretraining(
    cfg: ExperimentConfig,
    *,
    out_dir: str | Path | None = None,
    console: Console | None = None,
    subtitles: bool = True,
) -> PretrainResult:
    """Pretrain ``cfg`` end to end (data without labels, model, :class:`VATTPretrainTask`, :func:`fit`).

    Raises:
        UsageError: a bad manifest, model name or override.
    """
    out = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    if str(out) != cfg.train.out_dir:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, out_dir=str(out)))
    if set(cfg.data.modalities) != {"video", "audio"}:
        raise UsageError("VATT pretraining reads video and audio: set data.modalities to [video, audio]")
    train = with_resolved_text(strip_labels(_read(cfg.train_manifest, "train_manifest", cfg.root)), subtitles=subtitles)
    val = _read(cfg.val_manifest, "val_manifest", cfg.root) if cfg.val_manifest else None
    tcfg = cfg.train
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    train_ds = AVDataset(train, cfg.data, train=True, seed=tcfg.seed)
    if len(train_ds) < max(2, tcfg.batch_size) * world:
        raise UsageError(
            f"{cfg.train_manifest}: {len(train_ds)} clips, fewer than one batch (train.batch_size={tcfg.batch_size}"
            f" x {world} processes); contrastive pretraining needs full batches of at least 2 clips"
        )
    train_loader = make_loader(
        train_ds,
        batch_size=tcfg.batch_size,
        shuffle=True,
        num_workers=tcfg.workers,
        drop_last=True,  # contrastive batches of one size; a 1-clip batch would break the heads' BatchNorm
        seed=tcfg.seed,
        num_replicas=world,
        rank=rank,
    )
    val_loader = None
    if val is not None:
        val_cfg = dataclasses.replace(cfg.data, num_test_clips=1, num_test_crops=1)
        val_ds = AVDataset(val, val_cfg, train=False, seed=tcfg.seed)
        val_loader = make_loader(
            val_ds, batch_size=tcfg.batch_size, shuffle=False, num_workers=tcfg.workers,
            num_replicas=world, rank=rank, pad=False,
        )  # fmt: skip
    seed_everything(tcfg.seed)
    model = build_vatt(cfg)
    try:
        task = VATTPretrainTask(model, cfg.loss)
    except ValueError as e:
        raise UsageError(str(e)) from e
    t0 = time.perf_counter()
    summary = fit(task, train_loader, val_loader, cfg, out, console=console)
    seconds = time.perf_counter() - t0
    n_text = sum(r.text is not None for r in train)
    return PretrainResult(out, summary, sum(p.numel() for p in model.parameters()), seconds, n_text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer pretrain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(p, "e.g. configs/experiment/av_digits_vatt_tiny.yaml")
    p.add_argument("--no-subtitles", action="store_true", help="do not read text from the containers' subtitle streams")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (UsageError, ConfigError) as e:
        print(f"avformer pretrain: error: {e}", file=sys.stderr)
        return 2
    owns_group = init_distributed(cfg.train.device)
    quiet = not is_main()  # rank 0 alone prints
    try:
        result = run_pretraining(cfg, out_dir=args.out, console=Console(quiet=quiet), subtitles=not args.no_subtitles)
    except (UsageError, ConfigError) as e:
        print(f"avformer pretrain: error: {e}", file=sys.stderr)
        return 2
    finally:
        if owns_group:
            dist.destroy_process_group()
    stopped = result.summary.get("stopped")
    if quiet:
        return 0 if stopped is None else 128 + int(signal.Signals[stopped])
    if stopped is not None:
        print(f"stopped by {stopped} after saving {result.out_dir / 'last.pt'}; run the same command to resume")
        return 128 + int(signal.Signals[stopped])
    s = result.summary
    parts = [f"done in {result.seconds / 60:.1f} min", f"run folder {result.out_dir}", f"{result.num_params:,} params"]
    parts.append(f"{result.text_clips} train clips with text")
    for key in ("val_a2v_mAP", "val_a2v_R@1", "val_a2v_median_rank"):
        if key in s:
            parts.append(f"{key.removeprefix('val_')} {s[key]:.4f}")
    print("; ".join(parts))
    return 0
