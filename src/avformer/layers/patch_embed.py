"""Tokenizers that cut a signal into patches on a grid: 2-D (spectrogram, image), 3-D (video tubelets), 1-D (waveform).

Each embed is one strided convolution followed by a flatten. ``forward`` returns the tokens *and* the token grid, so
the caller never recomputes conv arithmetic by hand:

    PatchEmbed2d:        (B, C, H, W)    -> (B, H'·W', D),    (H', W')      e.g. AST: (B, 1, F, T) -> (F', T')
    TubeletEmbed3d:      (B, C, T, H, W) -> (B, t·h·w, D),    (t, h, w)     VATT / ViViT tubelets
    WaveformPatchEmbed:  (B, C, S)       -> (B, S', D),       (S',)         VATT raw-audio patches

Tokens are flattened in row-major grid order (the last grid axis varies fastest), the order of
``conv_out.flatten(2)``; position tables and grid reshapes elsewhere rely on it.

``kernel_size`` is the patch size; ``stride`` defaults to it (non-overlapping patches). A smaller stride gives
overlapping patches (AST uses 16×16 patches at stride 10); ``padding`` lets the same class serve as a convolutional
stem (MViTv2 uses kernel (3, 7, 7), stride (2, 4, 4), padding (1, 3, 3)). Input samples that do not fill a last
whole window are dropped, as in a convolution without padding.
"""

from __future__ import annotations

import torch
from torch import nn

from avformer.layers.conv_embed import conv_out_size

__all__ = ["PatchEmbed2d", "TubeletEmbed3d", "WaveformPatchEmbed"]


def _as_tuple(v: int | tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    t = (v,) * n if isinstance(v, int) else tuple(v)
    if len(t) != n or any(not isinstance(i, int) for i in t):
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {v!r}")
    return t


class _ConvEmbed(nn.Module):
    """Shared body: a strided ``ConvNd`` then ``(B, D, *grid) -> (B, N, D)``."""

    ndim: int
    _conv_cls: type[nn.Module]

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.kernel_size = _as_tuple(kernel_size, self.ndim, "kernel_size")
        self.stride = self.kernel_size if stride is None else _as_tuple(stride, self.ndim, "stride")
        self.padding = _as_tuple(padding, self.ndim, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"bad conv geometry: kernel {self.kernel_size}, stride {self.stride}, pad {self.padding}")
        self.proj = self._conv_cls(
            in_chans, embed_dim, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, bias=bias
        )

    def grid_size(self, input_size: tuple[int, ...]) -> tuple[int, ...]:
        """Token grid for a spatial input size (without batch and channel dims)."""
        if len(input_size) != self.ndim:
            raise ValueError(f"expected {self.ndim} spatial dims, got {tuple(input_size)}")
        return conv_out_size(input_size, self.kernel_size, self.stride, self.padding)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Returns ``(tokens (B, N, D), grid)`` with ``prod(grid) == N``."""
        if x.ndim != self.ndim + 2 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects (B, {self.in_chans}, {', '.join('*' * self.ndim)}), "
                f"got {tuple(x.shape)}"
            )
        grid = self.grid_size(tuple(x.shape[2:]))  # validates lengths with a readable message
        x = self.proj(x)  # (B, D, *grid)
        return x.flatten(2).transpose(1, 2), grid  # (B, N, D)


class PatchEmbed2d(_ConvEmbed):
    """2-D patches, possibly overlapping: ``(B, C, H, W) -> (B, H'·W', D)``; for AST ``H, W = F, T``."""

    ndim = 2
    _conv_cls = nn.Conv2d


class TubeletEmbed3d(_ConvEmbed):
    """3-D tubelets ``kernel_size = (t, p, p)``: ``(B, C, T, H, W) -> (B, t'·h'·w', D)``."""

    ndim = 3
    _conv_cls = nn.Conv3d


class WaveformPatchEmbed(_ConvEmbed):
    """1-D patches of raw samples: ``(B, C, S) -> (B, S', D)``, ``S' = S // patch`` at the default stride.

    With ``kernel_size == stride`` this is the same as VATT's linear projection of non-overlapping
    ``patch``-sample windows.
    """

    ndim = 1
    _conv_cls = nn.Conv1d
