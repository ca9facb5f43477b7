"""Building blocks shared by the model families."""

from __future__ import annotations

from avformer.layers.attention import attend
from avformer.layers.conv_embed import ConvPatchEmbed, ConvStemEmbed
from avformer.layers.drop import DropPath, drop_path
from avformer.layers.mlp import Mlp
from avformer.layers.patch_embed import PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed
from avformer.layers.pooling_attention import PoolingAttention
from avformer.layers.vit_block import Attention, Block

__all__ = [
    "Attention",
    "Block",
    "ConvPatchEmbed",
    "ConvStemEmbed",
    "DropPath",
    "Mlp",
    "PatchEmbed2d",
    "PoolingAttention",
    "TubeletEmbed3d",
    "WaveformPatchEmbed",
    "attend",
    "drop_path",
]
