"""Convolutional patch embedding for token grids of any dimensionality (1-D, 2-D or 3-D).

A single strided convolution turns a signal ``(B, C, *size)`` into a grid of tokens ``(B, N, D)`` with
``N = prod(grid)``. Unlike the non-overlapping ViT patchify, the kernel may be larger than the stride and padded
(MViT: kernel (3, 7, 7), stride (2, 4, 4), padding (1, 3, 3)), so a size that is not a multiple of the stride still
gives a well-defined grid (``conv_out_size``).

``ConvStemEmbed`` is the "early convolutions" alternative (Xiao et al. 2021, *Early Convolutions Help Transformers
See Better*): a few stride-2 3×3 convolutions with BatchNorm and ReLU, then a 1×1 convolution to the token width.
It gives transformers a local, translation-equivariant first stage, which helps most when data are few.

``CNNTokenEmbed`` (ours, for small data) pools such a stem's map into tokens that do not depend on where the content
is: one token per video frame (max over space) or one per frequency band of a spectrogram (max over time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CNNTokenEmbed",
    "ConvPatchEmbed",
    "ConvStemEmbed",
    "Places",
    "conv_out_size",
    "conv_places",
    "stem_grid",
    "stem_strides",
]

_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def conv_out_size(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> tuple[int, ...]:
    """Output grid of a convolution / pooling (floor mode) per axis: ``(n + 2p - k) // s + 1``.

    Raises:
        ValueError: a padded input axis is shorter than the kernel.
    """
    out = []
    for n, k, s, p in zip(size, kernel, stride, padding, strict=True):
        if n + 2 * p < k:
            raise ValueError(f"input length {n} (+2×{p} padding) is shorter than the patch/kernel {k}")
        out.append((n + 2 * p - k) // s + 1)
    return tuple(out)


class Places(NamedTuple):
    """Where the places (output positions) of a stack of convolutions sit on its input, per axis: place ``i`` is
    centred on the input's continuous coordinate ``first + stride · i``, where input sample ``k`` covers
    ``[k, k + 1)``. The centre is that of the place's receptive field. A ViT patch of side ``s`` has
    ``first = s / 2``; a padded 3×3 convolution at stride 2 has ``first = 0.5``: its place ``i`` is centred on
    input pixel ``2i``, not on the middle of the pixels ``[2i, 2i + 2)``."""

    stride: tuple[float, ...]
    first: tuple[float, ...]

    @classmethod
    def even(cls, grid: Sequence[int], size: Sequence[int]) -> Places:
        """``grid`` places spread evenly over ``size`` input samples, each in the middle of its share (what a
        bilinear upsampling with ``align_corners=False`` assumes)."""
        stride = tuple(n / g for g, n in zip(grid, size, strict=True))
        return cls(stride, tuple(s / 2 for s in stride))


def conv_places(module: nn.Module) -> Places:
    """The :class:`Places` of the output of ``module``'s convolutions applied one after another, in the order they
    are registered (a stem's ``nn.Sequential``; batch norms and activations do not move a place). Axes are those of
    the convolutions (one convolution dimensionality per module).

    Raises:
        ValueError: ``module`` holds no convolution, or convolutions of different dimensionality.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    ndims = {len(c.kernel_size) for c in convs}
    if len(ndims) != 1:
        raise ValueError(f"{type(module).__name__} holds convolutions of {sorted(ndims)} dimensions: no single grid")
    stride = [1.0] * ndims.pop()
    first = [0.0] * len(stride)  # in input-index units, from the last layer back to the first
    for conv in reversed(convs):
        assert isinstance(conv.padding, tuple)  # 'same' / 'valid' strings are not used by the stems
        for a in range(len(stride)):
            k, s, p, d = conv.kernel_size[a], conv.stride[a], conv.padding[a], conv.dilation[a]
            first[a] = first[a] * s - p + d * (k - 1) / 2
            stride[a] *= s
    return Places(tuple(stride), tuple(f + 0.5 for f in first))


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


def stem_strides(stride: Sequence[int]) -> list[tuple[int, ...]]:
    """Per-layer strides of a conv stem with total ``stride`` (powers of 2 per axis): every layer halves each axis
    that still has stride left, earliest layers first. ``(2, 4, 4)`` -> ``[(2, 2, 2), (1, 2, 2)]``."""
    logs = []
    for s in stride:
        if s < 1 or s & (s - 1):
            raise ValueError(f"a conv stem needs power-of-2 strides, got {tuple(stride)}")
        logs.append(s.bit_length() - 1)
    if max(logs) == 0:
        raise ValueError(f"a conv stem needs a stride > 1 on some axis, got {tuple(stride)}")
    return [tuple(2 if j < n else 1 for n in logs) for j in range(max(logs))]


def stem_grid(size: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """Token grid of a :class:`ConvStemEmbed` with total ``stride`` for an input of ``size``: ``ceil(n / s)``."""
    grid = tuple(size)
    for st in stem_strides(stride):
        grid = conv_out_size(grid, (3,) * len(grid), st, (1,) * len(grid))
    return grid


class ConvStemEmbed(nn.Module):
    """Convolutional stem patch embedding: ``L`` conv(3, stride 1 or 2 per axis) + BatchNorm + ReLU layers, then a
    1×1 convolution to ``embed_dim``; same interface and, for power-of-2 strides, the same grid as
    ``ConvPatchEmbed(kernel 2s - 1, stride s, padding s - 1)`` (``ceil(n / s)`` per axis).

    Widths double layer by layer and end at ``width`` (``width / 2^(L-1)``, ..., ``width``; at least 8).

    Args:
        in_chans: input channels.
        embed_dim: output token width ``D``.
        stride: total stride per grid axis (powers of 2), split over the layers by ``stem_strides``.
        width: channels of the last conv layer (default ``embed_dim``); the 1×1 convolution maps them to ``D``.
        refine: add a stride-1 conv(3) + BN + ReLU at the same width after every strided layer but the first (a
            deeper, VGG-like stem: more capacity at each resolution, same grid).
    """

    def __init__(
        self, in_chans: int, embed_dim: int, stride: Sequence[int], *, width: int | None = None, refine: bool = False
    ) -> None:
        super().__init__()
        ndim = len(stride)
        if ndim not in _CONV:
            raise ValueError(f"stride must have 1, 2 or 3 entries, got {tuple(stride)}")
        self.stride = tuple(stride)
        self.strides = stem_strides(stride)
        width = embed_dim if width is None else width
        n = len(self.strides)
        layers: list[nn.Module] = []
        c_in = in_chans
        for j, st in enumerate(self.strides):
            c_out = max(width // 2 ** (n - 1 - j), 8)
            for s in (st, 1) if refine and j > 0 else (st,):
                layers += [_CONV[ndim](c_in, c_out, 3, stride=s, padding=1, bias=False), _BN[ndim](c_out), nn.ReLU()]
                c_in = c_out
        layers.append(_CONV[ndim](c_in, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
        self.width = c_in

    def grid_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """Token grid for an input of spatial/temporal ``size`` (without batch and channel)."""
        return stem_grid(size, self.stride)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, *size) -> the last conv layer's map (B, width, *grid), before the 1×1 projection."""
        return self.proj[:-1](x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The 1×1 projection of a (B, width, *any) map (e.g. a pooled :meth:`features`) to (B, D, *any)."""
        conv = self.proj[-1]
        assert isinstance(conv, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        return F.linear(x.movedim(1, -1), conv.weight.flatten(1), conv.bias).movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(B, C, *size) -> tokens (B, N, D) in row-major grid order, and the grid."""
        x = self.proj(x)  # (B, D, *grid)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


class CNNTokenEmbed(nn.Module):
    """Tokens from a 2-D CNN stem (:class:`ConvStemEmbed` with ``refine``), pooled so that a token does not depend on
    where its content sits.

    ``per="frame"``: video ``(B, C, T, H, W)`` -> one token per frame (the frame's map, max over space), grid
    ``(T,)``; the frames a keep-mask drops never enter the CNN (DropToken before the stem costs nothing).
    ``per="band"``: spectrogram ``(B, C, F, T)`` -> one token per frequency band of the map (max over time: when a
    sound starts does not change its tokens, its pitch does), grid ``(ceil(F / stride),)``.

    Args:
        in_chans: input channels.
        embed_dim: token width ``D``.
        stride: total stride of the stem on both axes of a frame / the spectrogram (a power of 2 > 1).
        width: channels of the stem's last conv layer.
        per: ``"frame"`` or ``"band"``.
    """

    def __init__(self, in_chans: int, embed_dim: int, stride: int, width: int, per: str) -> None:
        super().__init__()
        if per not in ("frame", "band"):
            raise ValueError(f"per must be 'frame' or 'band', got {per!r}")
        self.per = per
        self.stem = ConvStemEmbed(in_chans, embed_dim, (stride, stride), width=width, refine=True)

    @property
    def keeps_before_stem(self) -> bool:
        """True when a keep-mask selects inputs before the CNN (frames); the encoder then passes it to forward."""
        return self.per == "frame"

    def grid_size(self, size: Sequence[int]) -> tuple[int, ...]:
        """Token grid for an input of ``size``: ``(T,)`` of ``(T, H, W)``, or ``(ceil(F / stride),)`` of ``(F, T)``."""
        return (size[0],) if self.per == "frame" else self.stem.grid_size(size)[:1]

    def init_weights(self) -> None:
        """PyTorch's default init for the convolutions that feed a BatchNorm (an encoder's trunc-normal init of every
        conv would start them far smaller)."""
        for conv in self.stem.proj[:-1]:
            if isinstance(conv, nn.Conv2d):
                conv.reset_parameters()

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's map before pooling and projection (its last conv layer's output): video ``(B, C, T, H, W)``
        -> ``(B, width, T, h, w)`` (each frame through the 2-D CNN); spectrogram ``(B, C, F, T)`` -> ``(B, width,
        F', T')``. What a localisation head reads (:mod:`avformer.models.localization`)."""
        if self.per == "frame":
            B, C, T, H, W = x.shape
            fmap = self.stem.features(x.transpose(1, 2).reshape(B * T, C, H, W))  # (B·T, width, h, w)
            return fmap.view(B, T, *fmap.shape[1:]).transpose(1, 2)  # (B, width, T, h, w)
        return self.stem.features(x)  # (B, width, F', T')

    def tokens_from_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, D) of a :meth:`feature_map` (max over space per frame, or over time per band, then the
        projection): ``tokens_from_map(feature_map(x))`` equals ``forward(x)[0]``."""
        feats = fmap.amax((3, 4)) if self.per == "frame" else fmap.amax(3)  # (B, width, N)
        return self.stem.project(feats).transpose(1, 2)  # (B, N, D)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Tokens (B, N, D) and the full grid; with ``keep`` (B, N_keep) sorted frame indices only those frames."""
        if self.per == "frame":
            B, C, T, H, W = x.shape
            frames = x.transpose(1, 2)  # (B, T, C, H, W)
            if keep is not None:
                frames = frames.gather(1, keep[:, :, None, None, None].expand(-1, -1, C, H, W))
            n = frames.shape[1]
            feats = self.stem.features(frames.reshape(B * n, C, H, W)).amax((2, 3)).view(B, n, -1)  # (B, n, width)
            grid: tuple[int, ...] = (T,)
        else:
            if keep is not None:
                raise ValueError("band tokens are selected after the stem (keep_tokens), not through keep")
            feats = self.stem.features(x).amax(3).transpose(1, 2)  # (B, F', width)
            grid = (feats.shape[1],)
        return self.stem.project(feats.transpose(1, 2)).transpose(1, 2), grid  # (B, n, D)
