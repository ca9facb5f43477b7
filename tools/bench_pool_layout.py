"""Training-step time with the multiscale pooling convolutions in the layout before and the layout now.

    python tools/bench_pool_layout.py [--config configs/experiment/av_digits_mmt_tiny.yaml] [--precision fp32 bf16]
                                      [--rounds 3] [--steps 4] [--threads N]

"before": the pooling convolutions (MViTv2 / MAT pooling attention, ``layers/pooling_attention.py``) read a
contiguous input in the autocast dtype. "now": a channels-last input in fp32 (``TokenPool.fast_layout``). Both run
the same model, weights and synthetic batch through the trainer's step (forward, backward, optimizer); every round
times both layouts back to back, alternating which goes first, and the median step of each is kept, so the ratio
holds on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from avformer.cli.models import default_input_of
from avformer.config import apply_overrides, load
from avformer.layers.pooling_attention import TokenPool
from avformer.models.av_model import AVModel
from avformer.tasks.inference import input_modality
from avformer.tasks.registry import TaskData
from avformer.train.experiment import compose
from avformer.train.speed import synthetic_batch, train_step_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/experiment/av_digits_mmt_tiny.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per layout and round")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = apply_overrides(load(args.config), list(args.set))
    task = compose(cfg, TaskData.of(cfg.data, tuple(str(i) for i in range(10)))).task
    model = task.model
    if isinstance(model, AVModel):
        shapes = {"audio": default_input_of(model.audio_encoder), "video": default_input_of(model.video_encoder)}
    else:
        shapes = {input_modality(model): default_input_of(model)}
    bs = args.batch_size or cfg.train.batch_size
    batch = synthetic_batch(shapes.get("audio"), shapes.get("video"), bs, 10, "cpu")
    print(f"{cfg.model.name}, batch {bs}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for precision in args.precision:
        times: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for fast in (True, False) if r % 2 else (False, True):
                TokenPool.fast_layout = fast
                rate = train_step_rate(task, batch, cfg, device=torch.device("cpu"), precision=precision,
                                       steps=args.steps, warmup=2)  # fmt: skip
                times[fast].append(rate.median_step_s)
        TokenPool.fast_layout = True
        before, now = statistics.median(times[False]), statistics.median(times[True])
        print(f"  {precision}: step {before:.3f} s before, {now:.3f} s now ({before / now:.2f}x)")


if __name__ == "__main__":
    main()
