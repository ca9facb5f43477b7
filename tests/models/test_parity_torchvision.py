"""Parity of ``MultiscaleTransformer`` (MViTv2 variants) with ``torchvision.models.video.mvit_v2_s``.

torchvision is optional (a test-only reference): the module is skipped without it and never downloads weights.
Every torchvision parameter is perturbed after its own init (which leaves LayerNorms at 1/0 and biases at 0, so a
swapped norm or bias would otherwise go unnoticed), converted with ``convert_torchvision_mvit_state_dict`` and
loaded strictly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avformer.models.multiscale import MultiscaleTransformer, convert_torchvision_mvit_state_dict
from avformer.models.registry import create_model

tv_video = pytest.importorskip("torchvision.models.video")

pytestmark = pytest.mark.parity

ATOL = 1e-4


def _perturbed_torchvision() -> nn.Module:
    tv = tv_video.mvit_v2_s()
    with torch.no_grad():
        for p in tv.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return tv.eval()


def _ours(tv: nn.Module) -> MultiscaleTransformer:
    model = create_model("mvit_v2_s_16x4", num_classes=400)
    assert isinstance(model, MultiscaleTransformer)
    model.load_state_dict(convert_torchvision_mvit_state_dict(tv.state_dict()), strict=True)
    return model.eval()


def test_full_size_logits_match_torchvision() -> None:
    """1 x 3 x 16 x 224 x 224, the configuration torchvision's rel-pos tables are sized for (~10 s on one core)."""
    tv = _perturbed_torchvision()
    model = _ours(tv)
    x = torch.randn(1, 3, 16, 224, 224)
    with torch.no_grad():
        ref = tv(x)
        for fused in (True, False):
            model.set_fused(fused)
            out = model(x)
            diff = (out - ref).abs().max().item()
            assert diff <= ATOL, f"fused={fused}: max abs diff {diff:.2e}"


def test_small_input_logits_and_grads_match_torchvision() -> None:
    """2 x 3 x 4 x 64 x 64 through the full-size models in float64: both resample their rel-pos tables.

    torchvision reads the token grid from ``pos_encoding`` (fixed at construction), so the test points it at the
    small input's grid (2 x 16 x 16); its tables stay sized for 16 x 224², like ours.
    """
    tv = _perturbed_torchvision()
    tv.pos_encoding.temporal_size, tv.pos_encoding.spatial_size = 2, (16, 16)
    model = _ours(tv)
    tv, model = tv.double(), model.double()  # float64: agreement to ~1e-10, so any real mismatch stands out
    x = torch.randn(2, 3, 4, 64, 64, dtype=torch.float64)
    x_tv, x_ours = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref, out = tv(x_tv), model(x_ours)
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=1e-9)
    g = torch.randn_like(ref)
    ref.backward(g)
    out.backward(g)
    torch.testing.assert_close(x_ours.grad, x_tv.grad, atol=1e-9, rtol=1e-9)
    converted = convert_torchvision_mvit_state_dict({n: p.grad for n, p in tv.named_parameters()})
    ours = dict(model.named_parameters())
    assert converted.keys() == ours.keys()
    for name, grad in converted.items():
        torch.testing.assert_close(ours[name].grad, grad, atol=1e-9, rtol=1e-9, msg=lambda m, name=name: f"{name}: {m}")
