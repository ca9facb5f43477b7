"""Plain data (dicts, lists, scalars: what YAML and checkpoints hold) to and from dataclasses, strictly.

:func:`structure` builds a dataclass from nested plain data, checking every key and value against the type hints:
an unknown key is an error that names its path and suggests the closest key (or where that key exists elsewhere),
a missing key without a default is an error, values are checked against ``int``, ``float`` (a YAML string such as
``1e-4`` is read as a float), ``Literal``, ``tuple``, ``list``, ``dict``, unions and nested dataclasses, and the
dataclass's own ``__post_init__`` checks run. :func:`to_dict` is the inverse (tuples become lists). The experiment
config (:mod:`avformer.config`) is built with these.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["ConfigError", "structure", "to_dict"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, dict or override that does not match the dataclasses (the message names the key path)."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _field_paths(cls: type, leaf: str, prefix: str = "") -> list[str]:
    """Every path under ``cls`` whose last key is ``leaf`` (for 'did you mean' hints)."""
    out = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if f.name == leaf:
            out.append(_join(prefix, f.name))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            out += _field_paths(tp, leaf, _join(prefix, f.name))
    return out


def _structure_dataclass(cls: type, value: Any, path: str, root: type) -> Any:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping of {cls.__name__} fields, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            msg = f"unknown key {_join(path, key)!r}; valid keys under {path or 'the top level'!r}: {sorted(fields)}"
            close = difflib.get_close_matches(str(key), fields, n=1)
            elsewhere = [p for p in _field_paths(root, str(key)) if p != _join(path, key)]
            if close:
                msg += f"; did you mean {_join(path, close[0])!r}?"
            elif elsewhere:
                msg += f"; {key!r} exists at {', '.join(map(repr, elsewhere))}"
            raise ConfigError(msg)
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _structure(value[name], _hints(cls)[name], _join(path, name), root)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {_join(path, name)!r} ({cls.__name__} has no default for it)")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # the dataclass's own __post_init__ validation
        raise ConfigError(f"{path or cls.__name__}: {e}") from e


def _structure(value: Any, tp: Any, path: str, root: type) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = ConfigError(f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _structure_dataclass(tp, value, path, root)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alts = [a for a in args if a is not type(None)]
        if len(alts) == 1 and dataclasses.is_dataclass(alts[0]):  # Section | None: the section's error is precise
            return _structure(value, alts[0], path, root)
        for alt in args:
            if alt is not type(None):
                try:
                    return _structure(value, alt, path, root)
                except ConfigError:
                    continue
        raise bad
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise bad
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_structure(v, args[0], f"{path}[{i}]", root) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values ({_type_name(tp)}), got {list(value)!r}")
        return tuple(_structure(v, a, f"{path}[{i}]", root) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise bad
        return [_structure(v, args[0], f"{path}[{i}]", root) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        return {
            _structure(k, args[0], path, root): _structure(v, args[1], _join(path, k), root) for k, v in value.items()
        }
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is int and isinstance(value, bool):
        raise bad
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad


def structure(cls: type[T], data: Any) -> T:
    """Build dataclass ``cls`` from plain data (dicts, lists, scalars), strictly. Raises :class:`ConfigError`."""
    out: T = _structure_dataclass(cls, data, "", cls)
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists), ready for YAML or a checkpoint."""
    out = _plain(cfg)
    if not isinstance(out, dict):
        raise TypeError(f"to_dict needs a dataclass instance, got {type(cfg).__name__}")
    return out


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    return obj
