"""Time of one AdamW step per kernel (``optim.implementation``) over a registered model's parameters.

    python tools/bench_adamw.py [--models mat_base ast_base] [--repeats 5] [--threads N]

Builds each model, fills every gradient with small random values and times ``optimizer.step()`` for the
``for_loop``, ``foreach`` and ``fused`` kernels with the project's parameter groups (weight decay 0.05). Every repeat
runs the three kernels back to back in a rotating order and the median is kept, so the ratios hold on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from avformer.config import OptimConfig
from avformer.models.registry import create_model
from avformer.train.optim import build_optimizer

KERNELS = ("for_loop", "foreach", "fused")


def step_ms(opt: torch.optim.Optimizer, steps: int = 3) -> float:
    """Mean wall time of ``steps`` optimizer steps, in ms (after one warm-up step)."""
    opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["mat_base", "ast_base"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median ms per AdamW step over {args.repeats}")
    for name in args.models:
        model = create_model(name, num_classes=10)
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opts = {k: build_optimizer(model, OptimConfig(implementation=k)) for k in KERNELS}
        times: dict[str, list[float]] = {k: [] for k in KERNELS}
        for r in range(args.repeats):
            order = KERNELS[r % 3 :] + KERNELS[: r % 3]
            for k in order:
                times[k].append(step_ms(opts[k]))
        med = {k: statistics.median(v) for k, v in times.items()}
        n = sum(p.numel() for p in model.parameters()) / 1e6
        ratios = ", ".join(f"{k} {med[k]:.0f} ms ({med['for_loop'] / med[k]:.2f}x)" for k in KERNELS)
        print(f"{name} ({n:.1f} M params): {ratios}")


if __name__ == "__main__":
    main()
