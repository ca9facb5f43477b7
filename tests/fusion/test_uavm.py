"""UAVM: shared blocks and head, one modality per training batch, the paper-scale variant."""

from __future__ import annotations

from typing import Any

import torch

from avformer.models import create_model
from tests.fusion._small import inputs, small_model


def test_uavm_shared_blocks_are_one_parameter_set_run_by_both_modalities() -> None:
    m = small_model("uavm_tiny")
    fus: Any = m.fusion
    calls: list[int] = []
    fus.shared.blocks[0].register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[1]))
    a, v = inputs()
    with torch.no_grad():
        out = m(a, v, alone=True)
    assert calls == [8, 8]  # the same block module, once on the audio tokens, once on the video tokens
    encoders = {id(p) for p in m.audio_encoder.parameters()} | {id(p) for p in m.video_encoder.parameters()}
    shared = [p for p in fus.parameters() if id(p) not in encoders]
    assert sum(p.numel() for p in shared) == sum(p.numel() for p in fus.parameters())
    assert m.head.head is not None  # one classifier (mode "mean"): no per-modality heads
    assert out.audio_alone_logits is not None and out.video_alone_logits is not None
    torch.testing.assert_close(out.logits, (out.audio_alone_logits + out.video_alone_logits) / 2)


def test_uavm_training_feeds_one_modality_per_batch() -> None:
    m = small_model("uavm_tiny", fusion_config={"audio_prob": 1.0})
    m.train()
    ran: list[str] = []
    m.video_encoder.register_forward_hook(lambda *args: ran.append("video"))
    a, v = inputs()
    out = m(a, v, embed=False)
    assert ran == []  # per batch: the video encoder does not even run
    assert not out.has_video.any() and out.has_audio.all()
    head = m.head(out.audio_pooled, out.video_pooled, out.has_audio, out.has_video)
    torch.testing.assert_close(out.logits, head.logits)
    m2 = small_model("uavm_tiny", fusion_config={"audio_prob": 0.5, "sample_per": "sample"}).train()
    torch.manual_seed(3)
    out2 = m2(*inputs(b=64), embed=False)
    assert not (out2.has_audio & out2.has_video).any()  # one modality per sample
    assert 16 < int(out2.has_audio.sum()) < 48
    m2.eval()
    with torch.no_grad():
        out3 = m2(*inputs(b=4), embed=False)
    assert out3.has_audio.all() and out3.has_video.all()  # evaluation uses both


def test_uavm_base_is_the_papers_scale() -> None:
    with torch.device("meta"):
        m = create_model("uavm_base", num_classes=309)
    fus: Any = m.fusion
    assert len(fus.shared.blocks) == 3 and fus.shared.dim == 1024
    assert len(m.audio_encoder.blocks) == 3 and len(m.video_encoder.blocks) == 3
    assert fus.shared.blocks[0].attn.num_heads == 4


def test_uavm_per_batch_tells_ddp_about_the_encoder_it_leaves_out() -> None:
    from avformer.tasks.classification import AVClassificationOptions, AVClassificationTask

    with_avc = AVClassificationOptions(avc_weight=0.1)
    assert AVClassificationTask(small_model("uavm_tiny"), with_avc, num_classes=5).unused_parameters
    both = small_model("uavm_tiny", fusion_config={"audio_prob": None})
    assert not AVClassificationTask(both, with_avc, num_classes=5).unused_parameters
