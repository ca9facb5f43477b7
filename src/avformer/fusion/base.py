"""The fusion contract: what every audio-visual interaction module takes and returns.

A fusion module decides whether and where the two encoders exchange information (late: never; bottleneck: through
a few shared tokens in the last blocks; ...). It does not own the encoders (``AVModel`` does) and it has no
classifier: :class:`~avformer.fusion.head.FusionHead` turns its pooled features into logits. Its interface::

    forward(audio_encoder, video_encoder, audio, video, has_audio, has_video, *, alone=False) -> FusionResult
    init_weights()          # called by AVModel once the whole model (head included) is built
    no_weight_decay()       # parameter names without weight decay (learned tokens), optional

``has_audio`` / ``has_video`` are (B,) bool masks (an absent modality must not reach the other one). With ``alone``
the result also carries each modality's features computed with the other one masked for every sample: what
audio-only and video-only evaluation and the per-modality losses read.

Register a new fusion with :func:`avformer.fusion.registry.register_fusion` (one file + its test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # the encoder contract; avformer.models imports this package (AVModel)
    from avformer.models.base import EncoderOutput

__all__ = ["FusionResult", "LatentMix", "Mask", "masked_pair_mean", "presence_mask"]

Mask = Tensor | None  # a (B,) bool presence mask, True = present; None: present in every sample


@dataclass
class LatentMix:
    """A fusion mixed the hidden states of the batch (SFT's latent mixup): the fused output of sample ``i`` is that of
    ``lam[i] * (sample i) + (1 - lam[i]) * (sample index[i])`` at some layer, so its fused loss must mix the two
    targets the same way (the classification task does).

    Attributes:
        index: (B,) long, the partner of each sample.
        lam: (B,) float in [0, 1], the weight of the sample itself.
    """

    index: Tensor
    lam: Tensor


@dataclass
class FusionResult:
    """What every fusion module returns.

    Attributes:
        audio: the audio encoder's output after the interaction (tokens, pooled, grid), as its ``forward_features``
            would return it.
        video: likewise for video.
        audio_alone: audio features with video masked for every sample; only with ``alone=True``, else None. For a
            fusion without interaction (late) these are ``audio`` itself.
        video_alone: likewise for video.
        fused: (B, D) a joint clip feature when the fusion makes one (e.g. a shared stack's pooled token), else None.
        has_audio: (B,) bool, the presence the head and the losses must use when the fusion changed it (UAVM trains
            on one modality per batch and reports the other absent); None = the presence it was given.
        has_video: likewise for video.
        mix: set when the fusion mixed samples (SFT's latent mixup, training only); the fused outputs and
            ``audio`` / ``video`` are mixed, the ``*_alone`` ones are not.

    A fusion whose clip feature is one joint token (SFT, cross-attention) returns it as both ``audio.pooled`` and
    ``video.pooled`` (``HeadConfig(mode="mean")`` then gives one classifier on it).
    """

    audio: EncoderOutput
    video: EncoderOutput
    audio_alone: EncoderOutput | None = None
    video_alone: EncoderOutput | None = None
    fused: Tensor | None = None
    has_audio: Tensor | None = None
    has_video: Tensor | None = None
    mix: LatentMix | None = None


def presence_mask(mask: Mask, batch: int, device: torch.device) -> Tensor:
    """A (B,) bool presence mask; ``None`` means "present in every sample".

    Raises:
        ValueError: the mask is not of shape (B,).
    """
    if mask is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    if mask.shape != (batch,):
        raise ValueError(f"presence mask must have shape ({batch},), got {tuple(mask.shape)}")
    return mask.to(device=device, dtype=torch.bool)


def masked_pair_mean(a: Tensor, b: Tensor, has_a: Tensor, has_b: Tensor, neither: Tensor) -> Tensor:
    """Per-sample mean of ``a`` and ``b`` over the present ones; ``neither`` where both are absent.

    Args:
        a, b: (B, ...) same shape.
        has_a, has_b: (B,) bool.
        neither: broadcastable to ``a``: the value of samples with neither input.

    Selection uses ``torch.where`` rather than multiplying by the mask, so an absent input's values (even NaN or
    inf) never reach the result, and its gradient there is exactly zero.
    """
    shape = (-1,) + (1,) * (a.ndim - 1)
    ma, mb = has_a.reshape(shape), has_b.reshape(shape)
    one = torch.where(ma, a, torch.where(mb, b, neither))
    return torch.where(ma & mb, (a + b) * 0.5, one)
