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

SINGLE = [n for n in list_models() if not n.startswith(("mmt_", "av_", "vatt_")) or n == "vatt_classifier"]


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
