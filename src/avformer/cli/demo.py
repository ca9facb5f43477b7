"""``avformer demo``: the main job on the embedded synthetic data.

Today (before the trainer lands) the demo exercises the whole data path and the encoders end to end:

1. writes the procedurally generated audio-visual dataset (real H.264 + AAC MP4 files, see ``avformer synth``);
2. probes every file (the same check as ``avformer probe``);
3. loads every clip through :class:`~avformer.data.AVDataset` with DataLoader workers (decode, video transforms,
   Kaldi log-mel), counting skipped files;
4. runs one batch through the multiscale audio transformer (``mat_tiny``) and a small MViTv2 video encoder and
   prints the token grids they produce.

Everything it writes goes under ``--out`` (default ``runs/demo``), with a ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from avformer.data.audio import AudioFeatureConfig
from avformer.data.dataset import AVDataset, DataConfig, LoadStats, make_loader
from avformer.data.manifest import read_manifest
from avformer.data.media import probe
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.video import VideoTransformConfig
from avformer.registry import create_model

__all__ = ["main"]


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_demo(out: Path, num_clips: int, workers: int, seed: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    data_dir = out / "data"
    t0 = time.perf_counter()
    synth_cfg = SynthConfig(num_clips=num_clips, seed=seed)
    manifest_path = write_dataset(data_dir, synth_cfg, workers=workers)
    dt = time.perf_counter() - t0
    _say(
        f"[1/4] synth: wrote {num_clips} MP4 clips (H.264 + AAC, {synth_cfg.size}px, {synth_cfg.seconds:g} s) "
        f"to {data_dir} in {dt:.1f} s"
    )
    summary["synth"] = {"clips": num_clips, "seconds": round(dt, 2), "manifest": str(manifest_path)}

    manifest = read_manifest(manifest_path, classes=data_dir / "classes.txt")
    t0 = time.perf_counter()
    statuses = [probe(row.path).status for row in manifest]
    usable = sum(s != "error" for s in statuses)
    dt = time.perf_counter() - t0
    _say(f"[2/4] probe: {usable}/{len(statuses)} files usable ({statuses.count('ok')} with both streams) in {dt:.1f} s")
    summary["probe"] = {"usable": usable, "files": len(statuses), "ok": statuses.count("ok")}

    cfg = DataConfig(
        clip_seconds=synth_cfg.seconds,
        video=replace(
            VideoTransformConfig(),
            num_frames=8,
            fps=8 / synth_cfg.seconds,
            size=synth_cfg.size,
            short_side=synth_cfg.size,
        ),
        audio=replace(AudioFeatureConfig(), num_mel_bins=64, num_frames=round(synth_cfg.seconds * 100)),
    )
    ds = AVDataset(manifest, cfg, train=True, seed=seed)
    stats = LoadStats()
    first: dict[str, Any] | None = None
    t0 = time.perf_counter()
    for batch in make_loader(ds, batch_size=16, shuffle=True, num_workers=workers, seed=seed):
        stats.update(batch)
        if first is None and batch["batch_size"]:
            first = batch
    dt = time.perf_counter() - t0
    _say(
        f"[3/4] load: {stats.summary()} with {workers} workers, {stats.loaded / dt:.0f} clips/s; "
        f"a batch is video {tuple(first['video'].shape) if first else None}, "
        f"audio {tuple(first['audio'].shape) if first else None}"
    )
    summary["load"] = {"summary": stats.summary(), "clips_per_s": round(stats.loaded / dt, 1), "workers": workers}

    assert first is not None
    audio, video = first["audio"], first["video"]
    mat = create_model("mat_tiny", input_size=tuple(audio.shape[-2:])).eval()
    mvit = create_model("mvit_v2_s_16x4", input_size=tuple(video.shape[-3:])).eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        a_out = mat.forward_features(audio)
        v_out = mvit.forward_features(video)
    dt = time.perf_counter() - t0
    _say(
        f"[4/4] models: mat_tiny on audio {tuple(audio.shape)} -> tokens {tuple(a_out.tokens.shape)} on a "
        f"(freq x time) grid {a_out.grid}; mvit_v2_s_16x4 on video {tuple(video.shape)} -> tokens "
        f"{tuple(v_out.tokens.shape)} on a (t x h x w) grid {v_out.grid}; {dt:.1f} s for both"
    )
    summary["models"] = {
        "mat_tiny": {"tokens": list(a_out.tokens.shape), "grid": list(a_out.grid)},
        "mvit_v2_s_16x4": {"tokens": list(v_out.tokens.shape), "grid": list(v_out.grid)},
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="avformer demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--n", type=int, default=240, help="number of synthetic clips (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="DataLoader worker processes (default: min(2, CPUs))",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="dataset, sampling and augmentation seed (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = run_demo(out, args.n, args.workers, args.seed)
    summary["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _say(f"done in {summary['total_seconds']} s; summary in {out / 'summary.json'}")
    _say("next: training MMT on this data arrives with the trainer (issue: MMT end to end).")
    return 0
