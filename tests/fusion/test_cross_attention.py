"""Cross-attention fusion (TCaF): who attends to whom."""

from __future__ import annotations

from typing import Any

import torch

from avformer.fusion.cross_attention import cross_mask
from tests.fusion._small import small_model


def test_cross_attention_mask_reads_only_the_other_stream_and_cls() -> None:
    allowed = cross_mask(2, 3)
    assert allowed[0].all() and allowed[:, 0].all()  # cls reads all, all read cls
    assert not allowed[1:3, 1:3].any() and not allowed[3:, 3:].any()  # no attention within a modality
    assert allowed[1:3, 3:].all() and allowed[3:, 1:3].all()


def _audio_token_0(fusion_config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Audio token 0's output of one fused block: as is, after every other audio token changed, after the video
    changed."""
    m = small_model("xattn_tiny", fusion_config={"depth": 1, **fusion_config})
    fus: Any = m.fusion
    on = torch.ones(2, dtype=torch.bool)
    ta, tv = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    with torch.no_grad():
        _, xa, _ = fus.fuse_tokens(ta, tv, on, on)
        ta2 = ta.clone()
        ta2[:, 1:] += torch.randn(2, 4, 32)  # every other audio token changes
        _, xa2, _ = fus.fuse_tokens(ta2, tv, on, on)
        _, xa3, _ = fus.fuse_tokens(ta, tv + torch.randn_like(tv), on, on)
    return xa[:, 0], xa2[:, 0], xa3[:, 0]


def test_cross_attention_audio_token_ignores_other_audio_tokens_but_not_video() -> None:
    first, other_audio, other_video = _audio_token_0({"time_embed": False, "modality_embed": False})
    torch.testing.assert_close(other_audio, first)  # audio token 0 reads no audio token (cls was not touched)
    assert (other_video - first).abs().max() > 1e-4  # ... and reads the video


def test_cross_attention_both_mode_reads_its_own_stream_too() -> None:
    first, other_audio, _ = _audio_token_0({"mode": "both"})
    assert (other_audio - first).abs().max() > 1e-4
