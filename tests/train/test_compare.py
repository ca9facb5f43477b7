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


def _fusion_cost(name: str) -> int:
    cfg = apply_overrides(load(CONFIGS / "experiment" / "fusion" / f"{name}.yaml"), ["train.batch_size=2"])
    fl = measure_cost(cfg, 10).fusion_flops_per_clip
    assert fl is not None
    return fl


def test_fusion_flops_are_what_the_fusion_adds_to_the_encoders() -> None:
    late, concat, sparse, bottleneck = (_fusion_cost(n) for n in ("late", "concat", "sparse", "bottleneck"))
    assert late == 0  # the encoders alone are the whole model before the head
    assert 0 < bottleneck < concat  # only the 4 extra tokens in the encoders' own last 2 blocks
    assert 0 < sparse <= 0.35 * concat  # SFT's joint blocks see 2 + 2 pooled tokens and the class token, not 8 + 8


def test_modality_confusion_counts_clips_a_single_view_got_and_fusion_lost() -> None:
    from avformer.train.compare import modality_confusion

    rows = [
        {"label": "a", "fused_pred": "a", "audio_pred": "a", "video_pred": "b"},  # fused right
        {"label": "a", "fused_pred": "b", "audio_pred": "a", "video_pred": "b"},  # audio right, fused wrong
        {"label": "a", "fused_pred": "b", "audio_pred": "c", "video_pred": "a"},  # video right, fused wrong
        {"label": "a", "fused_pred": "b", "audio_pred": "b", "video_pred": ""},  # no view right / video absent
    ]
    assert modality_confusion(rows) == 0.5


def test_audio_visual_table_has_view_confusion_and_group_columns() -> None:
    from avformer.train.compare import ModelCost, RunResult, Summary, format_table

    runs = [RunResult("sparse", 0, "", "val_top1", 0.9, 0.9, 3, 50.0, 60.0, 0, 0.8, 0.7, 0.05)]
    cost = ModelCost(((1, 64, 100), (3, 8, 32, 32)), 2_000_000, 10**8, 32, 2**27, False, {}, 4_000_000)
    s = Summary(
        "sparse", "", "sft_tiny", runs, cost, "val_top1", 0.9, 0.0, 1, 50.0,
        audio=(0.8, 0.0), video=(0.7, 0.0), confusion=(0.05, 0.0), wall_s=60.0,
        groups={"clean": {"n": 150, "fused": 0.95, "audio": 0.9, "video": 0.8}},
    )  # fmt: skip
    table = format_table([s], by="meta.csv:condition")
    assert "| audio-only | video-only | modality confusion |" in table
    assert "| sparse | sft_tiny | 90.0 ± 0.0 % (n=1) | 80.0 ± 0.0 | 70.0 ± 0.0 | 5.0 ± 0.0 | 2.00 M | 4.0 M |" in table
    assert "| sparse | clean | 150 | 95.0 | 90.0 | 80.0 |" in table and "Top-1 by condition" in table
