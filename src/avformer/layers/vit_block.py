"""Standard pre-norm transformer block (ViT / DeiT / AST / VATT): ``x + attn(norm(x))``, ``x + mlp(norm(x))``.

Paper: Dosovitskiy et al., "An Image is Worth 16x16 Words", https://arxiv.org/abs/2010.11929
Matches the layer of ``transformers``' ``ASTLayer`` (checked in tests/models/test_parity_transformers.py) except
that q, k and v are one fused ``qkv`` projection here (weights are concatenated on conversion) and LayerNorm's eps
is an argument (transformers' AST uses 1e-12, timm/DeiT and the original AST code 1e-6).
"""

from __future__ import annotations

import torch
from torch import nn

from avformer.layers.attention import attend
from avformer.layers.drop import DropPath
from avformer.layers.mlp import Mlp

__all__ = ["Attention", "Block"]


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection.

    Args:
        dim: token width ``D``.
        num_heads: ``h``; ``D`` must be divisible by it.
        qkv_bias: bias on the qkv projection (the output projection always has one).
        fused: SDPA (True) or the eager reference math (False). A plain attribute, so it can be switched on a built
            model (``avformer.profiling`` does, to count attention FLOPs).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, fused: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.fused = fused
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, N, D); ``attn_bias``: optional additive bias broadcastable to (B, h, N, N) (e.g. a key-padding
        mask with a large negative value on padded keys)."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, N, d)
        q, k, v = qkv.unbind(0)
        x = attend(q, k, v, fused=self.fused, attn_bias=attn_bias)  # (B, h, N, d)
        x = x.transpose(1, 2).reshape(B, N, D)
        return self.proj(x)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, fused={self.fused}"


class Block(nn.Module):
    """Pre-norm transformer block.

    Args:
        dim: token width ``D``.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP as a multiple of ``D``.
        qkv_bias: bias on the qkv projection.
        drop_path: stochastic-depth probability of both residual branches.
        fused: SDPA (True) or eager attention (False).
        norm_eps: LayerNorm epsilon.
        layer_scale: None (default) or the initial value of LayerScale (Touvron et al. 2021, CaiT): a learned
            per-channel factor on each residual branch, so that a small value (e.g. 1e-4) starts the block near the
            identity.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        fused: bool = True,
        norm_eps: float = 1e-6,
        layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.gamma1: nn.Parameter | None = None
        self.gamma2: nn.Parameter | None = None
        if layer_scale is not None:
            self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale)))
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, fused=fused)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, N, D) -> (B, N, D); ``attn_bias`` as in :class:`Attention` (None: every token attends all)."""
        a = self.attn(self.norm1(x), attn_bias)
        x = x + self.drop_path1(a if self.gamma1 is None else self.gamma1 * a)
        m = self.mlp(self.norm2(x))
        return x + self.drop_path2(m if self.gamma2 is None else self.gamma2 * m)
