"""Model families. Each module registers its variants on import; build one with ``create_model(name, **overrides)``."""

from __future__ import annotations

from avformer.models import (
    av_model,  # noqa: F401
    av_variants,  # noqa: F401
    multiscale,  # noqa: F401
    vatt,  # noqa: F401
    vatt_classifier,  # noqa: F401
    vit,  # noqa: F401
)
from avformer.models.base import EncoderOutput
from avformer.models.registry import create_model, is_model, list_models, register_model

__all__ = ["EncoderOutput", "create_model", "is_model", "list_models", "register_model"]
