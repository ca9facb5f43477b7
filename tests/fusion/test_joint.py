"""Concatenation and the modality-agnostic block (Everything-at-Once)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from tests.fusion._small import inputs, small_model


def test_agnostic_audio_output_is_the_same_with_video_masked_or_never_there() -> None:
    m = small_model("eao_tiny")
    a, v = inputs()
    fus: Any = m.fusion
    assert fus.joint.modality_embed is None and not fus.joint.time_embed  # no modality or position embeddings
    with torch.no_grad():
        masked = m.forward_features(a, v, has_video=torch.zeros(3, dtype=torch.bool))
        enc = m.audio_encoder.forward_features(a)
        own = fus.joint(fus.joint.audio_in(enc.tokens))  # the block on audio tokens alone: no video anywhere
        res = fus(m.audio_encoder, m.video_encoder, a, v)
    torch.testing.assert_close(masked.audio.tokens, own, atol=1e-5, rtol=1e-5)
    assert res.fused is not None  # the fused embedding for retrieval: the mean of the two modality embeddings
    torch.testing.assert_close(res.fused, (res.audio.pooled + res.video.pooled) / 2)


def test_agnostic_fused_embedding_is_a_representation_for_retrieval() -> None:
    from avformer.eval.representations import Embeddings

    m = small_model("eao_tiny")
    a, v = inputs()
    has_v = torch.tensor([True, False, True])
    with torch.no_grad():
        rep = m.represent(v, a, has_video=has_v)
        res = m.fusion(m.audio_encoder, m.video_encoder, a, v, has_video=has_v)
    torch.testing.assert_close(rep["av_fused"], res.fused)
    torch.testing.assert_close(rep["av_fused"][1], res.audio.pooled[1])  # video absent: the audio embedding alone
    assert "av_fused" not in small_model("concat_tiny").represent(v, a)  # only a fusion that makes one
    assert "av_fused" in {f.name for f in dataclasses.fields(Embeddings)}
