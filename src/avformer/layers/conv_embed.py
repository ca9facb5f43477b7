"""Convolutional patch embedding for token grids of any dimensionality (1-D, 2-D or 3-D).

A single strided convolution turns a signal ``(B, C, *size)`` into a grid of tokens ``(B, N, D)`` with
``N = prod(grid)``. Unlike the non-overlapping ViT patchify, the kernel may be larger than the stride and padded
(MViT: kernel (3, 7, 7), stride (2, 4, 4), padding (1, 3, 3)), so a size that is not a multiple of the stride still
gives a well-defined grid (``conv_out_size``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ConvPatchEmbed", "conv_out_size"]

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def conv_out_size(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> tuple[int, ...]:
    """Output grid of a convolution / pooling (floor mode) per axis: ``(n + 2p - k) // s + 1``."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding, strict=True))


class ConvPatchEmbed(nn.Module):
    """Strided ``ConvNd`` patch embedding; the dimensionality follows ``len(kernel_size)``.

    Args:
        in_chans: input channels (1 for a log-mel spectrogram, 3 for RGB video).
        embed_dim: output token width ``D``.
        kernel_size, stride, padding: per grid axis, e.g. ``(F, T)`` or ``(T, H, W)`` order.
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        kernel_size: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
    ) -> None:
        super().__init__()
        ndim = len(kernel_size)
        if ndim not in _CONV or len(stride) != ndim or len(padding) != ndim:
            raise ValueError(
                f"kernel/stride/padding must all have 1, 2 or 3 entries, got {kernel_size}, {stride}, {padding}"
            )
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.padding = tuple(padding)
        self.proj = _CONV[ndim](in_chans, embed_dim, self.kernel_size, stride=self.stride, padding=self.padding)

    def grid_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """Token grid for an input of spatial/temporal ``size`` (without batch and channel)."""
        return conv_out_size(size, self.kernel_size, self.stride, self.padding)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(B, C, *size) -> tokens (B, N, D) in row-major grid order, and the grid."""
        x = self.proj(x)  # (B, D, *grid)
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # (B, N, D)
