"""Stochastic depth (drop-path): randomly skip a residual branch per sample during training; and DropToken (VATT):
randomly drop a fraction of the input tokens, the same token keep-mask path that masked modelling uses."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["DropPath", "as_keep_indices", "drop_indices", "drop_path", "drop_tokens", "keep_tokens"]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``p`` and rescale the rest by ``1/(1-p)``."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ---- DropToken ----------------------------------------------------------------------------------------------------
def drop_indices(
    batch: int, n: int, rate: float, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor | None:
    """(batch, N_keep) sorted indices of the tokens DropToken keeps per sample, or None when it keeps all of them.

    ``N_keep = floor(n · (1 - rate))`` (at least 1), drawn uniformly without replacement.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop-token rate must be in [0, 1), got {rate}")
    keep = max(1, math.floor(n * (1.0 - rate)))
    if keep >= n:
        return None
    scores = torch.rand(batch, n, generator=generator, device=device if generator is None else "cpu")
    return scores.to(device).topk(keep, dim=1).indices.sort(dim=1).values


def drop_tokens(tokens: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep a random ``floor(N · (1 - rate))`` (at least 1) of the ``N`` tokens of every sample, in their order.

    Args:
        tokens: (B, N, D) patch tokens with position embeddings already added.
        rate: fraction to drop, in [0, 1).
        generator: optional RNG for the choice.

    Returns:
        (B, N_keep, D); ``tokens`` itself when nothing is dropped.
    """
    B, N, _ = tokens.shape
    idx = drop_indices(B, N, rate, generator, tokens.device)  # (B, N_keep)
    return tokens if idx is None else keep_tokens(tokens, idx)


def keep_tokens(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The tokens a keep-mask selects, per sample: the one path of DropToken and masked modelling.

    Args:
        tokens: (B, N, D).
        keep: (B, N_keep) int64 indices into N (sorted, to keep the token order), or a (B, N) bool mask with the
            same number of True entries in every row.

    Returns:
        (B, N_keep, D).

    Raises:
        ValueError: a bool mask whose rows keep different numbers of tokens, or a shape that does not match.
    """
    B, N, D = tokens.shape
    keep = as_keep_indices(keep, B, N)
    return tokens.gather(1, keep[:, :, None].expand(-1, -1, D))


def as_keep_indices(keep: torch.Tensor, batch: int, n: int) -> torch.Tensor:
    """A keep-mask as (batch, N_keep) int64 indices: a (batch, n) bool mask becomes its sorted True positions,
    indices pass through (checked for shape). Raises ValueError as :func:`keep_tokens`."""
    if keep.dtype == torch.bool:
        if keep.shape != (batch, n):
            raise ValueError(f"a bool keep-mask must have shape {(batch, n)}, got {tuple(keep.shape)}")
        counts = keep.sum(1)
        if bool((counts != counts[0]).any()):
            raise ValueError("every sample must keep the same number of tokens (a batch stays rectangular)")
        return keep.nonzero()[:, 1].view(batch, -1)  # row-major: sorted indices per row
    if keep.ndim != 2 or keep.shape[0] != batch:
        raise ValueError(f"keep indices must have shape (B={batch}, N_keep), got {tuple(keep.shape)}")
    return keep
