"""Tasks: objectives bound to batch keys. The trainer only calls a :class:`~avformer.tasks.base.Task`."""

from __future__ import annotations

from avformer.tasks.base import Batch, Task, present_mask

__all__ = ["Batch", "Task", "present_mask"]
