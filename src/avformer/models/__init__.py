"""Model families. Each module registers its variants on import (see ``avformer.registry``)."""

from __future__ import annotations

from avformer.models.base import EncoderOutput

__all__ = ["EncoderOutput"]
