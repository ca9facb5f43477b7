"""Test helpers for localisation: a tiny untrained ``av_correspondence`` run folder and a tiny events dataset.

The run folder holds what ``avformer pretrain`` writes and :func:`avformer.eval.localization.load_localizer` reads:
``config.yaml`` and ``best.pt`` (the trainer's checkpoint keys) with the model *and* its task heads. The model is
random: tests check what the code does with files and geometry, not accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from avformer.config import ExperimentConfig, ModelSpec, TaskSpec, dump, to_dict
from avformer.data.audio import AudioFeatureConfig
from avformer.data.dataset import DataConfig
from avformer.data.synth import SynthConfig, write_dataset
from avformer.data.video import VideoTransformConfig
from avformer.models.loading import build_model
from avformer.tasks.registry import TaskData, get_task
from avformer.utils.checkpoint import save_checkpoint

# 1-s windows of 8 frames at 8 fps, 32 px frames; log-mel 16 x 100
VIDEO = VideoTransformConfig(num_frames=8, fps=8, size=32, short_side=32)
AUDIO = AudioFeatureConfig(kind="logmel", num_mel_bins=16, num_frames=100, mean=-4.0, std=3.0)
MODEL = ModelSpec(
    "vatt_tiny",
    {
        "embed_dim": 16, "depth": 1, "num_heads": 2, "num_frames": 8, "img_size": 32, "spec_size": [16, 100],
        "pool": "mean", "video_stem": "frame_cnn", "audio_input": "spectrogram", "audio_stem": "cnn",
        "stem_stride": 4, "stem_width": 8, "vocab_size": 16, "text_word_dim": 4,
    },
)  # fmt: skip
EVENTS = SynthConfig(num_clips=8, seconds=1.0, size=32, fps=8, events=True, objects=(2, 3), val_fraction=0.5)


def make_avc_run(out: Path, *, options: dict[str, Any] | None = None, video: VideoTransformConfig = VIDEO) -> Path:
    """Write ``out/config.yaml`` and ``out/best.pt`` of an untrained av_correspondence run."""
    data = DataConfig(modalities=("video", "audio"), clip_seconds=1.0, video=video, audio=AUDIO)
    spec = TaskSpec("av_correspondence", {"embed_dim": 8, **(options or {})})
    cfg = ExperimentConfig(name="tiny_avc", model=MODEL, data=data, task=spec)
    torch.manual_seed(0)
    model = build_model(MODEL)
    entry = get_task(spec.name)
    entry.build(model, entry.parse_options(spec.options), TaskData.of(data))  # attaches the heads
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump(cfg))
    save_checkpoint(
        out / "best.pt",
        {"format": 1, "model": model.state_dict(), "ema": None, "trainer": {"epoch": 1}, "config": to_dict(cfg)},
    )
    return out


def make_events_data(out: Path) -> Path:
    """A tiny ``avformer synth --events`` dataset (8 clips of 1 s, 32 px, 2-3 objects); returns its folder."""
    write_dataset(out, EVENTS, workers=1)
    return out
