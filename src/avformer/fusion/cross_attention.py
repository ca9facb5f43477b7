"""Cross-attention fusion (TCaF): in the fused blocks each modality's tokens attend to the other modality's tokens.

Paper: Mercea et al., "Temporal and cross-modal attention for audio-visual zero-shot learning" (TCaF), ECCV 2022,
https://arxiv.org/abs/2207.09966; official code ExplainableML/TCAF-GZSL (``src/model_sequence.py``). As there, the
blocks run on one sequence ``[cls ; audio tokens ; video tokens]`` and the attention mask decides who reads whom::

    mode="cross" (TCaF's best)   an audio token attends to cls + the video tokens; a video token to cls + the audio
                                 tokens (queries from one stream, keys/values from the other; no self-attention
                                 within a modality, its own token included); cls attends to everything
    mode="both"                  every token attends to every token (cross- and self-attention)

The blocks' projections are shared by the two streams (one sequence), as in TCaF. The clip feature is the ``cls``
output (after the final norm); it is both modalities' ``pooled`` (with ``HeadConfig(mode="mean")`` the head is one
Linear on it, as TCaF's classifier reads the cls token). Options, both on by default as in TCaF: a learned
modality embedding and the time-aligned sinusoidal time code (:mod:`avformer.fusion.tokens`; TCaF uses random
Fourier features of the time in seconds, concatenated to the features and projected; here a fixed sinusoid, added).

An absent modality is masked out: its tokens are no key for anyone (an audio token of a sample without video then
attends to cls alone). LAVISH's latent adapters (Lin et al. 2023) reuse this pattern with a few latent tokens as the
keys; that is not implemented here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult
from avformer.fusion.registry import register_fusion
from avformer.fusion.tokens import FusionBlocks, TokenFusion, key_bias, output, zero_absent

__all__ = ["CrossAttentionFusion", "CrossAttentionFusionConfig", "cross_mask"]

_MODES = ("cross", "both")


@dataclass(frozen=True)
class CrossAttentionFusionConfig:
    """Cross-attention fusion settings.

    Attributes:
        depth: fused blocks (TCaF: 8).
        num_heads: attention heads.
        mlp_ratio: MLP width as a multiple of ``dim``.
        dim: the fused width; None = the wider encoder's.
        mode: ``"cross"`` (no attention within a modality) or ``"both"``.
        modality_embed: add a learned embedding per modality.
        time_embed: add the time-aligned sinusoidal code of each token.
    """

    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dim: int | None = None
    mode: str = "cross"
    modality_embed: bool = True
    time_embed: bool = True

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")


def cross_mask(na: int, nv: int, device: torch.device | None = None) -> Tensor:
    """(1 + na + nv,)² bool: True where query (row) may attend key (column) in ``mode="cross"``."""
    n = 1 + na + nv
    group = torch.cat([torch.zeros(1), torch.ones(na), torch.full((nv,), 2.0)]).to(device)  # 0 cls, 1 audio, 2 video
    allowed = group[:, None] != group[None, :]  # across modalities
    allowed[0, :] = True  # cls reads everything
    allowed[:, 0] = True  # everyone reads cls
    assert allowed.shape == (n, n)
    return allowed


class CrossAttentionFusion(TokenFusion):
    """TCaF-style fused blocks over two encoders' tokens (see the module docstring)."""

    def __init__(
        self,
        audio_dim: int,
        video_dim: int,
        cfg: CrossAttentionFusionConfig | None = None,
        audio_kind: str = "spectrogram",
    ) -> None:
        super().__init__()
        cfg = cfg or CrossAttentionFusionConfig()
        self.cfg = cfg
        self.joint = FusionBlocks(
            audio_dim, video_dim, cfg.dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio,
            modality_embed=cfg.modality_embed, time_embed=cfg.time_embed, audio_kind=audio_kind,
        )  # fmt: skip
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.joint.dim))

    def init_weights(self) -> None:
        """The blocks' init; the cls token truncated normal (std 0.02)."""
        self.joint.init_weights()
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """The cls token and the modality embeddings."""
        return {"cls_token"} | {f"joint.{n}" for n in self.joint.no_weight_decay()}

    def fuse_tokens(self, ta: Tensor, tv: Tensor, has_a: Tensor, has_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The fused blocks on embedded tokens ``ta`` (B, N_a, D), ``tv`` (B, N_v, D): (cls, audio, video) outputs."""
        B, na, nv = ta.shape[0], ta.shape[1], tv.shape[1]
        ta, tv = zero_absent(ta, has_a), zero_absent(tv, has_v)
        seq = torch.cat((self.cls_token.expand(B, -1, -1).to(ta.dtype), ta, tv), dim=1)
        bias = key_bias([(1, torch.ones_like(has_a)), (na, has_a), (nv, has_v)], seq.dtype)  # (B, 1, 1, N)
        if self.cfg.mode == "cross":
            allowed = cross_mask(na, nv, seq.device)
            bias = bias.masked_fill(~allowed, float("-inf"))  # (B, 1, N, N); every row keeps cls
        x = self.joint(seq, bias)
        return x[:, 0], x[:, 1 : 1 + na], x[:, 1 + na :]

    def fuse(self, a: Any, v: Any, has_a: Tensor, has_v: Tensor, *, alone: bool) -> FusionResult:
        """The fused blocks on the encoders' tokens; with ``alone`` each modality also with the other masked."""
        ta, tv = self.joint.inputs(a, v)
        z, xa, xv = self.fuse_tokens(ta, tv, has_a, has_v)
        res = FusionResult(output(xa, z, a.grid), output(xv, z, v.grid))
        if alone:
            on, off = torch.ones_like(has_a), torch.zeros_like(has_a)
            za, ya, _ = self.fuse_tokens(ta, tv, on, off)
            zv, _, yv = self.fuse_tokens(ta, tv, off, on)
            res.audio_alone, res.video_alone = output(ya, za, a.grid), output(yv, zv, v.grid)
        return res


@register_fusion("cross_attention", config=CrossAttentionFusionConfig)
def build_cross_attention(
    audio_encoder: nn.Module, video_encoder: nn.Module, cfg: CrossAttentionFusionConfig
) -> CrossAttentionFusion:
    """TCaF: fused blocks where each modality's tokens attend to the other's (and a cls token to all)."""
    a: Any = audio_encoder
    kind = str(getattr(a, "input_kind", "spectrogram"))
    return CrossAttentionFusion(int(a.num_features), int(video_encoder.num_features), cfg, kind)
