"""``avformer demo``: MMT against single-modality baselines on the embedded synthetic data, on a CPU.

1. Writes the synthetic audio-visual dataset (``avformer synth``: real H.264 + AAC MP4 files). A clip's class is
   the pair (shape seen, sound heard), drawn independently, so one modality alone can be right at most 1/3 of the
   time; both together identify the class. The demo turns on ``SynthConfig.shape_colours`` (each shape in its own
   hue family) so the tiny video model learns the picture within its CPU budget; the outline alone needs far longer.
2. Trains three models briefly with ``avformer train``'s pipeline (the same data loader, task, trainer, checkpoints
   and report): **MMT-Tiny** (MAT + MViTv2 + bottleneck fusion, CE + AVC + IMC), an **audio-only** baseline (the
   same MAT encoder alone) and a **video-only** baseline (the same MViTv2 encoder alone).
3. Prints a side-by-side table (validation top-1 of each view: ``fused``, ``audio-only`` and ``video-only``, the
   fused model's two single-modality views with the other modality masked out; parameters, training time) and
   writes ``report.md`` with plots under ``--out`` (default ``runs/demo``), one run folder per model (``fused/``,
   ``audio/``, ``video/``) with its own report, and ``summary.json``. Every number is the training log's (the last
   ``metrics.csv`` row), and each view counts the clips the rule of :mod:`avformer.metrics.classification` says
   (fused: every clip; audio-only: those with audio; video-only: those with video); the table gives the counts.

Progress: each training shows a bar on a terminal, else a plain line every 30 s (steps done, rate,
ETA, loss; :mod:`avformer.utils.progress`), and one line per epoch.

``--quick`` shrinks everything (data, input sizes, epochs) to check the pipeline in seconds; its numbers mean
nothing. The default settings are tuned to finish in a few minutes on 2 CPU cores (see ``FULL``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from avformer.cli._help import plain
from avformer.config import ExperimentConfig, ModelSpec, OptimConfig, TaskSpec, TrainConfig
from avformer.data.audio import AudioFeatureConfig
from avformer.data.dataset import DataConfig, SpecAugmentConfig
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.video import VideoTransformConfig
from avformer.metrics.classification import VIEWS, score_outputs, view_label
from avformer.models.av_model import AVModel
from avformer.models.registry import create_model

__all__ = ["FULL", "QUICK", "DemoSettings", "demo_configs", "main", "run_demo"]


@dataclass(frozen=True)
class DemoSettings:
    """Data size, input sizes and training length of the demo."""

    num_clips: int = 540  # 80 % train, 20 % val, 9 balanced classes
    difficulty: float = 0.5  # SynthConfig.difficulty (nuisance strength), the synth default
    shape_colours: bool = True  # SynthConfig.shape_colours: each shape in its own hue family
    size: int = 32  # frame height = width, rendered at this size (no resize when loading)
    num_frames: int = 8  # frames per 1-s clip
    num_mel_bins: int = 32
    epochs: int = 12
    batch_size: int = 16
    lr: float = 1e-3
    avc_weight: float = 0.1
    imc_weight: float = 0.1
    proj_dim: int = 64


FULL = DemoSettings()
QUICK = DemoSettings(num_clips=27, size=32, num_frames=4, num_mel_bins=32, epochs=1, batch_size=8)


def _say(msg: str) -> None:
    print(msg, flush=True)


def demo_configs(data_dir: Path, out: Path, s: DemoSettings, seed: int, workers: int) -> dict[str, ExperimentConfig]:
    """The three experiments (``fused``, ``audio``, ``video``) on the synthetic data in ``data_dir``.

    The baselines are MMT-Tiny's own encoders (same names and overrides), each with a classifier head.
    """
    audio_size = (s.num_mel_bins, 100)  # 1 s at a 10 ms hop
    video_size = (s.num_frames, s.size, s.size)
    mmt_overrides: dict[str, Any] = {
        "audio_overrides": {"input_size": audio_size},
        "video_overrides": {"input_size": video_size},
        "proj_dim": s.proj_dim,
    }
    mmt = create_model("mmt_tiny", **mmt_overrides, num_classes=9)
    assert isinstance(mmt, AVModel) and mmt.cfg is not None
    data = DataConfig(
        clip_seconds=1.0,
        video=VideoTransformConfig(
            num_frames=s.num_frames,
            fps=float(s.num_frames),
            size=s.size,
            short_side=s.size,
            train_scale=(0.8, 1.0),  # mild crops: a hard crop can cut the shape out of the picture
        ),
        audio=AudioFeatureConfig(num_mel_bins=s.num_mel_bins, num_frames=100),
        spec_augment=SpecAugmentConfig(freq_mask_param=s.num_mel_bins // 8, time_mask_param=10),
    )
    base = ExperimentConfig(
        name="demo",
        model=ModelSpec("mmt_tiny", mmt_overrides),
        data=data,
        optim=OptimConfig(lr=s.lr, weight_decay=0.05, warmup_epochs=1.0, min_lr=s.lr / 100, grad_clip=5.0),
        train=TrainConfig(
            epochs=s.epochs,
            batch_size=s.batch_size,
            seed=seed,
            workers=workers,
            log_every=10**6,  # no per-step rows: one line per epoch, and the progress lines within an epoch
            tensorboard=False,
            device="cpu",
            precision="fp32",  # the demo's figures in the docs were measured in fp32
            resume=None,
        ),
        task=TaskSpec("av_classification", {"avc_weight": s.avc_weight, "imc_weight": s.imc_weight}),
        train_manifest=str(data_dir / "train.csv"),
        val_manifest=str(data_dir / "val.csv"),
        classes=str(data_dir / "classes.txt"),
    )

    def alone(modality: str, encoder: str, overrides: Mapping[str, Any]) -> ExperimentConfig:
        """One of MMT-Tiny's encoders with a classifier, on its own modality."""
        return replace(
            base,
            name=f"demo_{modality}_only",
            model=ModelSpec(encoder, dict(overrides)),
            data=replace(data, modalities=(modality,)),
            task=TaskSpec("classification"),
            train=replace(base.train, out_dir=str(out / modality)),
        )

    return {
        "fused": replace(base, name="demo_mmt_tiny", train=replace(base.train, out_dir=str(out / "fused"))),
        "audio": alone("audio", mmt.cfg.audio_encoder, mmt.cfg.audio_overrides),
        "video": alone("video", mmt.cfg.video_encoder, mmt.cfg.video_overrides),
    }


