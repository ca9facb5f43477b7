"""Exponential moving average (EMA) of a model's weights.

After every optimizer step, each floating-point entry of the state dict (parameters and float buffers such as
BatchNorm running statistics) is updated as ``ema = decay * ema + (1 - decay) * value``; integer buffers
(``num_batches_tracked``) are copied. There is no decay warmup: with ``decay=0.9999`` the average needs ~10k
steps to forget its initialisation, so pick a decay that fits the run length (timm's ``ModelEmaV3`` offers a
warmup; this one stays minimal). Evaluation uses :meth:`ModelEma.swap`, which puts the averaged weights into the
live model and restores the trained ones afterwards, so a Task never needs a second model object.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["ModelEma"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP / DataParallel wrapper (``model`` itself otherwise)."""
    inner = getattr(model, "module", None)  # DDP / DataParallel
    return inner if isinstance(inner, nn.Module) else model


class ModelEma:
    """Shadow copy of ``model``'s state dict, averaged by :meth:`update`.

    Args:
        model: the model being trained (its current weights initialise the average).
        decay: weight of the old average per update, in [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in unwrap_model(model).state_dict().items()
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights."""
        for k, v in unwrap_model(model).state_dict().items():
            ema = self.shadow[k]
            if ema.is_floating_point():
                ema.mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
            else:
                ema.copy_(v)
        self.updates += 1

    @contextmanager
    def swap(self, model: nn.Module) -> Iterator[None]:
        """Within the block ``model`` holds the EMA weights; its own weights come back afterwards."""
        inner = unwrap_model(model)
        backup = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        inner.load_state_dict(self.shadow)
        try:
            yield
        finally:
            inner.load_state_dict(backup)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model; differing keys: {sorted(missing)[:10]}")
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
        self.updates = int(state["updates"])
