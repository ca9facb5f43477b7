"""Scaled dot-product attention with a fused path and an eager reference path.

``attend(q, k, v, fused=True)`` calls ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient
kernels on GPU). ``fused=False`` computes ``softmax(q k^T / sqrt(d)) v`` explicitly: the reference that tests compare
the fused path against, and the path a FLOP counter sees in full.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["attend"]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    fused: bool = True,
    dropout_p: float = 0.0,
    attn_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention over the last two dims.

    Args:
        q: (B, h, Nq, d); k, v: (B, h, Nk, d).
        fused: use SDPA (True) or the eager math (False); both give the same result up to float rounding.
        dropout_p: attention dropout (applied only when > 0; callers pass 0 in eval).
        attn_bias: optional additive bias broadcastable to (B, h, Nq, Nk) (e.g. relative positions, masks with -inf).

    Returns:
        (B, h, Nq, d)
    """
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout_p)
    scale = q.shape[-1] ** -0.5
    attn = (q * scale) @ k.transpose(-2, -1)  # (B, h, Nq, Nk)
    if attn_bias is not None:
        attn = attn + attn_bias
    attn = attn.softmax(dim=-1)
    if dropout_p > 0.0:
        attn = F.dropout(attn, p=dropout_p)
    return attn @ v
