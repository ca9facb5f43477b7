"""The classifier of an audio-visual model: pooled audio and video features in, logits out.

Every fusion module ends here: the interaction (:mod:`avformer.fusion.late`, :mod:`avformer.fusion.bottleneck`,
...) produces each modality's pooled feature, and :class:`FusionHead` combines them. Late fusion is the baseline of
every audio-visual paper: Nagrani et al., "Attention Bottlenecks for Multimodal Fusion" (MBT), NeurIPS 2021,
https://arxiv.org/abs/2107.00135, average the per-modality logits, and their bottleneck model ends the same way.

Three ways to combine the pooled features ``a`` (B, D_a) and ``v`` (B, D_v)::

    mode="logits"  (MBT)  logits = mean over present m of head_m(f_m)          audio_logits, video_logits returned
    mode="mean"           logits = head(mean over present m of proj_m(f_m))   proj_m: Linear to max(D_a, D_v), or
                                                                               identity for the wider modality
    mode="concat"         logits = head([a or e_a ; v or e_v])                 e_m: learned "modality absent" vector

Missing modalities: ``has_audio`` / ``has_video`` are (B,) bool masks. An absent modality never enters the fused
result of its sample: it is left out of the means (``torch.where``, so even NaN/inf in the absent input cannot
leak), and ``concat`` puts the learned absent-vector ``e_m`` in its slot instead of zeros that the head would read as a
real (silent) feature. A sample with neither modality gets zero logits (``logits``), the head bias (``mean``) or
``head([e_a ; e_v])`` (``concat``): a constant prior, not an error, so a batch never fails on one bad sample.

What differs from MBT's late fusion: MBT shares one classifier across modalities (equal widths); here each modality
has its own head (``logits``), because the two encoders may differ in width. ``mean`` and ``concat`` are our
feature-level variants.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from avformer.fusion.base import Mask, masked_pair_mean, presence_mask

__all__ = ["FusionHead", "FusionLogits", "HeadConfig"]

_MODES = ("logits", "mean", "concat")


@dataclass(frozen=True)
class HeadConfig:
    """How the pooled features of the two modalities are combined.

    Attributes:
        mode: ``"logits"`` (mean of per-modality logits, MBT), ``"mean"`` (mean of features, one head) or
            ``"concat"`` (concatenated features, one head).
        drop_rate: dropout on the pooled features before the head(s).
    """

    mode: str = "logits"
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"HeadConfig.mode must be one of {_MODES}, got {self.mode!r}")
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")


@dataclass
class FusionLogits:
    """Output of a fusion head.

    Attributes:
        logits: (B, K) fused prediction, computed from the present modalities only.
        audio_logits: (B, K) audio-only logits (``mode="logits"``), else None. Meaningless where audio is absent.
        video_logits: (B, K) video-only logits, likewise.
    """

    logits: Tensor
    audio_logits: Tensor | None
    video_logits: Tensor | None


def _init_linear(m: nn.Linear) -> None:
    nn.init.trunc_normal_(m.weight, std=0.02)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


class FusionHead(nn.Module):
    """Classifier over the pooled audio and video features (see the module docstring).

    Args:
        audio_dim: width of the audio pooled feature ``D_a``.
        video_dim: width of the video pooled feature ``D_v``.
        num_classes: ``K`` >= 1.
        cfg: combination mode and dropout.
    """

    def __init__(self, audio_dim: int, video_dim: int, num_classes: int, cfg: HeadConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or HeadConfig()
        if min(audio_dim, video_dim) < 1 or num_classes < 1:
            raise ValueError(f"widths and num_classes must be >= 1, got {audio_dim}, {video_dim}, {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.drop = nn.Dropout(cfg.drop_rate)
        self.audio_head: nn.Linear | None = None
        self.video_head: nn.Linear | None = None
        self.audio_proj: nn.Module | None = None
        self.video_proj: nn.Module | None = None
        self.head: nn.Linear | None = None
        self.missing_audio: nn.Parameter | None = None
        self.missing_video: nn.Parameter | None = None
        if cfg.mode == "logits":
            self.audio_head = nn.Linear(audio_dim, num_classes)
            self.video_head = nn.Linear(video_dim, num_classes)
        elif cfg.mode == "mean":
            dim = max(audio_dim, video_dim)
            self.audio_proj = nn.Linear(audio_dim, dim) if audio_dim != dim else nn.Identity()
            self.video_proj = nn.Linear(video_dim, dim) if video_dim != dim else nn.Identity()
            self.head = nn.Linear(dim, num_classes)
        else:
            self.missing_audio = nn.Parameter(torch.zeros(audio_dim))
            self.missing_video = nn.Parameter(torch.zeros(video_dim))
            self.head = nn.Linear(audio_dim + video_dim, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """Truncated normal (std 0.02) for weights and absent-modality vectors, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _init_linear(m)
        for p in (self.missing_audio, self.missing_video):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """The learned absent-modality vectors (``concat``)."""
        return {n for n, _ in self.named_parameters() if n.startswith("missing_")}

    def forward(
        self, audio_pooled: Tensor, video_pooled: Tensor, has_audio: Mask = None, has_video: Mask = None
    ) -> FusionLogits:
        """Combine ``(B, D_a)`` and ``(B, D_v)`` pooled features into ``(B, K)`` logits.

        Args:
            audio_pooled: (B, D_a).
            video_pooled: (B, D_v).
            has_audio, has_video: (B,) bool presence masks, None = all present.
        """
        B, device = audio_pooled.shape[0], audio_pooled.device
        has_a = presence_mask(has_audio, B, device)
        has_v = presence_mask(has_video, B, device)
        a, v = self.drop(audio_pooled), self.drop(video_pooled)
        if self.audio_head is not None and self.video_head is not None:  # "logits"
            la, lv = self.audio_head(a), self.video_head(v)  # (B, K) each
            fused = masked_pair_mean(la, lv, has_a, has_v, torch.zeros((), dtype=la.dtype, device=device))
            return FusionLogits(fused, la, lv)
        assert self.head is not None
        if self.audio_proj is not None and self.video_proj is not None:  # "mean"
            pa, pv = self.audio_proj(a), self.video_proj(v)  # (B, D) each
            feat = masked_pair_mean(pa, pv, has_a, has_v, torch.zeros((), dtype=pa.dtype, device=device))
            return FusionLogits(self.head(feat), None, None)
        assert self.missing_audio is not None and self.missing_video is not None  # "concat"
        a = torch.where(has_a[:, None], a, self.missing_audio.to(a.dtype))
        v = torch.where(has_v[:, None], v, self.missing_video.to(v.dtype))
        return FusionLogits(self.head(torch.cat((a, v), dim=-1)), None, None)  # (B, D_a + D_v) -> (B, K)
