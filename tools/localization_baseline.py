"""A hand-made sound-source localiser for event clips, as a reference for the learned AVOL heatmaps.

No training: per 4 × 4-pixel cell of the model's input frames, the frame-difference energy over time; the audio
energy envelope (mean log-mel) resampled onto the frames; the heatmap is each cell's centred time course dotted with
the centred envelope, divided by the cell's norm. Scored by the same pointing game as ``avformer localize --eval``
(burst frames and all frames), on the frames and sound the run's data config gives.

    python tools/localization_baseline.py configs/experiment/avc_synth.yaml [--limit N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from avformer.config import load
from avformer.data.manifest import read_manifest
from avformer.eval.localization import Localizer, pointing_game
from avformer.models.loading import build_model
from avformer.tasks.registry import TaskData, get_task


def heatmap(video: torch.Tensor, logmel: torch.Tensor, cell: int = 4) -> torch.Tensor:
    """(C, T, H, W) frames and (..., F, S) log-mel -> (H / cell, W / cell) heatmap."""
    T = video.shape[1]
    env = logmel.reshape(-1, logmel.shape[-1]).mean(0)  # energy envelope over the log-mel's steps
    env = F.adaptive_avg_pool1d(env[None, None], T)[0, 0][1:]  # onto frames 1..T-1
    diff = (video[:, 1:] - video[:, :-1]).abs().sum(0)  # (T-1, H, W)
    diff = F.avg_pool2d(diff, cell)  # (T-1, h, w)
    d = diff - diff.mean(0, keepdim=True)
    e = env - env.mean()
    return (d * e[:, None, None]).sum(0) / (d.norm(dim=0) + 1e-6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("config", help="an av_correspondence recipe (its val manifest and data config)")
    p.add_argument("--limit", type=int, default=None, help="the first N val clips")
    args = p.parse_args()
    cfg = load(args.config)
    entry = get_task(cfg.task.name)  # the Localizer wants a task; its (untrained) heads are not used
    task = entry.build(build_model(cfg.model), entry.parse_options(cfg.task.options), TaskData.of(cfg.data))
    loc = Localizer(cfg, task)
    rows = list(read_manifest(cfg.val_manifest))[: args.limit]
    clips = [loc.load(r.path) for r in rows]
    for c in clips:
        c.heatmap = c.gradient = heatmap(c.sample["video"], c.sample["audio"])
    res = pointing_game(loc, clips)
    print(
        f"hand-made localiser on {int(res['pointing_clips'])} clips: pointing {res['pointing']:.3f} at the burst "
        f"frames (chance {res['pointing_chance']:.3f}), {res['pointing_all_frames']:.3f} over all frames "
        f"(chance {res['pointing_chance_all_frames']:.3f})"
    )


if __name__ == "__main__":
    main()
