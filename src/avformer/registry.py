"""``create_model`` and friends under their short, historical import path (the table is in ``avformer.models``)."""

from __future__ import annotations

from avformer.models.registry import create_model, is_model, list_models, register_model, split_overrides

__all__ = ["create_model", "is_model", "list_models", "register_model", "split_overrides"]
