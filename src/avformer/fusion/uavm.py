"""UAVM: modality-specific blocks, then blocks and a classifier **shared** by audio and video.

Paper: Gong et al., "UAVM: Towards Unifying Audio and Visual Models", IEEE SPL 2022, https://arxiv.org/abs/2208.00061;
official code YuanGongND/uavm (``src/models/mm_trans.py``, ``UnifiedTrans``; training loop ``src/traintest.py``).
Here the encoders are the modality-specific blocks; this module holds the shared ones::

    audio tokens -> in_a -+                                     +-> mean over tokens -> LayerNorm -> p_a
                          +-> the same ``depth`` shared blocks -+
    video tokens -> in_v -+   (each modality runs them alone)   +-> mean over tokens -> LayerNorm -> p_v

The two modalities never attend to each other: UAVM unifies the *weights*, not the sequence. With
``HeadConfig(mode="mean")`` ``AVModel``'s head is one Linear shared by both (UAVM's head is LayerNorm + Linear, the
norm being the shared one above), and the audio-visual prediction, ``head((p_a + p_v) / 2)``, is exactly the mean
of the two single-modality logits (UAVM's evaluation), since the head is linear.

Training (UAVM feeds one modality per batch): with ``audio_prob`` set, a training forward without ``alone`` draws
audio with that probability (torch's global RNG, so resume stays exact) and otherwise video, per batch (UAVM) or per
sample (``sample_per="sample"``), and reports the other modality as absent (``FusionResult.has_audio`` /
``has_video``): the fused loss is then the chosen modality's. Per batch, the other encoder does not run at all (half
the encoder compute; ``skips_parameters`` tells the task, which tells DDP to find unused parameters). Evaluation and
``alone`` use both.

What differs from UAVM: its inputs are frozen ConvNeXt features (30 time steps per modality) with learned position
tables in every stack; here the encoders are trained end to end and keep their own position embeddings, and the
shared stack adds none (the two token grids differ). UAVM's blocks have no qkv bias; these have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult, Mask
from avformer.fusion.registry import register_fusion
from avformer.fusion.tokens import FusionBlocks, output, presence

__all__ = ["UAVMFusion", "UAVMFusionConfig"]

_SAMPLE_PER = ("batch", "sample")


@dataclass(frozen=True)
class UAVMFusionConfig:
    """UAVM settings.

    Attributes:
        depth: shared blocks (UAVM: 3).
        num_heads: attention heads of the shared blocks (UAVM: 4).
        mlp_ratio: MLP width as a multiple of ``dim``.
        dim: the shared width; None = the wider encoder's (UAVM: 1024).
        audio_prob: during training, the probability of feeding audio (else video); None = feed both (the fused
            loss then trains both at once).
        sample_per: draw the modality per ``"batch"`` (UAVM) or per ``"sample"``.
    """

    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dim: int | None = None
    audio_prob: float | None = 0.5
    sample_per: str = "batch"

    def __post_init__(self) -> None:
        if self.audio_prob is not None and not 0.0 <= self.audio_prob <= 1.0:
            raise ValueError(f"audio_prob must be in [0, 1] or None, got {self.audio_prob}")
        if self.sample_per not in _SAMPLE_PER:
            raise ValueError(f"sample_per must be one of {_SAMPLE_PER}, got {self.sample_per!r}")


class UAVMFusion(nn.Module):
    """UAVM's shared stack over two encoders (see the module docstring)."""

    def __init__(self, audio_dim: int, video_dim: int, cfg: UAVMFusionConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or UAVMFusionConfig()
        self.cfg = cfg
        self.shared = FusionBlocks(audio_dim, video_dim, cfg.dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio)
        self.head_norm = nn.LayerNorm(self.shared.dim, eps=1e-6)  # UAVM's head norm, shared
        # per batch one encoder gets no gradient: the task tells DDP (find_unused_parameters)
        self.skips_parameters = cfg.audio_prob is not None and cfg.sample_per == "batch"

    def init_weights(self) -> None:
        """The shared blocks' init; the head norm at unit scale."""
        self.shared.init_weights()
        nn.init.ones_(self.head_norm.weight)
        nn.init.zeros_(self.head_norm.bias)

    def _shared(self, enc: Any, x: Tensor, proj: nn.Module) -> Any:
        """One modality through its encoder and the shared blocks."""
        f = enc.forward_features(x)
        t = self.shared(proj(f.tokens))
        return output(t, self.head_norm(t.mean(1)), f.grid)

    def _absent(self, like: Tensor) -> Any:
        """The output of a modality that did not run: zeros shaped like the other's pooled ``like`` (reported
        absent)."""
        z = torch.zeros_like(like)
        return output(z[:, None], z, (1,))

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
        """Each modality through its encoder and the shared blocks; in training, one modality (see the docstring)."""
        has_a, has_v = presence(audio, video, has_audio, has_video)
        sampling = self.training and not alone and self.cfg.audio_prob is not None
        p = self.cfg.audio_prob or 0.0
        if sampling and self.cfg.sample_per == "batch":  # one encoder only
            if float(torch.rand(())) < p:
                out_a = self._shared(audio_encoder, audio, self.shared.audio_in)
                return FusionResult(out_a, self._absent(out_a.pooled), has_video=torch.zeros_like(has_v))
            out_v = self._shared(video_encoder, video, self.shared.video_in)
            return FusionResult(self._absent(out_v.pooled), out_v, has_audio=torch.zeros_like(has_a))
        if sampling:  # per sample: a clip with both modalities keeps the one drawn, a clip with one keeps it
            pick_a, both = torch.rand(has_a.shape[0], device=has_a.device) < p, has_a & has_v
            has_a, has_v = has_a & (pick_a | ~both), has_v & (~pick_a | ~both)
        out_a = self._shared(audio_encoder, audio, self.shared.audio_in)
        out_v = self._shared(video_encoder, video, self.shared.video_in)
        if sampling:
            return FusionResult(out_a, out_v, has_audio=has_a, has_video=has_v)
        return FusionResult(out_a, out_v, out_a, out_v) if alone else FusionResult(out_a, out_v)


@register_fusion("uavm", config=UAVMFusionConfig)
def build_uavm(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: UAVMFusionConfig) -> UAVMFusion:
    """UAVM: modality-specific encoders, then shared blocks and a shared head; one modality per training batch."""
    a: Any = audio_encoder
    return UAVMFusion(int(a.num_features), int(video_encoder.num_features), cfg)
