"""The module that training calls under ``torchrun``: DistributedDataParallel or FSDP2, chosen by ``train.strategy``.

``train.strategy: ddp`` (DistributedDataParallel, the default) or ``fsdp`` (FSDP2 ``fully_shard``: every element of
every ``nn.ModuleList`` of the model, i.e. its blocks, becomes one shard unit, then the root). In a single process
the model is used as it is. What the trainer synchronises between the processes (global batch, clip weighting,
logged means, stop signals) is described in :mod:`avformer.train.trainer`.
"""

from __future__ import annotations

import torch
from torch import nn

from avformer.utils.distributed import is_dist

__all__ = ["wrap_model"]


def wrap_model(
    model: nn.Module, strategy: str, device: torch.device, *, find_unused_parameters: bool = False
) -> nn.Module:
    """The module that training calls under an initialised process group: DDP, or the model sharded in place.

    Returns ``model`` itself in a single process, and for ``fsdp`` (FSDP2 shards the module in place: its
    parameters become DTensors; build the optimizer afterwards). ``find_unused_parameters`` is DDP's flag: set it
    when the task's loss leaves some parameters without gradients (e.g. contrastive projection heads of a CE-only
    recipe), which DDP otherwise reports as an error at the next step.
    """
    if not is_dist():
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            return DistributedDataParallel(model, device_ids=[index], find_unused_parameters=find_unused_parameters)
        return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in list(model.modules()):
            if isinstance(module, nn.ModuleList):
                for block in module:
                    fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"unknown strategy {strategy!r} (expected 'ddp' or 'fsdp')")
