"""Devices: ``"auto"`` resolved one way everywhere, and a wait for queued GPU work before a clock is read."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "synchronize"]


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else the CPU; any other name as torch reads it (``cpu``, ``cuda:1``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU), so that timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
