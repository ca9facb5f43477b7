"""Model families. Each module registers its variants on import (see ``avformer.registry``)."""

from __future__ import annotations

from avformer.models import (
    av_model,  # noqa: F401
    multiscale,  # noqa: F401
    vatt,  # noqa: F401
    vatt_classifier,  # noqa: F401
    vit,  # noqa: F401
)
from avformer.models.base import EncoderOutput

__all__ = ["EncoderOutput"]
