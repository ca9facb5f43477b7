"""The Task protocol: the only thing the trainer knows about models and objectives.

A Task binds a model, its objectives and the batch keys they read (open_clip / scenic style). The trainer moves
the batch to the device, runs ``training_step`` under autocast and does the optimisation; it concatenates the
per-sample tensors that ``validation_step`` returns over the whole validation set and hands them to
``validation_end`` for the metrics. A new objective or model therefore never touches the loop.

Batches are the dicts of :func:`avformer.data.dataset.collate`: tensors stacked on dim 0 plus ``batch_size``
(int) and ``skipped`` (list). The trainer never passes a batch with ``batch_size == 0``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

__all__ = ["Batch", "Task", "present_mask"]

Batch = dict[str, Any]


def present_mask(batch: Batch, key: str, n: int, device: torch.device) -> Tensor:
    """``batch[key]`` (e.g. ``has_audio``) as a bool mask on ``device``; all True when the batch has no such key."""
    mask = batch.get(key)
    if mask is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    return mask.to(device=device, dtype=torch.bool)


@runtime_checkable
class Task(Protocol):
    """What the trainer calls.

    Attributes:
        model: every trainable parameter the optimizer should see (the trainer moves it to the device,
            switches train/eval mode, averages it for EMA and saves its state dict).
    """

    model: nn.Module

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Loss of one batch (a scalar tensor with grad; the mean over its samples) and extra scalars to log."""
        ...

    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample outputs to accumulate, each with the batch on dim 0 (e.g. ``logits`` (B, K), ``label`` (B,))."""
        ...

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        """Metrics from the outputs of the whole validation set (each key concatenated on dim 0, on the CPU)."""
        ...
