"""Sparse pooling of a token sequence: fewer tokens for a joint (fusion) transformer to attend over.

Paper: Ding et al., "Sparse Fusion for Multimodal Transformers" (SFT), 2021, https://arxiv.org/abs/2111.11992;
official code yding37/sft (``models/sparse_fusion_transformer.py``). SFT pools each modality's tokens along the
sequence axis, channel by channel, before the joint blocks. :class:`TokenPool` gives ``ceil(N / kernel)`` tokens
(windows of ``kernel`` tokens, stride = kernel; the last window may be shorter) by one of::

    max        max over each window, per channel (SFT's default)
    avg        mean over each window
    topk       per channel, the ceil(N / kernel) largest values over the whole sequence, in descending order
               (SFT's top-k: it keeps values, not tokens)
    topk_norm  the ceil(N / kernel) tokens of largest L2 norm, kept whole, in sequence order (ours)
    attn       a weighted mean over each window, weights softmax(q . x_j / sqrt(D)) within the window with a learned
               query q (ours: SFT weighs by the attention its sparse-attention layer paid to each token, which a
               pre-built encoder does not expose)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["POOL_OPS", "TokenPool", "pooled_length"]

POOL_OPS = ("max", "avg", "topk", "topk_norm", "attn")


def pooled_length(num_tokens: int, kernel: int) -> int:
    """Tokens left after pooling ``num_tokens`` with windows of ``kernel`` (stride = kernel)."""
    return math.ceil(num_tokens / kernel)


class TokenPool(nn.Module):
    """Pool (B, N, D) tokens to (B, ceil(N / kernel), D) (see the module docstring).

    Args:
        dim: token width ``D`` (``attn`` learns a query of that width).
        op: one of :data:`POOL_OPS`.
        kernel: window length = stride, >= 1 (1 keeps every token).
    """

    def __init__(self, dim: int, op: str = "max", kernel: int = 4) -> None:
        super().__init__()
        if op not in POOL_OPS:
            raise ValueError(f"pooling op must be one of {POOL_OPS}, got {op!r}")
        if kernel < 1:
            raise ValueError(f"kernel must be >= 1, got {kernel}")
        self.op, self.kernel = op, kernel
        self.query = nn.Parameter(torch.zeros(dim)) if op == "attn" else None

    def extra_repr(self) -> str:
        return f"op={self.op}, kernel={self.kernel}"

    def _windows(self, x: Tensor, fill: float) -> Tensor:
        """(B, W, k, D): the windows, the last one padded with ``fill``."""
        B, N, D = x.shape
        W = pooled_length(N, self.kernel)
        pad = W * self.kernel - N
        if pad:
            x = torch.cat((x, x.new_full((B, pad, D), fill)), dim=1)
        return x.reshape(B, W, self.kernel, D)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: (B, N, D) -> (B, ceil(N / kernel), D)."""
        B, N, D = x.shape
        k = pooled_length(N, self.kernel)
        if self.kernel == 1:
            return x
        if self.op == "max":
            return self._windows(x, float("-inf")).amax(dim=2)
        if self.op == "avg":  # a shorter last window is averaged over its own tokens
            return F.avg_pool1d(x.transpose(1, 2), self.kernel, self.kernel, ceil_mode=True).transpose(1, 2)
        if self.op == "topk":
            return x.topk(k, dim=1).values
        if self.op == "topk_norm":
            idx = x.norm(dim=-1).topk(k, dim=1).indices.sort(dim=1).values  # (B, k), in sequence order
            return x.gather(1, idx[..., None].expand(-1, -1, D))
        assert self.query is not None  # "attn"
        w = self._windows(x, 0.0)  # (B, W, k, D)
        score = (w @ self.query.to(x.dtype)) / math.sqrt(D)  # (B, W, k)
        pad = self._windows(x.new_zeros(B, N, 1), 1.0)[..., 0].bool()  # True on the padding of the last window
        weight = score.masked_fill(pad, float("-inf")).softmax(dim=-1)
        return (weight[..., None] * w).sum(dim=2)
