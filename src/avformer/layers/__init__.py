"""Building blocks shared by the model families."""

from __future__ import annotations

from avformer.layers.attention import attend
from avformer.layers.drop import DropPath, drop_path
from avformer.layers.mlp import Mlp

__all__ = ["DropPath", "Mlp", "attend", "drop_path"]
