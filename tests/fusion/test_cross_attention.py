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


def test_cross_attention_audio_token_ignores_other_audio_tokens_but_not_video() -> None:
    m = small_model("xattn_tiny", fusion_config={"depth": 1, "time_embed": False, "modality_embed": False})
    fus: Any = m.fusion
    on = torch.ones(2, dtype=torch.bool)
    ta, tv = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    with torch.no_grad():
        _, xa, _ = fus.fuse_tokens(ta, tv, on, on)
        ta2 = ta.clone()
        ta2[:, 1:] += torch.randn(2, 4, 32)  # every other audio token changes
        _, xa2, _ = fus.fuse_tokens(ta2, tv, on, on)
        _, xa3, _ = fus.fuse_tokens(ta, tv + torch.randn_like(tv), on, on)
    torch.testing.assert_close(xa2[:, 0], xa[:, 0])  # audio token 0 reads no audio token (cls was not touched)
    assert (xa3[:, 0] - xa[:, 0]).abs().max() > 1e-4  # ... and reads the video


def test_cross_attention_both_mode_reads_its_own_stream_too() -> None:
    m = small_model("xattn_tiny", fusion_config={"depth": 1, "mode": "both"})
    fus: Any = m.fusion
    on = torch.ones(2, dtype=torch.bool)
    ta, tv = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    with torch.no_grad():
        _, xa, _ = fus.fuse_tokens(ta, tv, on, on)
        ta2 = ta.clone()
        ta2[:, 1:] += torch.randn(2, 4, 32)
        _, xa2, _ = fus.fuse_tokens(ta2, tv, on, on)
    assert (xa2[:, 0] - xa[:, 0]).abs().max() > 1e-4
