"""Small fusion-family models for the fusion tests: the av_variants encoders at 2 blocks, 32 wide, 8 tokens each, on
64 x 100 audio and 8 x 32² video."""

from __future__ import annotations

from typing import Any

import torch

from avformer.models import create_model
from avformer.models.av_model import AVModel
from avformer.models.av_variants import vit_audio, vit_video

NEW = ("concat_tiny", "sft_tiny", "xattn_tiny", "eao_tiny", "uavm_tiny")
SMALL = {"audio_overrides": vit_audio(2, 32, 2), "video_overrides": vit_video(2, 32, 2)}


def small_model(name: str, **kw: Any) -> AVModel:
    """A fusion-family variant at the small size, seed 0, in eval mode (2 heads for the fusions' own blocks)."""
    torch.manual_seed(0)
    fc = kw.pop("fusion_config", {})
    if name in NEW:
        kw["fusion_config"] = {"num_heads": 2, **fc}
    m = create_model(name, num_classes=5, **SMALL, **kw)
    assert isinstance(m, AVModel)
    return m.eval()


def inputs(b: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random (audio, video)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 64, 100, generator=g), torch.randn(b, 3, 8, 32, 32, generator=g)
