"""Devices: ``"auto"`` resolved one way everywhere, and a wait for queued GPU work before a clock is read."""

from __future__ import annotations

import re

import torch

from avformer.utils.errors import EnvironmentFailure, UsageError

__all__ = ["DEVICE_PATTERN", "resolve_device", "synchronize"]

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else the CPU; else ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        UsageError: a name that is none of these (e.g. ``tpu``).
        EnvironmentFailure: a CUDA device (or MPS) that this machine does not have.
    """
    if DEVICE_PATTERN.fullmatch(name) is None:
        raise UsageError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EnvironmentFailure(f"device {name!r}: no CUDA GPU is available here (use device auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise EnvironmentFailure(f"device {name!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EnvironmentFailure(f"device {name!r}: MPS is not available here (use device auto or cpu)")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU), so that timings measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
