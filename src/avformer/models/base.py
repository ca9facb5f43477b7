"""The encoder API shared by every model family.

Every encoder has ``forward_features(x) -> EncoderOutput``, ``forward_head(feats) -> logits``,
``forward(x) = forward_head(forward_features(x))``, a ``num_features`` attribute (width of ``pooled``) and
``no_weight_decay() -> set[str]`` (parameter names to exclude from weight decay).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["EncoderOutput"]


@dataclass
class EncoderOutput:
    """What an encoder returns from ``forward_features``.

    Attributes:
        tokens: (B, N, D) final patch tokens after the last norm, *without* the class token.
        pooled: (B, D) clip-level feature (class token or mean of ``tokens``), the input of the head.
        grid: the token grid of ``tokens`` per axis, e.g. ``(F', T')`` for a spectrogram or ``(t, h, w)`` for video;
            ``prod(grid) == N``.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    grid: tuple[int, ...]