_TITLES = {"fused": "MMT-Tiny (audio + video)", "audio": "audio-only (MAT-Tiny)", "video": "video-only (MViTv2-tiny)"}


def _views(row: Mapping[str, Any]) -> dict[str, float]:
    """A model's val top-1 per view: the fused model's fused / audio-only / video-only, a baseline's own view."""
    if "audio_only_top1" in row:
        return {"fused": row["top1"], "audio": row["audio_only_top1"], "video": row["video_only_top1"]}
    return {row["view"]: row["top1"]}


def _table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown table: one row per model, one column per view (top-1 and, in brackets, the clips counted)."""
    lines = [
        "| model | " + " | ".join(f"{view_label(v)} top-1 (clips)" for v in VIEWS) + " | params | train time |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        views = _views(r)
        cells = []
        for v in VIEWS:
            if v not in views:
                cells.append("-")
                continue
            n = r.get("clips", {}).get(v)
            text = f"{views[v]:.3f}" + (f" ({n})" if n is not None else "")
            cells.append(f"**{text}**" if v == r["view"] else text)
        lines.append(
            f"| {_TITLES[name]} | " + " | ".join(cells) + f" | {r['params'] / 1e6:.2f} M | {r['seconds']:.0f} s |"
        )
    return lines


def run_demo(out: Path, settings: DemoSettings, workers: int, seed: int) -> dict[str, Any]:
    """Synthesise, train the three models, write the report; returns the summary."""
    from avformer.eval.plots import plot_modality_comparison
    from avformer.train.experiment import run_experiment

    summary: dict[str, Any] = {"settings": asdict(settings), "workers": workers, "seed": seed}
    data_dir = out / "data"
    t0 = time.perf_counter()
    synth = SynthConfig(
        num_clips=settings.num_clips,
        seed=seed,
        seconds=1.0,
        size=settings.size,
        fps=settings.num_frames,
        difficulty=settings.difficulty,
        shape_colours=settings.shape_colours,
    )
    _say(f"[1/5] synth: writing {settings.num_clips} clips to {data_dir}")
    write_dataset(data_dir, synth, workers=max(1, workers))
    dt = time.perf_counter() - t0
    _say(
        f"      {settings.num_clips} MP4 clips (9 classes = shape x sound; {settings.size}x{settings.size}, "
        f"{settings.num_frames} frames, 1 s, 16 kHz audio) in {data_dir} ({dt:.1f} s)"
    )
    summary["synth_seconds"] = round(dt, 1)

    configs = demo_configs(data_dir, out, settings, seed, workers)
    results: dict[str, dict[str, Any]] = {}
    for i, (name, cfg) in enumerate(configs.items(), start=2):
        _say(f"[{i}/5] training {_TITLES[name]}: {cfg.train.epochs} epochs on {cfg.train_manifest}")
        # the trainer's console: a progress bar (terminal) or a progress line every 30 s, and one line per epoch
        console = Console(soft_wrap=True)
        res = run_experiment(cfg, console=console, command=f"avformer demo (model {name})")
        s = res.summary
        # the numbers: the training log's; the clip counts: the same rule over the same validation outputs
        counted = score_outputs(res.outputs) if res.outputs is not None else {}
        row: dict[str, Any] = {"top1": s["val_top1"], "params": res.num_params, "seconds": round(res.seconds, 1)}
        row["view"] = next(iter(counted), name)  # the model's own view: fused, audio or video
        row["clips"] = {v: int(m["num_samples"]) for v, m in counted.items()}
        if "val_audio_top1" in s:
            row |= {"audio_only_top1": s["val_audio_top1"], "video_only_top1": s["val_video_top1"]}
        results[name] = row
        shown = ", ".join(
            f"{view_label(v)} {x:.3f}" + (f" ({row['clips'][v]} clips)" if v in row["clips"] else "")
            for v, x in _views(row).items()
        )
        _say(f"      val top-1: {shown}; {res.seconds:.0f} s; run folder {res.out_dir}")

    fused = results["fused"]["top1"]
    margin = fused - max(results["audio"]["top1"], results["video"]["top1"])
    summary["results"] = results
    summary["fused_margin"] = round(margin, 4)
    table = _table(results)
    plot_modality_comparison(
        {_TITLES[k].split(" (")[0]: v["top1"] for k, v in results.items()},
        out / "comparison.png",
        metric="val top-1",
        title="synthetic shapes x sounds: val top-1",
    )
    report = [
        "# avformer demo",
        "",
        "Synthetic clips: one shape (circle, square, triangle) moves while one sound (hum, chirp, rattle) plays. "
        "The class is the (shape, sound) pair, drawn independently, so a single modality can be right at most "
        "1/3 of the time (chance is 1/9)."
        + (" Each shape is drawn in its own hue family (`shape_colours`)." if settings.shape_colours else ""),
        "",
        *table,
        "",
        f"Fused minus the best single modality: {margin * 100:+.1f} points.",
        "The fused model's audio-only and video-only views mark the other input absent (`has_video` / "
        "`has_audio`); a view counts the clips that have its stream (fused: every clip), as the training log, "
        "each run's `report.md` and `avformer eval` do. Bold: each model's own view.",
        "",
        "![comparison](comparison.png)",
        "",
        "Per-model reports (curves, confusion matrices): [fused](fused/report.md), [audio](audio/report.md), "
        "[video](video/report.md).",
        "",
    ]
    (out / "report.md").write_text("\n".join(report))
    num_val = sum(1 for _ in (data_dir / "val.csv").open()) - 1
    _say(f"[5/5] results (validation set, {num_val} clips):")
    for line in table:
        _say("  " + line)
    _say(f"  fused minus the best single modality: {margin * 100:+.1f} points")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="avformer demo", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--n", type=int, default=None, help=f"number of synthetic clips (default {FULL.num_clips})")
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs per model (default {FULL.epochs})")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="data loader processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny data and 1 epoch: checks the pipeline only")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.n is not None:
        settings = replace(settings, num_clips=args.n)
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    if settings.num_clips < 27:
        parser.error("--n must be >= 27 (every class needs a validation clip)")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = run_demo(out, settings, args.workers, args.seed)
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _say(f"done in {summary['total_seconds'] / 60:.1f} min; report {out / 'report.md'}")
    return 0
