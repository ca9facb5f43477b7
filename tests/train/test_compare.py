"""Model cost for `avformer compare`: one-input encoders and two-input audio-visual models."""

from __future__ import annotations

from pathlib import Path

import torch

from avformer.config import apply_overrides, load
from avformer.models.loading import build_model
from avformer.profiling import count_flops
from avformer.train.compare import measure_cost

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_audio_visual_model_cost_is_measured_on_one_clip_of_each_modality() -> None:
    """Was n/a for AV models: the profilers take one input. Now FLOPs = the model on (audio, video) of one clip."""
    cfg = apply_overrides(
        load(CONFIGS / "model" / "mmt_tiny.yaml"),
        [
            "data.audio.num_mel_bins=32",
            "data.video.size=32",
            "data.video.short_side=32",
            "data.video.num_frames=4",
            "model.overrides.audio_overrides.input_size=[32,100]",
            "model.overrides.video_overrides.input_size=[4,32,32]",
            "train.batch_size=2",
        ],
    )
    cost = measure_cost(cfg, 5)
    assert cost.input_shape == ((1, 32, 100), (3, 4, 32, 32))
    model = build_model(cfg.model, 5)
    assert cost.params == sum(p.numel() for p in model.parameters())
    audio_alone = count_flops(model.audio_encoder, torch.randn(1, 1, 32, 100)).forward
    video_alone = count_flops(model.video_encoder, torch.randn(1, 3, 4, 32, 32)).forward
    # both towers plus fusion and heads; the towers' own blocks dominate
    assert 0.9 * (audio_alone + video_alone) < cost.flops_per_clip < 1.5 * (audio_alone + video_alone)
    assert cost.peak_train_memory_bytes > 4 * 4 * cost.params  # params + grads + 2 AdamW moments, plus activations
