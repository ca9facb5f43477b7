"""Tasks: objectives bound to batch keys, registered by name. The trainer only calls a :class:`Task`.

Importing this package registers the built-in tasks (``classification``, ``av_classification``, ``vatt_pretrain``,
``xdc``, ``crisscross``, ``mae``, ``cav_mae``, ``mavil``, ``xkd``, ``av_sync``, ``av_correspondence``).
"""

from __future__ import annotations

from avformer.tasks import (  # noqa: F401  (self-registering)
    classification,
    correspondence,
    crisscross,
    masked,
    sync,
    vatt_pretrain,
    xdc,
    xkd,
)
from avformer.tasks.base import Batch, EpochContext, Task, av_present, present_mask
from avformer.tasks.registry import TaskData, TaskEntry, get_task, list_tasks, register_task

__all__ = [
    "Batch",
    "EpochContext",
    "Task",
    "TaskData",
    "TaskEntry",
    "av_present",
    "get_task",
    "list_tasks",
    "present_mask",
    "register_task",
]
