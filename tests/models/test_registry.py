"""Every registered model builds (full size on the meta device, tiny on CPU) and follows the encoder API.

Tiny overrides are per family, keyed by the model class (found by building the default on the meta device, never
by parsing the name). A family missing from ``TINY`` is skipped in the tiny tests with a message saying so; the
meta-device and override-validation tests run for every name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from avformer.models.base import EncoderOutput
from avformer.models.registry import create_model, list_models

NAMES = list_models()


def _meta(name: str, **overrides: Any) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **overrides)


def _vit_tiny(default: Any) -> dict[str, Any]:
    kind = default.input_kind
    base = {"embed_dim": 32, "depth": 2, "num_heads": 2}
    if kind == "spectrogram":
        return {**base, "num_mel_bins": 16, "num_frames": 32}  # (1, 2) patches at stride 10
    if kind == "video":
        return {**base, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16)}  # (2, 2, 2)
    return {**base, "num_samples": 256, "patch_size": 32}  # waveform: 8 patches


def _multiscale_tiny(default: Any) -> dict[str, Any]:
    # two stages (the second pools by 2), 8 wide; 2-D (F, T) for MAT, 3-D (T, H, W) for MViTv2
    if len(default.cfg.input_size) == 2:
        return {"input_size": (16, 32), "embed_dim": 8, "stages": ((1, (1, 1), 1, 1), (1, (2, 2), 2, 2))}
    return {"input_size": (4, 32, 32), "embed_dim": 8, "stages": ((1, (1, 1, 1), 1, 1), (1, (1, 2, 2), 2, 2))}


def _vatt_classifier_tiny(default: Any) -> dict[str, Any]:
    # one 32-wide block; 4 x 32² video in 2 x 16 x 16 tubelets (8 tokens), 1024 samples in 128-sample patches
    return {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16),
            "num_samples": 1024, "vocab_size": 101, "text_word_dim": 8, "va_dim": 16, "vt_dim": 8}  # fmt: skip


# multi-modal models take several inputs and have their own API and tests (tests/models/test_av_model.py,
# tests/models/test_vatt.py): the single-encoder tests below leave them out instead of skipping them
MULTIMODAL = {"AVModel", "VisionAudioTextTransformer"}
ENCODER_NAMES = [n for n in NAMES if type(_meta(n)).__name__ not in MULTIMODAL]

# class name -> (default model on meta -> tiny overrides)
TINY: dict[str, Callable[[Any], dict[str, Any]]] = {
    "AudioSpectrogramTransformer": _vit_tiny,
    "VideoViT": _vit_tiny,
    "WaveformViT": _vit_tiny,
    "MultiscaleTransformer": _multiscale_tiny,
    "VATTClassifier": _vatt_classifier_tiny,
}


def _tiny(name: str, **runtime: Any) -> tuple[nn.Module, torch.Tensor]:
    default = _meta(name)
    family = type(default).__name__
    if family not in TINY:
        pytest.skip(f"{name}: no tiny overrides for family {family} in tests/models/test_registry.py::TINY; add them")
    model = create_model(name, **TINY[family](default), **runtime)
    sample = getattr(model, "default_input", None)
    if sample is None:  # families that do not expose default_input yet
        sample = (model.cfg.in_chans, *model.cfg.input_size)
    return model, torch.randn(2, *sample)


@pytest.mark.parametrize("name", NAMES)
def test_full_size_builds_on_meta(name: str) -> None:
    model = _meta(name)
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) > 0
    assert isinstance(model.num_features, int) and model.num_features > 0
    assert model.no_weight_decay() <= set(params)
    for attr in ("forward_features", "forward_head"):
        assert callable(getattr(model, attr))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_override_raises_type_error_listing_fields(name: str) -> None:
    with pytest.raises(TypeError, match=r"not_a_field.*valid config fields.*embed_dim"):
        _meta(name, not_a_field=1)


def test_unknown_name() -> None:
    with pytest.raises(KeyError, match="unknown model"):
        create_model("ast_gigantic")
    with pytest.raises(KeyError, match="close matches: ast_tiny"):
        create_model("ast_tinny")
    with pytest.raises(KeyError, match="avformer models"):  # no invented "close matches" for a far-off name
        create_model("nosuchmodel")


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_tiny_forward_backward_follows_encoder_api(name: str) -> None:
    model, x = _tiny(name, num_classes=3)
    model.train()
    feats = model.forward_features(x)
    assert isinstance(feats, EncoderOutput)
    assert feats.tokens.shape == (2, math.prod(feats.grid), model.num_features)
    assert feats.pooled.shape == (2, model.num_features)
    logits = model.forward_head(feats)
    assert logits.shape == (2, 3)
    logits.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_tiny_headless_forward_returns_pooled(name: str) -> None:
    model, x = _tiny(name)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_features(x).pooled)


_INIT_CHECKSUM = """
import sys, torch
from avformer.models.registry import create_model
torch.manual_seed(0)
m = create_model(sys.argv[1])
print(repr(sum(float(p.double().sum()) for p in m.state_dict().values() if p.is_floating_point())))
"""


@pytest.mark.parametrize("name", ["vatt_tiny", "ast_tiny", "mmt_tiny"])
def test_seeded_init_does_not_depend_on_python_hash_seed(name: str) -> None:
    """Regression: VATT and the ViT family initialised their position tables in set order, which PYTHONHASHSEED
    changes from process to process, so one seed gave different weights in different runs (and ranks)."""
    import os
    import subprocess
    import sys

    sums = set()
    for hash_seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", _INIT_CHECKSUM, name], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        sums.add(out.stdout.strip())
    assert len(sums) == 1, sums
