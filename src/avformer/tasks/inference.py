"""One forward pass for any trained classifier: an audio-visual model or a single-modality encoder.

:func:`predict_batch` takes a batch from :func:`avformer.data.collate` and returns **scores per view of the
data**: ``"fused"`` (both modalities, as present), and for audio-visual models also ``"audio"`` (video masked out)
and ``"video"`` (audio masked out), so fused, audio-only and video-only accuracy come from one model side by side.
Batches with several test views per sample (``(B, V, ...)`` from ``DataConfig.num_test_clips > 1``) are run view
by view and the per-view outputs pooled with :func:`avformer.metrics.aggregate.aggregate_views`.

Training validation (``avformer.tasks.classification``), ``avformer eval`` and ``avformer predict`` all go through here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from avformer.metrics.aggregate import aggregate_views
from avformer.models.av_model import input_modality

__all__ = ["input_modality", "predict_batch"]

_SAMPLE_NDIM = {"spectrogram": 3, "waveform": 2, "video": 4}  # per-sample input dims: (1,F,T), (1,S), (C,T,H,W)


def _views(x: torch.Tensor, sample_ndim: int) -> torch.Tensor:
    """(B, ...) -> (B, 1, ...); (B, V, ...) stays: a leading view axis when the sample has one more dim."""
    if x.ndim == sample_ndim + 1:
        return x.unsqueeze(1)
    if x.ndim == sample_ndim + 2:
        return x
    raise ValueError(f"expected {sample_ndim + 1} or {sample_ndim + 2} dims, got shape {tuple(x.shape)}")


def _pool(per_view: list[torch.Tensor], multilabel: bool) -> torch.Tensor:
    stacked = torch.stack(per_view, dim=1).float()  # (B, V, K)
    if stacked.shape[1] == 1:
        return stacked[:, 0]
    scores = aggregate_views(stacked, activation="sigmoid" if multilabel else "softmax")
    # back to the logit scale, so callers treat one and several views alike
    return torch.logit(scores.clamp(1e-7, 1 - 1e-7)) if multilabel else scores.clamp_min(1e-12).log()


@torch.no_grad()
def predict_batch(
    model: nn.Module, batch: dict[str, Any], *, multilabel: bool = False, per_modality: bool = True
) -> dict[str, torch.Tensor]:
    """Scores (B, K) for each view of the data the model supports.

    Args:
        model: an :class:`AVModel` or an encoder with ``input_kind`` and a classification head.
        batch: a collated batch (``audio``/``video`` tensors, ``has_audio``/``has_video`` masks) on the model's
            device.
        multilabel: pool several test views with sigmoid instead of softmax.
        per_modality: for AV models also compute the audio-only and video-only scores.

    Returns:
        ``{"fused": (B, K)}`` plus ``"audio"``/``"video"`` for AV models: logits (one view) or log-probabilities
        of the pooled views (several views). For single encoders ``"fused"`` is the encoder's own prediction and
        the key named after its modality holds the same tensor.
    """
    kind = input_modality(model)
    if kind != "av":
        sample_ndim = _SAMPLE_NDIM[getattr(model, "input_kind", "video")]
        x = _views(batch[kind], sample_ndim)
        logits = _pool([model(x[:, v]) for v in range(x.shape[1])], multilabel)
        return {"fused": logits, kind: logits}

    audio = _views(batch["audio"], _SAMPLE_NDIM[model.audio_encoder.input_kind])
    video = _views(batch["video"], _SAMPLE_NDIM["video"])
    if audio.shape[1] != video.shape[1]:
        raise ValueError(f"audio has {audio.shape[1]} views but video {video.shape[1]}")
    n = audio.shape[0]
    ones = torch.ones(n, dtype=torch.bool, device=audio.device)
    has_audio = batch.get("has_audio", ones).bool()
    has_video = batch.get("has_video", ones).bool()
    settings = {"fused": (has_audio, has_video)}
    if per_modality:
        settings["audio"] = (has_audio, torch.zeros_like(has_video))
        settings["video"] = (torch.zeros_like(has_audio), has_video)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in settings}
    for v in range(video.shape[1]):
        for name, (ha, hv) in settings.items():
            out[name].append(model(audio[:, v], video[:, v], ha, hv).logits)
    return {name: _pool(vals, multilabel) for name, vals in out.items()}
