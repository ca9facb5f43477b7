"""Registry of named model variants and the ``create_model`` factory.

The model families register themselves when :mod:`avformer.models` is imported, which Python does before it runs
this module, so the table is full whichever way it is reached.

A variant is a builder registered under a name (``mat_tiny``, ``mvit_v2_s_16x4``, ``ast_base``). Each builder
accepts keyword overrides and routes them itself: fields of the family's frozen config dataclass go through
``dataclasses.replace`` and runtime keys (``num_classes``, ``drop_path_rate``...) to the constructor. Unknown keys
raise ``TypeError`` naming the valid ones, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "check_field_types",
    "create_model",
    "is_model",
    "list_models",
    "register_model",
    "split_overrides",
    "standalone_overrides",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_STANDALONE: dict[str, Callable[..., dict[str, Any] | None]] = {}
_F = TypeVar("_F", bound=Callable[..., nn.Module])


def register_model(name: str, *, standalone: Callable[..., dict[str, Any] | None] | None = None) -> Callable[[_F], _F]:
    """Decorator: register ``fn`` as the builder of variant ``name`` (a registry key, never parsed).

    Args:
        standalone: for a variant built from another run (``init_from``), ``standalone(**overrides)`` returns the
            overrides that rebuild the same architecture without that run (or None when nothing needs replacing);
            checkpoints carry them (see :func:`standalone_overrides`).
    """

    def deco(fn: _F) -> _F:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = fn
        if standalone is not None:
            _STANDALONE[name] = standalone
        return fn

    return deco


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a substring."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or pattern in n]


def is_model(name: str) -> bool:
    return name in _REGISTRY


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered variant, applying architecture and runtime overrides.

    Raises:
        KeyError: ``name`` is not registered (the message lists close names).
        TypeError: an override is neither a config field nor a runtime argument of the family.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "`avformer models` lists them all"
        raise KeyError(f"unknown model {name!r}; {hint}")
    return _REGISTRY[name](**overrides)


def standalone_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The overrides that rebuild variant ``name`` without the run it was built from, or None when the spec's own
    overrides already do (every variant but those registered with ``standalone=``)."""
    fn = _STANDALONE.get(name)
    return None if fn is None else fn(**overrides)


def split_overrides(cfg: Any, overrides: dict[str, Any], runtime_keys: Iterable[str]) -> tuple[Any, dict[str, Any]]:
    """Split ``overrides`` into a replaced config dataclass and the runtime keyword arguments.

    Args:
        cfg: a (frozen) dataclass instance with the variant's architecture.
        overrides: user keys, each a field of ``cfg`` or one of ``runtime_keys``.
        runtime_keys: constructor arguments that are not architecture (``num_classes``...).

    Returns:
        ``(new_cfg, runtime_kwargs)``.
    """
    fields = {f.name for f in dataclasses.fields(cfg)}
    runtime = set(runtime_keys)
    unknown = sorted(set(overrides) - fields - runtime)
    if unknown:
        raise TypeError(
            f"unknown override(s) {unknown} for {type(cfg).__name__}; "
            f"valid config fields: {sorted(fields)}; runtime keys: {sorted(runtime)}"
        )
    arch = {k: v for k, v in overrides.items() if k in fields}
    rt = {k: v for k, v in overrides.items() if k in runtime}
    check_field_types(type(cfg), arch)
    return dataclasses.replace(cfg, **arch), rt


def check_field_types(cls: type, values: Mapping[str, Any]) -> None:
    """Refuse a value that cannot fit its dataclass field's annotation (``proj_dim="abc"``), before it reaches code
    that would fail with an unrelated message. Only plain annotations are read (bool, int, float, str, tuple, list,
    dict, None and unions of them); others pass.

    Raises:
        TypeError: ``override KEY=VALUE: expected TYPE, got TYPE``.
    """
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve here: no type check
        return
    for key, value in values.items():
        if key in hints and _matches(value, hints[key]) is False:
            raise TypeError(f"override {key}={value!r}: expected {_hint_name(hints[key])}, got {type(value).__name__}")


def _matches(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` fits the annotation ``hint`` (None: a hint this check does not read)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        results = [_matches(value, a) for a in typing.get_args(hint)]
        return True if any(r is True for r in results) else (False if all(r is False for r in results) else None)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (tuple, list) or origin in (tuple, list):
        return isinstance(value, tuple | list)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return None


def _hint_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
