"""Pooling attention (MViT / MViTv2) over token grids of any dimensionality.

Papers: Fan et al., "Multiscale Vision Transformers", https://arxiv.org/abs/2104.11227 (pooling attention);
Li et al., "MViTv2", https://arxiv.org/abs/2112.01526 (decomposed relative positions, residual pooling).
Reference implementations read: torchvision ``models/video/mvit.py``, SlowFast ``slowfast/models/attention.py``.

::

                       x (B, [cls +] N, D_in), grid
                                   |
                            Linear qkv (D_in -> 3 D_out)
                    .--------------+---------------.
                    q                k               v          (B, h, 1 + N, d) each
             pool_q |         pool_k |        pool_v |          depthwise ConvNd over the grid (stride s_q / s_kv)
                    |                |               |          + LayerNorm(d); the class token is not pooled
                    |---- q k^T/sqrt(d) + rel-pos(q) ---> softmax ---> @ v
                    |                                                 |
                    '--------------- (+ q: residual pooling) ---------'
                                           |
                                     Linear proj  -> (B, [cls +] N', D_out), grid'

Every difference from torchvision is in the interface, not the math: one module handles 1-D/2-D/3-D grids
(``ConvNd``/``MaxPoolNd`` chosen from the kernel length), the class token is optional, and the relative-position term
is built as an additive bias so the fused SDPA kernel can be used (``fused=True``) or the eager math (``fused=False``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from avformer.layers.attention import attend
from avformer.layers.conv_embed import conv_out_size
from avformer.layers.rel_pos import decomposed_rel_pos_bias, rel_pos_table_len

__all__ = ["PoolingAttention", "TokenPool", "skip_pool_kernel"]

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def skip_pool_kernel(stride: Sequence[int]) -> tuple[int, ...]:
    """Max-pool kernel of the pooled shortcut: ``s + 1`` where ``s > 1``, else 1 (MViT)."""
    return tuple(s + 1 if s > 1 else 1 for s in stride)


class TokenPool(nn.Module):
    """Pool the grid tokens of a flattened sequence; prefix (class) tokens pass through unpooled.

    Args:
        pool: a ``ConvNd``/``MaxPoolNd`` acting on ``(B', C, *grid)``.
        norm: applied to all tokens (prefix included) after pooling, or None.
        num_prefix_tokens: leading tokens that are not on the grid (1 with a class token, else 0).
    """

    fast_layout = True  # class-wide; False restores the contiguous, autocast-dtype pooling (for benchmarks only)

    def __init__(self, pool: nn.Module, norm: nn.Module | None, num_prefix_tokens: int) -> None:
        super().__init__()
        self.pool = pool
        self.norm = norm
        self.num_prefix_tokens = num_prefix_tokens

    def forward(
        self, x: torch.Tensor, grid: Sequence[int], num_prefix_tokens: int | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """x: (..., P + N, C) with ``N = prod(grid)`` -> (..., P + N', C) and the pooled grid.

        ``num_prefix_tokens`` overrides the constructor's ``P`` for this call (fusion tokens, e.g. bottleneck tokens,
        ride along as extra prefix tokens).
        """
        P = self.num_prefix_tokens if num_prefix_tokens is None else num_prefix_tokens
        lead, C = x.shape[:-2], x.shape[-1]
        prefix, tokens = x[..., :P, :], x[..., P:, :]
        # (B', C, *grid) as a channels-last view, pooled in the pooling's own dtype (fp32 under bf16 autocast).
        # Channels-last: oneDNN's backward of these depthwise convolutions runs several times faster on it than on a
        # contiguous input (5-6x for MMT-Tiny's small 3-D grids, 2-D too). fp32: oneDNN's bf16 backward on a
        # channels-last input gives a different weight gradient on every call (NaN losses in tiny models), and these
        # convolutions are a negligible share of the FLOPs (docs/numbers/throughput.md)
        tokens = tokens.reshape(-1, *grid, C).movedim(-1, 1)
        if self.fast_layout:
            weight = next(self.pool.parameters(), None)  # None for a max pooling
            kind = tokens.device.type
            with torch.autocast(kind, enabled=False) if torch.amp.is_autocast_available(kind) else nullcontext():
                tokens = self.pool(tokens if weight is None else tokens.to(weight.dtype))  # (B', C, *grid')
        else:  # the layout before: contiguous, in the autocast dtype (kept for `tools/bench_pool_layout.py`)
            tokens = self.pool(tokens.contiguous())
        new_grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2).reshape(*lead, -1, C)  # (..., N', C)
        x = torch.cat((prefix, tokens), dim=-2)
        if self.norm is not None:
            x = self.norm(x)
        return x, new_grid


def _conv_pool(
    head_dim: int, kernel: Sequence[int], stride: Sequence[int], norm_eps: float, n_prefix: int
) -> TokenPool:
    conv = _CONV[len(kernel)](
        head_dim,
        head_dim,
        tuple(kernel),
        stride=tuple(stride),
        padding=tuple(k // 2 for k in kernel),
        groups=head_dim,  # depthwise, shared by all heads
        bias=False,
    )
    return TokenPool(conv, nn.LayerNorm(head_dim, eps=norm_eps), n_prefix)


class PoolingAttention(nn.Module):
    """Multi-head pooling attention with optional decomposed relative positions and residual pooling.

    Args:
        dim: input width ``D_in``.
        dim_out: attention width ``D_out`` (``> dim`` widens inside attention: MViTv2 ``dim_mul_in_att``).
        num_heads: heads; ``head_dim = dim_out // num_heads``.
        q_stride: per-axis stride of the query pooling (the output grid).
        kv_stride: per-axis stride of the key/value pooling.
        pool_kernel: per-axis kernel of the q/k/v pooling convolutions (odd). A pooling is skipped (identity) only
            when both its kernel and its stride are all ones.
        qkv_bias: bias in the qkv projection.
        has_cls_token: the first token is a class token (never pooled, no relative position).
        rel_pos_grid: the input grid of the configured input size; sizes the relative position tables
            (one ``(2 max(q_a, kv_a) - 1, head_dim)`` table per axis). None disables relative positions.
        residual_pooling: add the pooled query to the attention output (MViTv2), class token excluded.
        norm_eps: epsilon of the LayerNorms after pooling.
        fused: use SDPA (True) or the eager math (False).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        *,
        q_stride: Sequence[int],
        kv_stride: Sequence[int],
        pool_kernel: Sequence[int],
        qkv_bias: bool = True,
        has_cls_token: bool = True,
        rel_pos_grid: Sequence[int] | None = None,
        residual_pooling: bool = True,
        norm_eps: float = 1e-6,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"dim_out={dim_out} is not divisible by num_heads={num_heads}")
        if not (len(q_stride) == len(kv_stride) == len(pool_kernel)):
            raise ValueError(f"q_stride {q_stride}, kv_stride {kv_stride}, pool_kernel {pool_kernel}: lengths differ")
        self.num_heads = num_heads
        self.head_dim = dim_out // num_heads
        self.dim_out = dim_out
        self.has_cls_token = has_cls_token
        self.residual_pooling = residual_pooling
        self.fused = fused
        n_prefix = int(has_cls_token)

        self.qkv = nn.Linear(dim, 3 * dim_out, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)

        def needs_pool(stride: Sequence[int]) -> bool:
            return math.prod(pool_kernel) > 1 or math.prod(stride) > 1

        hd = self.head_dim
        self.pool_q = _conv_pool(hd, pool_kernel, q_stride, norm_eps, n_prefix) if needs_pool(q_stride) else None
        kv = needs_pool(kv_stride)
        self.pool_k = _conv_pool(hd, pool_kernel, kv_stride, norm_eps, n_prefix) if kv else None
        self.pool_v = _conv_pool(hd, pool_kernel, kv_stride, norm_eps, n_prefix) if kv else None

        self.rel_pos: nn.ParameterList | None = None
        if rel_pos_grid is not None:
            if len(rel_pos_grid) != len(q_stride):
                raise ValueError(f"rel_pos_grid {rel_pos_grid} must have {len(q_stride)} axes")
            pad = [k // 2 for k in pool_kernel]
            q_grid = conv_out_size(rel_pos_grid, pool_kernel, q_stride, pad) if self.pool_q else tuple(rel_pos_grid)
            kv_grid = conv_out_size(rel_pos_grid, pool_kernel, kv_stride, pad) if kv else tuple(rel_pos_grid)
            self.rel_pos = nn.ParameterList(
                nn.Parameter(torch.zeros(rel_pos_table_len(qa, ka), hd)) for qa, ka in zip(q_grid, kv_grid, strict=True)
            )
            for table in self.rel_pos:
                nn.init.trunc_normal_(table, std=0.02)

    def forward(
        self, x: torch.Tensor, grid: Sequence[int], num_prefix_tokens: int | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """x: (B, P + N, D_in) with ``N = prod(grid)`` -> (B, P + N', D_out) and the query grid ``grid'``.

        ``P`` is ``int(has_cls_token)`` unless ``num_prefix_tokens`` is given: every prefix token is treated like the
        class token (not pooled, no relative position, no pooled residual). Fusion modules pass extra prefix tokens
        this way (``avformer.fusion.bottleneck``).
        """
        B, N, _ = x.shape
        grid = tuple(grid)
        p = int(self.has_cls_token) if num_prefix_tokens is None else num_prefix_tokens
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, h, N, d)

        k_grid = grid
        if self.pool_k is not None and self.pool_v is not None:
            k, k_grid = self.pool_k(k, grid, p)  # (B, h, P + Nk, d)
            v, _ = self.pool_v(v, grid, p)
        q_grid = grid
        if self.pool_q is not None:
            q, q_grid = self.pool_q(q, grid, p)  # (B, h, P + Nq, d)

        bias = None
        if self.rel_pos is not None:
            bias = decomposed_rel_pos_bias(q[:, :, p:], q_grid, k_grid, list(self.rel_pos))  # (B, h, Nq, Nk)
            if p:
                bias = F.pad(bias, (p, 0, p, 0))  # prefix (class-token) rows and columns get no relative position
        out = attend(q, k, v, fused=self.fused, attn_bias=bias)  # (B, h, P + Nq, d)
        if self.residual_pooling:  # prefix tokens get no pooled residual (class token: MViTv2, torchvision)
            out = out + (F.pad(q[:, :, p:], (0, 0, p, 0)) if p else q)
        out = out.transpose(1, 2).reshape(B, -1, self.dim_out)  # (B, P + Nq, D_out)
        return self.proj(out), q_grid
