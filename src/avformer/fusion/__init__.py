"""Fusion of an audio and a video encoder.

A fusion module has two methods, which ``avformer.models.av_model.AVModel`` calls:

* ``encode(audio_encoder, video_encoder, audio, video, has_audio, has_video) -> (EncoderOutput, EncoderOutput)``:
  run the encoders, letting them interact or not;
* ``forward(audio_pooled, video_pooled, has_audio, has_video) -> FusionLogits``: the prediction head.

``LateFusion`` (independent encoders; logits, mean or concat head) and ``BottleneckFusion`` (MBT / MMT's
AVBottleneck) are built from their frozen configs, ``LateFusionConfig`` and ``BottleneckFusionConfig``.
"""

from __future__ import annotations

from avformer.fusion.bottleneck import (
    STAGED_ENCODER_API,
    BottleneckFusion,
    BottleneckFusionConfig,
    check_staged_encoder,
)
from avformer.fusion.late import FusionLogits, LateFusion, LateFusionConfig, masked_pair_mean, presence_mask

__all__ = [
    "STAGED_ENCODER_API",
    "BottleneckFusion",
    "BottleneckFusionConfig",
    "FusionLogits",
    "LateFusion",
    "LateFusionConfig",
    "check_staged_encoder",
    "masked_pair_mean",
    "presence_mask",
]
