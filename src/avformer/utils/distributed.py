"""Collective helpers for losses that need the global batch (contrastive negatives across ranks).

Every helper works without an initialised process group: then the world is one process, ``rank() == 0`` and the
gathers return their input. Under ``torchrun`` (gloo on CPU, NCCL on GPU) they use ``torch.distributed``.

``gather_with_grad`` is the piece contrastive losses need. Two backward rules exist and both are offered:

* ``sync_grads=True`` (default): the exact adjoint of all-gather. Backward sums the incoming gradient over ranks
  (all-reduce) and returns this rank's slice, like ``torch.distributed.nn.functional.all_gather``. A rank that
  computes a loss for its *local anchors against global candidates* then receives, for its own samples, the
  gradient of the *sum over ranks* of the local losses: the terms where its samples are candidates of another
  rank's anchors included.
* ``sync_grads=False``: all-gather without a backward collective, then the local slice is replaced by the local
  tensor so that gradient flows into it (open_clip's ``gather_with_grad=False`` path). Gradients of other ranks'
  anchors with respect to this rank's samples are lost. That is exact only when every rank computes the loss of
  the *whole* global batch (open_clip ``local_loss=False``); with local anchors it gives a partial gradient
  (``tests/train/test_distributed.py`` shows the difference on two real processes).

All ranks must pass tensors of the same shape (a ``DistributedSampler`` gives every rank the same number of
samples); ``torch.distributed.all_gather`` fails otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_min",
    "all_reduce_sum",
    "barrier",
    "gather_no_grad",
    "gather_objects",
    "gather_with_grad",
    "init_distributed",
    "is_dist",
    "is_main",
    "rank",
    "rank_offset",
    "world_size",
]


def is_dist() -> bool:
    """True when ``torch.distributed`` is available, initialised and spans more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes in the default group (1 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def rank() -> int:
    """This process's rank in the default group (0 without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that logs, writes checkpoints and plots."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if is_dist():
        dist.barrier()


def all_reduce_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum over ranks of a few numbers (float64; ``device`` must suit the backend: cuda for NCCL)."""
    if not is_dist():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def all_reduce_min(value: int, device: torch.device | str = "cpu") -> int:
    """The smallest ``value`` over ranks (``value`` itself in one process)."""
    if not is_dist():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in one process). For small things: eval outputs."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _sizes(n: int, device: torch.device) -> list[int]:
    """Every rank's ``n`` (dim-0 length), in rank order."""
    t = torch.tensor([n], dtype=torch.int64, device=device)
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    return [int(p.item()) for p in parts]


def _all_gather_list(x: torch.Tensor) -> list[torch.Tensor]:
    """All-gather ``x`` from every rank; returns ``world_size()`` tensors (no autograd).

    The ranks may hold different numbers of rows (a clip that failed to load, the last shard batch): the sizes are
    exchanged first, every rank sends ``x`` padded to the largest, and each part is cut back to its own length.
    """
    x = x.detach().contiguous()
    # gloo has no bool all_gather: move bools as uint8
    send = x.to(torch.uint8) if x.dtype == torch.bool else x
    sizes = _sizes(send.shape[0], send.device)
    longest = max(sizes)
    if send.shape[0] < longest:
        send = torch.cat([send, send.new_zeros((longest - send.shape[0], *send.shape[1:]))])
    parts = [torch.empty_like(send) for _ in sizes]
    dist.all_gather(parts, send)
    parts = [p[:n] for p, n in zip(parts, sizes, strict=True)]
    if x.dtype == torch.bool:
        parts = [p.bool() for p in parts]
    return parts


def rank_offset(n: int, device: torch.device | str = "cpu") -> int:
    """Where this rank's ``n`` rows start in a gathered tensor: the rows of the ranks before it (0 in one process).

    A collective under a process group: every rank must call it.
    """
    if not is_dist():
        return 0
    return sum(_sizes(n, torch.device(device))[: dist.get_rank()])


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, detached. Labels, masks and counts go through here.

    Args:
        x: (B_r, ...) any dtype (bool included); trailing dims equal on every rank, B_r may differ.

    Returns:
        (Σ B_r, ...) in rank order (rank ``r``'s rows start at :func:`rank_offset`); ``x.detach()`` in one process.
    """
    if not is_dist():
        return x.detach()
    return torch.cat(_all_gather_list(x), dim=0)


class _AllGatherSumGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward all-reduces (sums) the gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        parts = _all_gather_list(x)
        ctx.start = sum(p.shape[0] for p in parts[: dist.get_rank()])
        ctx.batch = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # Σ over ranks of d(loss_s)/d(gathered)
        return grad[ctx.start : ctx.start + ctx.batch]


def gather_with_grad(x: torch.Tensor, *, sync_grads: bool = True) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, keeping autograd to the local part.

    Args:
        x: (B_r, ...) floating tensor; trailing dims equal on every rank, B_r may differ.
        sync_grads: True: backward all-reduces the gradient of the gathered tensor (exact adjoint, one extra
            collective per backward; every rank must run backward through it). False: no backward collective,
            only this rank's own loss reaches ``x`` (see the module docstring for when that is exact).

    Returns:
        (Σ B_r, ...) in rank order (rank ``r``'s rows start at :func:`rank_offset`); ``x`` itself in one process.
    """
    if not is_dist():
        return x
    if sync_grads:
        out: torch.Tensor = _AllGatherSumGrad.apply(x)  # type: ignore[no-untyped-call]  # torch leaves apply untyped
        return out
    parts: list[torch.Tensor] = list(_all_gather_list(x))
    parts[dist.get_rank()] = x  # the local slice carries the local autograd graph
    return torch.cat(parts, dim=0)


def init_distributed(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    NCCL when CUDA is available and ``device`` is not ``cpu`` (each process then uses GPU ``LOCAL_RANK``), else
    gloo. Returns True when this call created the group (the caller destroys it), False when there is nothing to do.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True
