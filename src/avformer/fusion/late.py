"""Late fusion: the two encoders run independently; only their pooled features meet, in the classifier head.

The baseline of every audio-visual paper (MBT's "late fusion", Nagrani et al. 2021,
https://arxiv.org/abs/2107.00135). With ``FusionHead(mode="logits")`` it averages per-modality logits as MBT does.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from avformer.fusion.base import FusionResult, Mask
from avformer.fusion.registry import register_fusion

__all__ = ["LateFusion", "LateFusionConfig"]


@dataclass(frozen=True)
class LateFusionConfig:
    """Late fusion has no settings of its own (the head's are in ``AVModelConfig.head``)."""


class LateFusion(nn.Module):
    """Runs each encoder's ``forward_features`` on its own input; nothing crosses between them."""

    def init_weights(self) -> None:
        """Nothing to initialise."""

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
        """Both encoders independently; the masks matter only in the head. With ``alone`` each modality's features
        without the other are the same ones."""
        a, v = audio_encoder.forward_features(audio), video_encoder.forward_features(video)
        return FusionResult(a, v, a, v) if alone else FusionResult(a, v)


@register_fusion("late", config=LateFusionConfig)
def build_late(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: LateFusionConfig) -> LateFusion:
    """Independent encoders; the head alone combines them."""
    return LateFusion()
