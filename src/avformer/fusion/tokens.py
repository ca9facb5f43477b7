"""What the fusions that work on the encoders' output tokens share (concatenation, agnostic, sparse, cross-attention,
UAVM): the encoders run whole, their tokens are mapped to one fusion width, and the fusion's own transformer blocks
see them, with absent modalities masked out of attention.

Masking: a sample whose ``has_audio`` is False has its audio tokens removed from every attention (an additive
``-inf`` on those keys), so nothing of its audio reaches any output of that sample; a sample with neither modality
attends over everything (its outputs are meaningless and the head ignores it, as with late fusion), so no row of
the attention is empty.

Time embedding (an option of the concatenation and cross-attention fusions): each token gets the sinusoidal code of
the time at the centre of its bin, as a fraction of the clip (audio tokens: their column of the (F', T') grid;
video tokens: their frame slot of the (t, h, w) grid), so audio and video tokens of the same moment get the same code
whatever their grids (TCaF's time alignment, Mercea et al. 2022; TCaF uses random Fourier features of the time in
seconds, concatenated to the features; here a fixed sinusoid, added).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult, Mask, presence_mask
from avformer.layers.vit_block import Block

if TYPE_CHECKING:  # avformer.models imports this package (AVModel)
    from avformer.models.base import EncoderOutput

__all__ = [
    "FusionBlocks",
    "TokenFusion",
    "encode",
    "key_bias",
    "output",
    "presence",
    "project",
    "sinusoid",
    "token_times",
    "zero_absent",
]


def token_times(grid: Sequence[int], input_kind: str, device: torch.device | None = None) -> Tensor:
    """(N,) the time of each token of a ``grid`` in row-major order, as a fraction of the clip in (0, 1).

    Time is the last axis of a spectrogram grid (F', T') and the first of any other (video (t, h, w), waveform
    (N,), one token per frame (t,)). A spectrogram grid of frequency bands only (F',) (a CNN stem that pooled time
    away) has no time: every token is the whole clip, 0.5."""
    grid = tuple(grid)
    if input_kind == "spectrogram" and len(grid) == 1:
        return torch.full((grid[0],), 0.5, device=device)
    axis = len(grid) - 1 if input_kind == "spectrogram" else 0
    steps = grid[axis]
    t = (torch.arange(steps, device=device, dtype=torch.float32) + 0.5) / steps
    shape = [1] * len(grid)
    shape[axis] = steps
    return t.reshape(shape).expand(grid).reshape(-1)


def sinusoid(times: Tensor, dim: int, scale: float = 100.0) -> Tensor:
    """(N, dim) sinusoidal codes of ``times`` (fractions of the clip, scaled to ``scale`` positions): the Transformer's
    table at position ``scale * t``, so a clip spans about as many positions as a 100-token sequence."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=times.device, dtype=torch.float32) / half)
    arg = scale * times[:, None].float() * freq[None]
    out = torch.cat((arg.sin(), arg.cos()), dim=-1)
    return torch.nn.functional.pad(out, (0, dim - 2 * half))


def key_bias(present: Sequence[tuple[int, Tensor]], dtype: torch.dtype) -> Tensor:
    """(B, 1, 1, N) additive attention bias: ``-inf`` on the keys of a part that is absent in a sample.

    Args:
        present: per part of the sequence, in order: (its token count, its (B,) bool presence). A sample where no
            part is present keeps every key (see the module docstring).
    """
    keep = torch.cat([m[:, None].expand(-1, n) for n, m in present], dim=1)  # (B, N)
    keep = keep | ~keep.any(dim=1, keepdim=True)
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, float("-inf"))
    return bias[:, None, None, :]


def zero_absent(tokens: Tensor, present: Tensor) -> Tensor:
    """``tokens`` (B, N, D) with the samples where ``present`` (B,) is False set to zero by selection, so that even
    NaN or inf in an absent input cannot reach another token through attention (a masked key still multiplies its
    value by a zero weight, and 0 * NaN is NaN)."""
    return torch.where(present[:, None, None], tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device))


def project(dim_in: int, dim: int) -> nn.Module:
    """Linear ``dim_in -> dim``, the identity where they agree."""
    return nn.Linear(dim_in, dim) if dim_in != dim else nn.Identity()


