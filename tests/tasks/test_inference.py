"""predict_batch: AV models give fused / audio-only / video-only scores; single encoders; several test views."""

from __future__ import annotations

import torch

from avformer.metrics.aggregate import aggregate_views
from avformer.models.registry import create_model
from avformer.tasks.inference import input_modality, predict_batch


def _mmt() -> torch.nn.Module:
    return create_model("av_late_tiny", num_classes=5).eval()


def test_av_model_views_of_the_data() -> None:
    model = _mmt()
    audio, video = torch.randn(2, 1, 128, 100), torch.randn(2, 3, 8, 64, 64)
    out = predict_batch(model, {"audio": audio, "video": video, "has_audio": torch.tensor([True, False])})
    assert set(out) == {"fused", "audio", "video"} and out["fused"].shape == (2, 5)
    ref = model(audio, video, torch.tensor([True, False]), torch.ones(2, dtype=torch.bool)).logits
    torch.testing.assert_close(out["fused"], ref)
    video_only = model(audio, video, torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)).logits
    torch.testing.assert_close(out["video"], video_only)
    # sample 1 has no audio: its fused prediction is the video-only one
    torch.testing.assert_close(out["fused"][1], out["video"][1])


def test_several_views_are_pooled_as_probabilities() -> None:
    model = _mmt()
    audio, video = torch.randn(2, 3, 1, 128, 100), torch.randn(2, 3, 3, 8, 64, 64)
    out = predict_batch(model, {"audio": audio, "video": video}, per_modality=False)
    per_view = torch.stack([model(audio[:, v], video[:, v]).logits for v in range(3)], dim=1)
    torch.testing.assert_close(out["fused"].exp(), aggregate_views(per_view))


def test_single_encoder() -> None:
    model = create_model("mat_tiny", num_classes=4, input_size=(64, 100)).eval()
    assert input_modality(model) == "audio"
    x = torch.randn(3, 1, 64, 100)
    out = predict_batch(model, {"audio": x})
    torch.testing.assert_close(out["fused"], model(x))
    assert torch.equal(out["audio"], out["fused"])
