"""The encoder contract: every registered single-modality encoder satisfies ``Encoder`` (and, for the multiscale and
ViT families, ``StagedEncoder``), and the protocols reject what lacks a member."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avformer.models.av_model import AVModel
from avformer.models.base import INPUT_KINDS, Encoder, StagedEncoder
from avformer.models.registry import create_model, list_models
from avformer.models.vatt import VisionAudioTextTransformer

_AV = ("mmt_", "av_", "vatt_", "concat_", "sft_", "xattn_", "eao_", "uavm_")  # audio-visual models
SINGLE = [n for n in list_models() if not n.startswith(_AV) or n == "vatt_classifier"]


@pytest.mark.parametrize("name", SINGLE)
def test_every_single_encoder_follows_the_contract(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert not isinstance(model, AVModel | VisionAudioTextTransformer)
    assert isinstance(model, Encoder), name
    assert model.input_kind in INPUT_KINDS and model.num_features > 0
    if not name.startswith("vatt_"):
        assert isinstance(model, StagedEncoder), name  # every multiscale and ViT encoder can be fused


def test_the_protocols_reject_a_module_that_lacks_a_member() -> None:
    class Half(nn.Module):
        num_features = 4
        input_kind = "video"

        def forward_features(self, x: torch.Tensor) -> None: ...

    assert not isinstance(Half(), Encoder)  # no forward_head / no_weight_decay
    assert not isinstance(nn.Linear(2, 2), StagedEncoder)


def _vit() -> nn.Module:
    return create_model(
        "vit_video_tiny_t4p16", embed_dim=16, depth=2, num_heads=2, num_frames=4, img_size=32, tubelet_size=(2, 16, 16)
    ).eval()


def test_a_keep_mask_encodes_only_the_kept_tokens() -> None:
    """Tokens a keep-mask drops never reach the encoder: changing their pixels changes nothing, while changing a
    kept patch does (a mask that were ignored would fail both)."""
    torch.manual_seed(0)
    model = _vit()
    x = torch.randn(2, 3, 4, 32, 32)  # grid (2, 2, 2): 8 tubelets of 2 x 16 x 16
    keep = torch.tensor([[0, 3, 5], [1, 2, 7]])
    with torch.no_grad():
        out = model.forward_features(x, keep=keep)
        assert out.tokens.shape == (2, 3, 16) and out.grid == (2, 2, 2)
        y = x.clone()
        y[0, :, 0:2, 0:16, 16:32] += 5.0  # tubelet 1 (t=0, h=0, w=1): dropped for sample 0
        torch.testing.assert_close(model.forward_features(y, keep=keep).pooled[0], out.pooled[0], rtol=0, atol=0)
        y[0, :, 0:2, 0:16, 0:16] += 5.0  # tubelet 0: kept
        assert not torch.allclose(model.forward_features(y, keep=keep).pooled[0], out.pooled[0])
        full = model.forward_features(x)
        every = model.forward_features(x, keep=torch.arange(8).expand(2, -1))
        torch.testing.assert_close(every.pooled, full.pooled)
        as_bool = torch.zeros(2, 8, dtype=torch.bool).scatter_(1, keep, True)
        torch.testing.assert_close(model.forward_features(x, keep=as_bool).pooled, out.pooled)


def test_multiscale_encoders_refuse_a_keep_mask() -> None:
    model = create_model("mat_tiny", input_size=(32, 100))
    with pytest.raises(ValueError, match="cannot drop tokens"):
        model.forward_features(torch.randn(1, 1, 32, 100), keep=torch.tensor([[0, 1]]))


def test_keep_tokens_rejects_ragged_masks() -> None:
    from avformer.layers.drop import keep_tokens

    with pytest.raises(ValueError, match="same number of tokens"):
        keep_tokens(torch.randn(2, 4, 3), torch.tensor([[True, True, False, False], [True, False, False, False]]))