class FusionBlocks(nn.Module):
    """The fusion's own pre-norm transformer blocks and final LayerNorm, with the per-modality input maps and the
    optional token embeddings.

    Args:
        audio_dim, video_dim: the encoders' token widths.
        dim: the fusion width (None: the wider encoder's).
        depth, num_heads, mlp_ratio: of the blocks (:class:`~avformer.layers.vit_block.Block`).
        modality_embed: a learned embedding per modality, added by :meth:`inputs`.
        time_embed: the time-aligned sinusoidal code of each token, added by :meth:`inputs`.
        audio_kind: the audio encoder's ``input_kind`` (where time is in its grid).
    """

    def __init__(
        self,
        audio_dim: int,
        video_dim: int,
        dim: int | None,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        *,
        modality_embed: bool = False,
        time_embed: bool = False,
        audio_kind: str = "spectrogram",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"fusion depth must be >= 1, got {depth}")
        self.dim = dim or max(audio_dim, video_dim)
        self.audio_in = project(audio_dim, self.dim)
        self.video_in = project(video_dim, self.dim)
        self.modality_embed = nn.Parameter(torch.zeros(2, self.dim)) if modality_embed else None
        self.time_embed, self.audio_kind = time_embed, audio_kind
        self.blocks = nn.ModuleList(Block(self.dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(self.dim, eps=1e-6)

    def init_weights(self) -> None:
        """Truncated normal (std 0.02) Linear weights and modality embeddings, zero biases, unit LayerNorms."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.modality_embed is not None:
            nn.init.trunc_normal_(self.modality_embed, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """The modality embeddings."""
        return {"modality_embed"} if self.modality_embed is not None else set()

    def inputs(self, a: Any, v: Any) -> tuple[Tensor, Tensor]:
        """The encoders' outputs ``a``, ``v`` (:class:`EncoderOutput`) as tokens of the fusion width, with the
        modality and time embeddings when enabled."""
        ta, tv = self.audio_in(a.tokens), self.video_in(v.tokens)
        if self.modality_embed is not None:
            ta, tv = ta + self.modality_embed[0].to(ta.dtype), tv + self.modality_embed[1].to(tv.dtype)
        if self.time_embed:
            ta = ta + sinusoid(token_times(a.grid, self.audio_kind, ta.device), self.dim).to(ta.dtype)
            tv = tv + sinusoid(token_times(v.grid, "video", tv.device), self.dim).to(tv.dtype)
        return ta, tv

    def forward(self, x: Tensor, attn_bias: Tensor | None = None, mix: tuple[int, Any] | None = None) -> Tensor:
        """``x``: (B, N, dim) through every block, then the norm.

        ``mix = (layer, LatentMix)``: before block ``layer`` (``depth``: after the last block, before the norm) the
        tokens of each sample become ``lam * x + (1 - lam) * x[index]`` (latent mixup)."""
        for i, blk in enumerate(self.blocks):
            if mix is not None and mix[0] == i:
                x = _mix(x, mix[1])
            x = blk(x, attn_bias)
        if mix is not None and mix[0] == len(self.blocks):
            x = _mix(x, mix[1])
        return self.norm(x)


def _mix(x: Tensor, mix: Any) -> Tensor:
    lam = mix.lam.to(x.dtype)[:, None, None]
    return lam * x + (1.0 - lam) * x[mix.index]


class TokenFusion(nn.Module):
    """Base of the fusions that read the encoders' output tokens: ``forward`` (the fusion contract of
    :mod:`avformer.fusion.base`) runs both encoders whole and hands their outputs to :meth:`fuse`."""

    def fuse(self, a: Any, v: Any, has_a: Tensor, has_v: Tensor, *, alone: bool) -> FusionResult:
        """The fusion proper, on the encoders' outputs ``a``, ``v`` and the (B,) presence masks."""
        raise NotImplementedError

    def forward(
        self,
        audio_encoder: nn.Module,
        video_encoder: nn.Module,
        audio: Tensor,
        video: Tensor,
        has_audio: Mask = None,
        has_video: Mask = None,
        *,
        alone: bool = False,
    ) -> FusionResult:
        """Both encoders, then :meth:`fuse`; with ``alone`` the result also has each modality by itself."""
        return self.fuse(*encode(audio_encoder, video_encoder, audio, video, has_audio, has_video), alone=alone)


def presence(audio: Tensor, video: Tensor, has_audio: Mask, has_video: Mask) -> tuple[Tensor, Tensor]:
    """The (B,) presence masks of a batch (checked batch sizes)."""
    B = audio.shape[0]
    if video.shape[0] != B:
        raise ValueError(f"audio and video batch sizes differ: {B} vs {video.shape[0]}")
    return presence_mask(has_audio, B, audio.device), presence_mask(has_video, B, audio.device)


def encode(
    audio_encoder: Any, video_encoder: Any, audio: Tensor, video: Tensor, has_audio: Mask, has_video: Mask
) -> tuple[Any, Any, Tensor, Tensor]:
    """Both encoders' ``forward_features`` and the (B,) presence masks (checked batch sizes)."""
    has_a, has_v = presence(audio, video, has_audio, has_video)
    return audio_encoder.forward_features(audio), video_encoder.forward_features(video), has_a, has_v


def output(tokens: Tensor, pooled: Tensor, grid: Sequence[int]) -> EncoderOutput:
    """An :class:`EncoderOutput` of fused tokens."""
    from avformer.models.base import EncoderOutput

    return EncoderOutput(tokens, pooled, tuple(grid))
