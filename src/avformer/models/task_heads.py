"""Modules a task trains beside a model without being part of it (a clustering head, a SimSiam predictor).

A self-supervised task often needs parameters that only its objective reads: XDC's cluster classifiers, CrissCross's
predictors. They must train with the model (the trainer's optimizer, EMA, DDP and checkpoints see ``task.model`` only)
but a user of the trained encoders (a probe, ``embed``, fine-tuning) never needs them. The task therefore attaches
them to the model under one reserved name, :data:`TASK_HEADS`, with :func:`attach_task_heads`; checkpoints carry them
(a resume restores them), and :func:`avformer.models.loading.load_run` drops them (:func:`strip_task_heads`) when it
rebuilds the bare model from a run's config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

__all__ = ["TASK_HEADS", "attach_task_heads", "strip_task_heads"]

TASK_HEADS = "task_heads"


def attach_task_heads(model: nn.Module, heads: Mapping[str, nn.Module]) -> nn.ModuleDict:
    """Register ``heads`` on ``model`` as ``model.task_heads`` (a ModuleDict) and return it.

    Raises:
        ValueError: the model already has task heads (two tasks on one model), or a model attribute of that name.
    """
    if hasattr(model, TASK_HEADS):
        raise ValueError(f"{type(model).__name__} already has {TASK_HEADS!r}: one task's heads per model")
    model.add_module(TASK_HEADS, nn.ModuleDict(dict(heads)))
    out = getattr(model, TASK_HEADS)
    assert isinstance(out, nn.ModuleDict)
    return out


def strip_task_heads(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` (a model state dict) without the entries of :data:`TASK_HEADS`."""
    prefix = TASK_HEADS + "."
    return {k: v for k, v in state.items() if not k.startswith(prefix)}
