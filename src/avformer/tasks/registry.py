"""Registry of tasks: the unit of an experiment, named in the config's ``task:`` section.

A task is registered with the dataclass of its options and a builder::

    @dataclass(frozen=True)
    class MyOptions:
        weight: float = 1.0

    @register_task("my_task", options=MyOptions, supervised=False)
    def build_my_task(model: nn.Module, options: MyOptions, data: TaskData) -> Task:
        return MyTask(model, options)

and a config selects it with ``task: {name: my_task, options: {weight: 0.5}}``. The options are read strictly (an
unknown key or a wrong type is a :class:`~avformer.config.ConfigError` naming ``task.options.<key>``). ``supervised``
says what the task does with labels: a supervised task gets the class list and the model is built with ``num_classes``;
a self-supervised one never sees a label in training (the train manifest's labels are dropped before anything reads
them) and ``avformer pretrain`` runs it. The built-in tasks register themselves when :mod:`avformer.tasks` is imported,
which Python does before it runs this module. ``reads_text`` asks the data layer to resolve each clip's text (manifest
column, sidecar file, subtitle stream).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from avformer.config import ConfigError, ExperimentConfig, LossConfig, TaskSpec, structure, to_dict
from avformer.data.config import DataConfig
from avformer.tasks.base import Task
from avformer.utils.names import unknown_name_hint

__all__ = [
    "TaskData",
    "TaskEntry",
    "get_task",
    "list_tasks",
    "register_task",
    "resolve_task",
    "unregister_task",
]


@dataclass(frozen=True)
class TaskData:
    """What the data tells a task builder: the class names (empty for unlabeled data), whether rows may carry
    several labels, the modalities the data config loads and the views per training clip."""

    classes: tuple[str, ...] = ()
    multilabel: bool = False
    modalities: tuple[str, ...] = ("video", "audio")
    num_views: int = 1  # data.views.num_views

    @classmethod
    def of(cls, data: DataConfig, classes: Sequence[str] = (), multilabel: bool = False) -> TaskData:
        """What ``data`` (a data config) and the manifest's ``classes`` tell a builder."""
        return cls(tuple(classes), multilabel, tuple(data.modalities), data.views.num_views)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


Builder = Callable[[nn.Module, Any, TaskData], Task]
_B = TypeVar("_B", bound=Builder)


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: its name, options dataclass, builder and what it needs from the data."""

    name: str
    options: type
    build: Builder
    supervised: bool
    reads_text: bool
    summary: str

    def parse_options(self, options: Mapping[str, Any]) -> Any:
        """The options dataclass from the config's ``task.options`` mapping (strict)."""
        try:
            return structure(self.options, dict(options))
        except ConfigError as e:
            raise ConfigError(f"task.options ({self.name}): {e}") from e

    def model_kwargs(self, data: TaskData) -> dict[str, Any]:
        """Keyword arguments the data adds to ``create_model``: ``num_classes`` for a supervised task."""
        return {"num_classes": data.num_classes} if self.supervised else {}


_TASKS: dict[str, TaskEntry] = {}


def register_task(name: str, *, options: type, supervised: bool = True, reads_text: bool = False) -> Callable[[_B], _B]:
    """Decorator: register ``build(model, options, data) -> Task`` as task ``name`` (see the module docstring)."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"task {name!r}: options must be a dataclass, got {options!r}")

    def deco(fn: _B) -> _B:
        if name in _TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _TASKS[name] = TaskEntry(name, options, fn, supervised, reads_text, doc[0] if doc else "")
        return fn

    return deco


def unregister_task(name: str) -> None:
    """Remove a task (for tests that register a toy task)."""
    _TASKS.pop(name, None)


def get_task(name: str) -> TaskEntry:
    """The registered task ``name``.

    Raises:
        ConfigError: no such task (the message lists close names, or all of them).
    """
    if name not in _TASKS:
        hint = unknown_name_hint(name, _TASKS)
        raise ConfigError(f"task.name: unknown task {name!r}; {hint}")
    return _TASKS[name]


def list_tasks() -> list[TaskEntry]:
    """Every registered task, by name."""
    return [_TASKS[n] for n in sorted(_TASKS)]


def _from_legacy_loss(loss: LossConfig | None, entry: TaskEntry) -> dict[str, Any]:
    """The task options that an old flat ``loss:`` section meant for ``entry``. A key the task has no option for
    must still hold its old default (every old config dumped them all), else it is an error naming it."""
    if loss is None:
        return {}
    old, default = to_dict(loss), to_dict(LossConfig())
    fields = {f.name for f in dataclasses.fields(entry.options)}
    stray = sorted(k for k, v in old.items() if k not in fields and v != default[k])
    if stray:
        raise ConfigError(
            f"loss.{stray[0]}={old[stray[0]]!r} does not apply to task {entry.name!r} (its options: {sorted(fields)})"
        )
    return {k: v for k, v in old.items() if k in fields and v != default[k]}


def resolve_task(cfg: ExperimentConfig, infer: Callable[[], str]) -> tuple[TaskEntry, Any, str | None]:
    """The task of ``cfg``: ``(entry, parsed options, notice)``.

    A config with ``task:`` names its task; one without it (written before tasks were named) gets the task that
    ``infer()`` names, with the options its flat ``loss:`` section meant, and a one-line ``notice`` that says what to
    write instead (None for a config in the current form).

    Raises:
        ConfigError: an unknown task, a bad option, both sections at once, or an old loss key the task lacks.
    """
    if cfg.task is not None:
        if cfg.loss is not None:
            raise ConfigError("the config has both task: and the old loss: section; move the loss keys to task.options")
        entry = get_task(cfg.task.name)
        return entry, entry.parse_options(cfg.task.options), None
    entry = get_task(infer())
    options = _from_legacy_loss(cfg.loss, entry)
    spec = TaskSpec(entry.name, options)
    notice = (
        f"the config has no task: section (old form); running task: {{name: {spec.name}, options: {options}}} "
        "from its loss: section (write that in the YAML instead)"
    )
    return entry, entry.parse_options(options), notice
