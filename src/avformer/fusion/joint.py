"""Joint transformers over the concatenated tokens of both encoders: concatenation fusion and the modality-agnostic
fusion block of Everything-at-Once.

* ``concat``: the dense reference. Every audio and video token of the encoders' outputs, with a learned modality
  embedding (and optionally a time embedding, :mod:`avformer.fusion.tokens`), goes through ``depth`` joint blocks;
  every token attends to every token of both modalities (MBT's "vanilla" full fusion, Nagrani et al. 2021, on top of
  the encoders rather than inside them). Attention cost grows with (N_a + N_v)².
* ``agnostic``: Shvetsova et al., "Everything at Once" (CVPR 2022, https://arxiv.org/abs/2112.04446; official code
  ninatu/everything_at_once, ``model/utils/fusion_transformer.py``): one transformer over the concatenated tokens of
  **any subset** of the modalities, with no position and no modality embeddings, so the same block runs on audio
  alone, video alone or both; each modality's embedding is the mean of its own output tokens, and the fused
  embedding (``FusionResult.fused``) is the mean of the present modalities' embeddings (EAO averages the two
  L2-normalised projected embeddings of a pair; the projections are ``AVModel``'s). EAO's defaults: one block,
  MLP ratio 1 (its blocks are 4096 wide); EAO also trains with a combinatorial contrastive loss over the subsets,
  which is a loss, not part of this block.

Absent modalities are masked out of attention, so a modality's output with the other one absent (``has_*`` False)
equals its output from a sequence that never had the other's tokens (tested). Both pool each modality's output
tokens by their mean; the classifier is ``AVModel``'s head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult, masked_pair_mean
from avformer.fusion.registry import register_fusion
from avformer.fusion.tokens import FusionBlocks, TokenFusion, key_bias, output, zero_absent

__all__ = ["AgnosticFusionConfig", "ConcatFusionConfig", "JointFusion"]


@dataclass(frozen=True)
class ConcatFusionConfig:
    """Concatenation fusion.

    Attributes:
        depth: joint blocks.
        num_heads: attention heads of the joint blocks.
        mlp_ratio: MLP width of the joint blocks as a multiple of ``dim``.
        dim: the joint width; None = the wider encoder's (narrower tokens are mapped by a Linear).
        modality_embed: add a learned embedding per modality.
        time_embed: add the time-aligned sinusoidal code of each token (:mod:`avformer.fusion.tokens`).
    """

    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dim: int | None = None
    modality_embed: bool = True
    time_embed: bool = False


@dataclass(frozen=True)
class AgnosticFusionConfig:
    """Everything-at-Once's fusion block: no position or modality embeddings, by design.

    Attributes:
        depth: blocks (EAO: 1).
        num_heads: attention heads.
        mlp_ratio: MLP width as a multiple of ``dim`` (EAO: 1).
        dim: the width; None = the wider encoder's.
    """

    depth: int = 1
    num_heads: int = 4
    mlp_ratio: float = 1.0
    dim: int | None = None


class JointFusion(TokenFusion):
    """``depth`` blocks over ``[audio tokens ; video tokens]`` (see the module docstring).

    Args:
        audio_dim, video_dim: the encoders' token widths.
        cfg: a :class:`ConcatFusionConfig` or :class:`AgnosticFusionConfig`.
        audio_kind: the audio encoder's ``input_kind`` (where time is in its grid, for ``time_embed``).
    """

    def __init__(
        self, audio_dim: int, video_dim: int, cfg: ConcatFusionConfig | AgnosticFusionConfig, audio_kind: str
    ) -> None:
        super().__init__()
        self.cfg = cfg
        concat = isinstance(cfg, ConcatFusionConfig)
        self.agnostic = not concat
        self.joint = FusionBlocks(
            audio_dim, video_dim, cfg.dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio,
            modality_embed=concat and cfg.modality_embed, time_embed=concat and cfg.time_embed, audio_kind=audio_kind,
        )  # fmt: skip

    def init_weights(self) -> None:
        """The blocks' init (modality embeddings truncated normal, std 0.02)."""
        self.joint.init_weights()

    def no_weight_decay(self) -> set[str]:
        """The modality embeddings."""
        return {f"joint.{n}" for n in self.joint.no_weight_decay()}

    def fuse(self, a: Any, v: Any, has_a: Tensor, has_v: Tensor, *, alone: bool) -> FusionResult:
        """The joint blocks over the encoders' tokens; with ``alone`` also each modality by itself."""
        ta, tv = self.joint.inputs(a, v)
        na = ta.shape[1]
        ja, jv = zero_absent(ta, has_a), zero_absent(tv, has_v)
        bias = key_bias([(na, has_a), (tv.shape[1], has_v)], ta.dtype)
        x = self.joint(torch.cat((ja, jv), dim=1), bias)  # (B, N_a + N_v, dim)
        xa, xv = x[:, :na], x[:, na:]
        out_a, out_v = output(xa, xa.mean(1), a.grid), output(xv, xv.mean(1), v.grid)
        fused = None
        if self.agnostic:  # EAO's embedding of the present modalities
            fused = masked_pair_mean(out_a.pooled, out_v.pooled, has_a, has_v, out_a.pooled.new_zeros(()))
        if not alone:
            return FusionResult(out_a, out_v, fused=fused)
        ya, yv = self.joint(ta), self.joint(tv)  # each modality with the other absent: a sequence of its own tokens
        alone_a, alone_v = output(ya, ya.mean(1), a.grid), output(yv, yv.mean(1), v.grid)
        return FusionResult(out_a, out_v, alone_a, alone_v, fused=fused)


def _build(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: Any) -> JointFusion:
    kind = str(getattr(audio_encoder, "input_kind", "spectrogram"))
    return JointFusion(int(audio_encoder.num_features), int(video_encoder.num_features), cfg, kind)


@register_fusion("concat", config=ConcatFusionConfig)
def build_concat(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: ConcatFusionConfig) -> JointFusion:
    """Joint blocks over all tokens of both encoders, with modality embeddings: the dense reference."""
    return _build(audio_encoder, video_encoder, cfg)


@register_fusion("agnostic", config=AgnosticFusionConfig)
def build_agnostic(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: AgnosticFusionConfig) -> JointFusion:
    """Everything-at-Once: one block over the tokens of any subset of modalities, no position/modality embeddings."""
    return _build(audio_encoder, video_encoder, cfg)
