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
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create_model", "is_model", "list_models", "register_model", "split_overrides", "standalone_overrides"]

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
    return dataclasses.replace(cfg, **arch), rt
