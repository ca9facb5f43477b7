"""Evaluation of a task over a validation loader, and the device/autocast helpers that training shares.

Distributed (``torchrun``): each rank scores its share of the validation set (no padding: no clip counted twice or
dropped), the outputs are gathered on every rank and put back in dataset order (``batch["index"]``), so the
metrics equal a single-process evaluation. Under FSDP, whose forward is a collective, ranks with fewer validation
batches repeat their last one (outputs discarded) until all are done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from rich.console import Console
from torch import Tensor

from avformer.data.dataset import LoadStats
from avformer.tasks.base import Batch, Task
from avformer.utils.distributed import all_reduce_min, gather_objects, is_dist, is_main
from avformer.utils.progress import Progress, length_of

__all__ = ["autocast_context", "evaluate"]


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def autocast_context(device: torch.device, precision: str) -> AbstractContextManager[Any]:
    """bf16 autocast on ``device`` for ``precision == "bf16"``, a no-op context for ``"fp32"``.

    ``precision`` is a resolved one: ``auto`` is resolved once per run, before any step
    (:func:`avformer.utils.precision.resolve_precision`), not here.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be 'fp32' or 'bf16' here (resolve 'auto' first), got {precision!r}")
    return nullcontext()


# ---- evaluation -------------------------------------------------------------------------------------------------


def _lockstep(loader: Iterable[Batch], device: torch.device) -> Iterator[tuple[Batch, bool]]:
    """``(batch, real)`` pairs, padded with repeats of the last real batch (``real`` False) up to the largest
    number of batches of any rank, for models whose forward is a collective (FSDP)."""
    n = len(loader)  # type: ignore[arg-type]
    most = -all_reduce_min(-n, device)
    last: Batch | None = None
    for batch in loader:
        if batch["batch_size"] > 0:
            last = batch
        yield batch, True
    for _ in range(most - n):
        if last is None:
            raise RuntimeError("FSDP evaluation: a rank has no validation clip to pad its batches with")
        yield last, False


@torch.no_grad()
def evaluate(
    task: Task,
    loader: Iterable[Batch],
    *,
    device: torch.device,
    precision: str = "fp32",
    lockstep: bool = False,
    progress: bool = False,
    console: Console | None = None,
) -> tuple[dict[str, float], LoadStats]:
    """Run ``validation_step`` over ``loader``, concatenate its outputs and return ``validation_end``'s metrics.

    Floating-point outputs are gathered on the CPU as float32 (bf16 logits would round the metrics). Under
    distributed training each rank passes its own share of the validation set; the outputs (and the load stats)
    of all ranks are gathered and sorted by ``batch["index"]`` (dataset order), so every rank computes the
    metrics of the whole set. ``lockstep``: ranks with fewer batches repeat their last one, discarding its
    outputs (needed when the forward itself is a collective, as under FSDP). ``progress``: show the batches
    done on ``console`` (rank 0; :class:`~avformer.utils.progress.Progress`). ``precision``: ``fp32`` or ``bf16``
    (autocast), the run's resolved precision.
    """
    model = task.model
    was_training = model.training
    model.eval()
    stats = LoadStats()
    gathered: dict[str, list[Tensor]] = {}
    order: list[Tensor] = []
    pairs = _lockstep(loader, device) if lockstep and is_dist() else ((b, True) for b in loader)
    bar = Progress("validation", length_of(loader), unit="batches", console=console, enabled=progress and is_main())
    try:
        with bar:
            for batch, real in pairs:
                if real:
                    stats.update(batch)
                    bar.advance(clips=stats.loaded)
                if batch["batch_size"] == 0:
                    continue
                with autocast_context(device, precision):
                    out = task.validation_step(_to_device(batch, device))
                if not real:
                    continue
                for k, v in out.items():
                    v = v.detach().cpu()
                    gathered.setdefault(k, []).append(v.float() if v.is_floating_point() else v)
                if isinstance(batch.get("index"), Tensor):
                    order.append(batch["index"].cpu())
    finally:
        model.train(was_training)
    local = {k: torch.cat(v) for k, v in gathered.items()}
    if is_dist():
        rows = len(next(iter(local.values()))) if local else 0
        index = torch.cat(order) if order and sum(len(o) for o in order) == rows else None
        parts = gather_objects((local, index, stats.loaded, stats.skipped))
        stats = LoadStats(sum(p[2] for p in parts), [s for p in parts for s in p[3]])
        parts = [p for p in parts if p[0]]
        if not parts:
            return {}, stats
        local = {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]}
        if all(p[1] is not None for p in parts):
            perm = torch.argsort(torch.cat([p[1] for p in parts]), stable=True)  # back to dataset order
            local = {k: v[perm] for k, v in local.items()}
    if not local:
        return {}, stats
    metrics = task.validation_end(local)
    return {k: float(v) for k, v in metrics.items()}, stats
