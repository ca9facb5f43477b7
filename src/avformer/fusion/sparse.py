"""Sparse Fusion Transformer (SFT): pool each modality's tokens to a few, then joint blocks over the short sequence.

Paper: Ding et al., "Sparse Fusion for Multimodal Transformers", 2021, https://arxiv.org/abs/2111.11992; official
code yding37/sft (``models/sparse_fusion_transformer.py``). Here::

    encoders (SFT's unimodal blocks) -> tokens a (B, N_a, D), v (B, N_v, D), pooled features p_a, p_v
    z   = in_a(p_a) + in_v(p_v)                      the modalities' class tokens, summed (present ones only)
    a'  = pool_a(in_a(a))   (B, ceil(N_a / k_a), D)  sparse pooling, kernel = stride (:mod:`avformer.layers.token_pool`)
    v'  = pool_v(in_v(v))   (B, ceil(N_v / k_v), D)
    [z ; a' ; v'] -> ``depth`` joint blocks -> LayerNorm -> z is the clip feature (both modalities' ``pooled``)

As in SFT the joint sequence gets no new position or modality embedding, and the classifier reads the fused class
token (with ``HeadConfig(mode="mean")`` ``AVModel``'s head is one Linear on it). The joint blocks see only the pooled
tokens and the class token: their cost is that of ``1 + ceil(N_a/k_a) + ceil(N_v/k_v)`` tokens instead of
``N_a + N_v`` (tested).

What differs from SFT: the class tokens are the encoders' pooled features (our encoders pool by mean; SFT's
tokenizers prepend a learned class token per modality); ``attn`` pooling weighs tokens with a learned query, not
with the attention map of SFT's sparse-attention sub-layer; ``topk_norm`` (whole tokens by L2 norm) is ours, SFT's
``topk`` keeps per-channel values. Latent mixup (``mixup_alpha``, SFT: 0.3) mixes the joint sequence before a joint
block drawn per batch with one λ per sample (SFT draws among its unimodal layer too, with a λ per modality there);
the single-modality passes of ``alone`` stay unmixed. SFT's recipe: 1 unimodal and 11 joint blocks, max pooling,
kernels 38-64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult, LatentMix
from avformer.fusion.registry import register_fusion
from avformer.fusion.tokens import FusionBlocks, TokenFusion, key_bias, output, zero_absent
from avformer.layers.token_pool import POOL_OPS, TokenPool

__all__ = ["SparseFusion", "SparseFusionConfig"]


@dataclass(frozen=True)
class SparseFusionConfig:
    """SFT settings.

    Attributes:
        depth: joint blocks after pooling.
        num_heads: attention heads of the joint blocks.
        mlp_ratio: MLP width of the joint blocks as a multiple of ``dim``.
        dim: the joint width; None = the wider encoder's.
        pool: pooling op of both modalities (``max`` (SFT), ``avg``, ``topk``, ``topk_norm``, ``attn``).
        audio_kernel: window (= stride) over the audio tokens.
        video_kernel: window (= stride) over the video tokens.
        mixup_alpha: latent mixup in training (0 = off; SFT: 0.3): λ ~ Beta(α, α) per sample, one permutation per
            batch, mixed into the joint sequence before a joint block drawn uniformly per batch (or after the last);
            the task mixes the targets the same way (:class:`~avformer.fusion.base.LatentMix`).
    """

    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dim: int | None = None
    pool: str = "max"
    audio_kernel: int = 4
    video_kernel: int = 8
    mixup_alpha: float = 0.0

    def __post_init__(self) -> None:
        if self.mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        if self.pool not in POOL_OPS:
            raise ValueError(f"pool must be one of {POOL_OPS}, got {self.pool!r}")
        if min(self.audio_kernel, self.video_kernel) < 1:
            raise ValueError(f"kernels must be >= 1, got {self.audio_kernel}, {self.video_kernel}")


class SparseFusion(TokenFusion):
    """SFT over two encoders' tokens (see the module docstring)."""

    def __init__(self, audio_dim: int, video_dim: int, cfg: SparseFusionConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or SparseFusionConfig()
        self.cfg = cfg
        self.joint = FusionBlocks(audio_dim, video_dim, cfg.dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio)
        self.audio_pool = TokenPool(self.joint.dim, cfg.pool, cfg.audio_kernel)
        self.video_pool = TokenPool(self.joint.dim, cfg.pool, cfg.video_kernel)

    def init_weights(self) -> None:
        """The blocks' init; ``attn`` pooling queries truncated normal (std 0.02)."""
        self.joint.init_weights()
        for pool in (self.audio_pool, self.video_pool):
            if pool.query is not None:
                nn.init.trunc_normal_(pool.query, std=0.02)

    def _draw_mix(self, batch: int, device: torch.device) -> tuple[int, LatentMix] | None:
        """The latent mixup of a training batch (torch's global RNG, so a resumed run draws the same)."""
        a = self.cfg.mixup_alpha
        if not (self.training and a > 0):
            return None
        layer = int(torch.randint(0, self.cfg.depth + 1, ()))
        lam = torch.distributions.Beta(torch.tensor(a), torch.tensor(a)).sample((batch,))
        return layer, LatentMix(torch.randperm(batch).to(device), lam.to(device))

    def _joint(
        self, parts: list[tuple[Tensor, Tensor, Tensor]], mix: tuple[int, LatentMix] | None = None
    ) -> list[Tensor]:
        """Joint blocks over ``[sum of present class tokens ; pooled tokens of each part]``.

        ``parts``: per modality (class token (B, D), pooled tokens (B, n, D), presence (B,)). Returns the class
        token's output and each part's tokens."""
        keep = torch.stack([m for _, _, m in parts], dim=1)  # (B, M)
        keep = keep | ~keep.any(dim=1, keepdim=True)
        z = sum(torch.where(keep[:, i, None], c, torch.zeros_like(c)) for i, (c, _, _) in enumerate(parts))
        assert isinstance(z, Tensor)
        seq = torch.cat([z[:, None]] + [zero_absent(t, m) for _, t, m in parts], dim=1)
        first = torch.ones_like(keep[:, 0])
        bias = key_bias([(1, first)] + [(t.shape[1], m) for _, t, m in parts], seq.dtype)
        x = self.joint(seq, bias, mix)
        outs, start = [x[:, 0]], 1
        for _, t, _ in parts:
            outs.append(x[:, start : start + t.shape[1]])
            start += t.shape[1]
        return outs

    def fuse(self, a: Any, v: Any, has_a: Tensor, has_v: Tensor, *, alone: bool) -> FusionResult:
        """Sparse pooling, then the joint blocks; with ``alone`` each modality also by itself."""
        B = has_a.shape[0]
        ca, cv = self.joint.audio_in(a.pooled), self.joint.video_in(v.pooled)
        pa = self.audio_pool(self.joint.audio_in(a.tokens))  # (B, ceil(N_a / k_a), D)
        pv = self.video_pool(self.joint.video_in(v.tokens))
        mix = self._draw_mix(B, has_a.device)  # the alone passes below stay unmixed
        z, xa, xv = self._joint([(ca, pa, has_a), (cv, pv, has_v)], mix)
        ga, gv = (pa.shape[1],), (pv.shape[1],)
        res = FusionResult(output(xa, z, ga), output(xv, z, gv), mix=None if mix is None else mix[1])
        if alone:
            on = torch.ones_like(has_a)
            za, ya = self._joint([(ca, pa, on)])
            zv, yv = self._joint([(cv, pv, on)])
            res.audio_alone, res.video_alone = output(ya, za, ga), output(yv, zv, gv)
        return res


@register_fusion("sparse", config=SparseFusionConfig)
def build_sparse(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: SparseFusionConfig) -> SparseFusion:
    """SFT: each modality's tokens pooled to a few (max / avg / top-k / attention), joint blocks over them."""
    a: Any = audio_encoder
    return SparseFusion(int(a.num_features), int(video_encoder.num_features), cfg)
