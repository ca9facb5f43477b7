"""Fusion of an audio and a video encoder: interaction modules registered by name, and the classifier head.

``AVModel`` runs ``fusion(audio_encoder, video_encoder, audio, video, has_audio, has_video) -> FusionResult`` (see
:mod:`avformer.fusion.base`), then ``FusionHead`` on the pooled features. Registered fusions (``AVModelConfig.fusion``):
``late`` (independent encoders), ``bottleneck`` (MBT / MMT's AVBottleneck), ``concat`` (joint blocks over all
tokens), ``agnostic`` (Everything-at-Once), ``sparse`` (SFT), ``cross_attention`` (TCaF) and ``uavm`` (shared
blocks and head). Importing this package registers them.
"""

from __future__ import annotations

from avformer.fusion import cross_attention, joint, sparse, uavm  # noqa: F401  (register the fusions)
from avformer.fusion.base import FusionResult, LatentMix, Mask, masked_pair_mean, presence_mask
from avformer.fusion.bottleneck import (
    STAGED_ENCODER_API,
    BottleneckFusion,
    BottleneckFusionConfig,
    check_staged_encoder,
)
from avformer.fusion.head import FusionHead, FusionLogits, HeadConfig
from avformer.fusion.late import LateFusion, LateFusionConfig
from avformer.fusion.registry import FusionEntry, get_fusion, list_fusions, register_fusion

__all__ = [
    "STAGED_ENCODER_API",
    "BottleneckFusion",
    "BottleneckFusionConfig",
    "FusionEntry",
    "FusionHead",
    "FusionLogits",
    "FusionResult",
    "HeadConfig",
    "LateFusion",
    "LateFusionConfig",
    "LatentMix",
    "Mask",
    "check_staged_encoder",
    "get_fusion",
    "list_fusions",
    "masked_pair_mean",
    "presence_mask",
    "register_fusion",
]
