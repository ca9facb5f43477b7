"""Registry of fusion modules by name: ``AVModelConfig.fusion`` names one, ``fusion_config`` holds its options.

    @dataclass(frozen=True)
    class MyFusionConfig:
        depth: int = 1

    @register_fusion("my_fusion", config=MyFusionConfig)
    def build_my_fusion(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: MyFusionConfig) -> nn.Module:
        return MyFusion(audio_encoder.num_features, video_encoder.num_features, cfg)

The builder sizes the module for the two (headless) encoders; the module follows :mod:`avformer.fusion.base`. The
built-in fusions register themselves when :mod:`avformer.fusion` is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from avformer.utils.names import unknown_name_hint

__all__ = ["FusionEntry", "get_fusion", "list_fusions", "register_fusion", "unregister_fusion"]

Builder = Callable[[nn.Module, nn.Module, Any], nn.Module]
_B = TypeVar("_B", bound=Builder)


@dataclass(frozen=True)
class FusionEntry:
    """A registered fusion: its name, config dataclass and builder."""

    name: str
    config: type
    build: Builder
    summary: str

    def make_config(self, value: Any) -> Any:
        """The config instance from None (defaults), a mapping of its fields, or an instance.

        Raises:
            TypeError: an unknown field, or an instance of another config type.
        """
        if value is None:
            return self.config()
        if isinstance(value, Mapping):
            valid = {f.name for f in dataclasses.fields(self.config)}
            unknown = sorted(set(value) - valid)
            if unknown:
                raise TypeError(f"unknown {self.config.__name__} field(s) {unknown}; valid: {sorted(valid)}")
            return self.config(**value)
        if not isinstance(value, self.config):
            raise TypeError(f"fusion={self.name!r} takes a {self.config.__name__}, got {type(value).__name__}")
        return value


_FUSIONS: dict[str, FusionEntry] = {}


def register_fusion(name: str, *, config: type) -> Callable[[_B], _B]:
    """Decorator: register ``build(audio_encoder, video_encoder, cfg) -> nn.Module`` as fusion ``name``."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"fusion {name!r}: config must be a dataclass, got {config!r}")

    def deco(fn: _B) -> _B:
        if name in _FUSIONS:
            raise ValueError(f"fusion {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        _FUSIONS[name] = FusionEntry(name, config, fn, doc[0] if doc else "")
        return fn

    return deco


def unregister_fusion(name: str) -> None:
    """Remove a fusion (for tests that register a toy one)."""
    _FUSIONS.pop(name, None)


def get_fusion(name: str) -> FusionEntry:
    """The registered fusion ``name`` (ValueError listing close names, or all of them)."""
    if name not in _FUSIONS:
        hint = unknown_name_hint(name, _FUSIONS)
        raise ValueError(f"unknown fusion {name!r}; {hint}")
    return _FUSIONS[name]


def list_fusions() -> list[FusionEntry]:
    """Every registered fusion, by name."""
    return [_FUSIONS[n] for n in sorted(_FUSIONS)]
