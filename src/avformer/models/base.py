"""The encoder contract shared by every model family, as typed protocols.

:class:`Encoder`: ``forward_features(x) -> EncoderOutput``, ``forward_head(feats) -> logits``,
``forward(x) = forward_head(forward_features(x))``, ``num_features`` (width of ``pooled``), ``input_kind`` (the input
it reads: ``"spectrogram"`` (B, 1, F, T), ``"waveform"`` (B, 1, S), ``"video"`` (B, C, T, H, W) or ``"text"`` (B, L)
int word ids) and ``no_weight_decay() -> set[str]`` (parameter names to exclude from weight decay). Encoders whose
tokens can be dropped (ViT family) take ``forward_features(x, keep=...)``: a token keep-mask (see
:func:`avformer.layers.drop.keep_tokens`), the one path of DropToken and masked modelling; multiscale encoders,
whose pooling attention needs the whole grid, refuse it with a clear error.

:class:`StagedEncoder`: the staged forward that fusion modules drive block by block (bottleneck fusion): ``embed``,
``forward_block``, ``finalize``, ``block_dims`` and ``num_prefix_tokens``; every multiscale and ViT encoder has it.

``isinstance(m, Encoder)`` / ``isinstance(m, StagedEncoder)`` check the methods' presence (runtime protocols).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

__all__ = ["INPUT_KINDS", "Encoder", "EncoderOutput", "StagedEncoder"]

INPUT_KINDS = ("spectrogram", "waveform", "video", "text")


@dataclass
class EncoderOutput:
    """What an encoder returns from ``forward_features``.

    Attributes:
        tokens: (B, N, D) final patch tokens after the last norm, *without* the class token.
        pooled: (B, D) clip-level feature (class token or mean of ``tokens``), the input of the head.
        grid: the token grid of ``tokens`` per axis, e.g. ``(F', T')`` for a spectrogram or ``(t, h, w)`` for video;
            ``prod(grid) == N``, unless a keep-mask dropped tokens (then ``grid`` is the full grid and ``tokens``
            the kept ones, in grid order).
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    grid: tuple[int, ...]


@runtime_checkable
class Encoder(Protocol):
    """A single-modality encoder (see the module docstring)."""

    num_features: int
    input_kind: str

    def forward_features(self, x: torch.Tensor) -> EncoderOutput: ...

    def forward_head(self, feats: EncoderOutput) -> torch.Tensor: ...

    def no_weight_decay(self) -> set[str]: ...


@runtime_checkable
class StagedEncoder(Protocol):
    """An encoder a fusion module can run block by block (``avformer.fusion.bottleneck``).

    ``embed(x) -> (seq (B, P + N, D), grid)``; ``forward_block(i, seq, grid, *, num_prefix_tokens)`` runs block ``i``
    on ``[own prefix ; extra prefix ; grid tokens]`` (extra prefix tokens are never pooled); ``finalize(seq, grid)``
    gives the ``EncoderOutput`` of ``[own prefix ; grid tokens]``; ``block_dims()`` lists each block's
    ``(D_in, D_out)``.
    """

    num_prefix_tokens: int
    blocks: Sequence[torch.nn.Module]

    def block_dims(self) -> list[tuple[int, int]]: ...

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]: ...

    def forward_block(
        self, index: int, seq: torch.Tensor, grid: tuple[int, ...], *, num_prefix_tokens: int | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]: ...

    def finalize(self, seq: torch.Tensor, grid: tuple[int, ...]) -> EncoderOutput: ...
