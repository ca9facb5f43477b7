"""The fusions on the encoders' output tokens (concat, agnostic, sparse, cross_attention, uavm): the mechanisms, not
only the shapes. Small encoders (2 blocks, 32 wide, 8 tokens each) on 64 x 100 audio and 8 x 32² video."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from avformer.fusion.cross_attention import cross_mask
from avformer.fusion.tokens import key_bias, token_times
from avformer.models import create_model
from avformer.models.av_model import AVModel
from avformer.models.av_variants import vit_audio, vit_video

NEW = ("concat_tiny", "sft_tiny", "xattn_tiny", "eao_tiny", "uavm_tiny")
SMALL = {"audio_overrides": vit_audio(2, 32, 2), "video_overrides": vit_video(2, 32, 2)}


def _model(name: str, **kw: Any) -> AVModel:
    torch.manual_seed(0)
    fc = kw.pop("fusion_config", {})
    if name in NEW:
        kw["fusion_config"] = {"num_heads": 2, **fc}
    m = create_model(name, num_classes=5, **SMALL, **kw)
    assert isinstance(m, AVModel)
    return m.eval()


def _inputs(b: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 64, 100, generator=g), torch.randn(b, 3, 8, 32, 32, generator=g)


@pytest.mark.parametrize("name", NEW)
def test_absent_modality_never_reaches_the_other_even_as_nan(name: str) -> None:
    m = _model(name)
    a, v = _inputs()
    off = torch.tensor([False, True, False])
    with torch.no_grad():
        ref = m(a, v, has_audio=off)
        a2 = a.clone()
        a2[~off] = float("nan")
        out = m(a2, v, has_audio=off)
        alone = m(a, v, alone=True)
    keep = ~off
    torch.testing.assert_close(out.logits[keep], ref.logits[keep])  # the absent audio's values do not matter
    assert torch.isfinite(out.logits[keep]).all()
    # a sample without audio gets exactly the video-only prediction (the other one masked for every sample)
    torch.testing.assert_close(ref.logits[keep], alone.video_alone_logits[keep], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["concat_tiny", "sft_tiny", "xattn_tiny", "eao_tiny"])
def test_joint_fusions_let_audio_change_the_video_output(name: str) -> None:
    m = _model(name)
    a, v = _inputs()
    with torch.no_grad():
        f1 = m.forward_features(a, v)
        f2 = m.forward_features(a + torch.randn_like(a), v)
    assert (f1.video.tokens - f2.video.tokens).abs().max() > 1e-4  # interaction exists
    with torch.no_grad():  # ... and stops when audio is masked
        g1 = m.forward_features(a, v, has_audio=torch.zeros(3, dtype=torch.bool))
        g2 = m.forward_features(a + torch.randn_like(a), v, has_audio=torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(g1.video.tokens, g2.video.tokens)


def test_agnostic_audio_output_is_the_same_with_video_masked_or_never_there() -> None:
    m = _model("eao_tiny")
    a, v = _inputs()
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


def test_sft_joint_blocks_see_only_the_pooled_tokens_and_the_class_token() -> None:
    m = _model("sft_tiny")
    a, v = _inputs()
    seen: list[tuple[int, ...]] = []
    fus: Any = m.fusion
    fus.joint.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        enc_a, enc_v = m.audio_encoder.forward_features(a), m.video_encoder.forward_features(v)
        m(a, v)
    assert enc_a.tokens.shape[1] == 8 and enc_v.tokens.shape[1] == 8
    assert seen == [(3, 1 + 2 + 2, 32)]  # 8 / 4 audio + 8 / 4 video + the summed class token


def test_sft_max_pooling_ignores_tokens_below_the_window_maximum() -> None:
    m = _model("sft_tiny")
    fus: Any = m.fusion
    d = 32
    ca, cv = torch.randn(2, d), torch.randn(2, d)
    ta, tv = torch.randn(2, 40, d), torch.randn(2, 64, d)
    on = torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        ref = fus._joint([(ca, fus.audio_pool(ta), on), (cv, fus.video_pool(tv), on)])
        low = ta.clone()
        arg = ta[:, :4].argmax(1)  # per channel, the max of the first window
        low[:, :4] -= 1.0
        low[:, :4].scatter_(1, arg[:, None], ta[:, :4].gather(1, arg[:, None]))  # keep the maxima, lower the rest
        out = fus._joint([(ca, fus.audio_pool(low), on), (cv, fus.video_pool(tv), on)])
        moved = ta.clone()
        moved[:, 0] += 5.0  # raise a maximum: the pooled token changes
        out2 = fus._joint([(ca, fus.audio_pool(moved), on), (cv, fus.video_pool(tv), on)])
    torch.testing.assert_close(out[0], ref[0])
    assert (out2[0] - ref[0]).abs().max() > 1e-4


def test_sft_class_token_is_the_sum_of_the_present_modalities() -> None:
    m = _model("sft_tiny")
    fus: Any = m.fusion
    seen: list[torch.Tensor] = []
    fus.joint.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0][:, 0].clone()))
    a, v = _inputs()
    with torch.no_grad():
        m(a, v, has_video=torch.tensor([True, False, True]))
        pa, pv = m.audio_encoder.forward_features(a).pooled, m.video_encoder.forward_features(v).pooled
    torch.testing.assert_close(seen[0][0], pa[0] + pv[0])
    torch.testing.assert_close(seen[0][1], pa[1])


def test_cross_attention_mask_reads_only_the_other_stream_and_cls() -> None:
    allowed = cross_mask(2, 3)
    assert allowed[0].all() and allowed[:, 0].all()  # cls reads all, all read cls
    assert not allowed[1:3, 1:3].any() and not allowed[3:, 3:].any()  # no attention within a modality
    assert allowed[1:3, 3:].all() and allowed[3:, 1:3].all()


def test_cross_attention_audio_token_ignores_other_audio_tokens_but_not_video() -> None:
    m = _model("xattn_tiny", fusion_config={"depth": 1, "time_embed": False, "modality_embed": False})
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
    m = _model("xattn_tiny", fusion_config={"depth": 1, "mode": "both"})
    fus: Any = m.fusion
    on = torch.ones(2, dtype=torch.bool)
    ta, tv = torch.randn(2, 5, 32), torch.randn(2, 6, 32)
    with torch.no_grad():
        _, xa, _ = fus.fuse_tokens(ta, tv, on, on)
        ta2 = ta.clone()
        ta2[:, 1:] += torch.randn(2, 4, 32)
        _, xa2, _ = fus.fuse_tokens(ta2, tv, on, on)
    assert (xa2[:, 0] - xa[:, 0]).abs().max() > 1e-4


def test_time_codes_align_audio_columns_with_video_frames() -> None:
    ta, tv = token_times((4, 10), "spectrogram"), token_times((4, 4, 4), "video")
    assert ta.shape == (40,) and tv.shape == (64,)
    assert torch.equal(ta[:10], ta[10:20])  # the same column in every frequency row
    torch.testing.assert_close(ta[:10], (torch.arange(10) + 0.5) / 10)
    torch.testing.assert_close(tv[::16], (torch.arange(4) + 0.5) / 4)  # one slot per 16 tokens (4 x 4 space)
    bias = key_bias([(2, torch.tensor([True, False])), (1, torch.tensor([False, False]))], torch.float32)
    assert bias[0, 0, 0].tolist() == [0.0, 0.0, float("-inf")]
    assert bias[1, 0, 0].tolist() == [0.0, 0.0, 0.0]  # nothing present: every key kept (no empty softmax row)


def test_uavm_shared_blocks_are_one_parameter_set_run_by_both_modalities() -> None:
    m = _model("uavm_tiny")
    fus: Any = m.fusion
    calls: list[int] = []
    fus.shared.blocks[0].register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[1]))
    a, v = _inputs()
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
    m = _model("uavm_tiny", fusion_config={"audio_prob": 1.0})
    m.train()
    ran: list[str] = []
    m.video_encoder.register_forward_hook(lambda *args: ran.append("video"))
    a, v = _inputs()
    out = m(a, v, embed=False)
    assert ran == []  # per batch: the video encoder does not even run
    assert not out.has_video.any() and out.has_audio.all()
    head = m.head(out.audio_pooled, out.video_pooled, out.has_audio, out.has_video)
    torch.testing.assert_close(out.logits, head.logits)
    m2 = _model("uavm_tiny", fusion_config={"audio_prob": 0.5, "sample_per": "sample"}).train()
    torch.manual_seed(3)
    out2 = m2(*_inputs(b=64), embed=False)
    assert not (out2.has_audio & out2.has_video).any()  # one modality per sample
    assert 16 < int(out2.has_audio.sum()) < 48
    m2.eval()
    with torch.no_grad():
        out3 = m2(*_inputs(b=4), embed=False)
    assert out3.has_audio.all() and out3.has_video.all()  # evaluation uses both


@pytest.mark.parametrize("name", [*NEW, "av_vit_tiny", "av_vit_bottleneck_tiny"])
def test_every_variant_trains_one_step_every_parameter_gets_a_gradient(name: str) -> None:
    extra = {"fusion_config": {"audio_prob": None}} if name == "uavm_tiny" else {}
    m = _model(name, **extra).train()
    a, v = _inputs(b=4)
    out = m(a, v, alone=True)
    assert out.audio_alone_logits is not None and out.video_alone_logits is not None
    loss = out.logits.sum() + out.audio_alone_logits.sum() + out.video_alone_logits.sum()
    loss = loss + out.audio_emb.sum() + out.video_emb.sum()  # type: ignore[union-attr]
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert missing == []


def test_uavm_base_is_the_papers_scale() -> None:
    with torch.device("meta"):
        m = create_model("uavm_base", num_classes=309)
    fus: Any = m.fusion
    assert len(fus.shared.blocks) == 3 and fus.shared.dim == 1024
    assert len(m.audio_encoder.blocks) == 3 and len(m.video_encoder.blocks) == 3
    assert fus.shared.blocks[0].attn.num_heads == 4


def test_sft_latent_mixup_mixes_one_joint_layer_and_reports_it() -> None:
    m = _model("sft_tiny", fusion_config={"mixup_alpha": 0.3}).train()
    fus: Any = m.fusion
    a, v = _inputs(b=4)
    torch.manual_seed(7)
    out = m(a, v, embed=False)
    assert out.mix is not None and out.mix.lam.shape == (4,) and sorted(out.mix.index.tolist()) == [0, 1, 2, 3]
    assert ((out.mix.lam >= 0) & (out.mix.lam <= 1)).all()
    # the same draw, replayed by hand: the joint sequence of sample i mixed with its partner's before that layer
    torch.manual_seed(7)
    layer, mix = fus._draw_mix(4, a.device)
    torch.testing.assert_close(mix.lam, out.mix.lam)
    with torch.no_grad():
        fa, fv = m.audio_encoder.forward_features(a), m.video_encoder.forward_features(v)
    on = torch.ones(4, dtype=torch.bool)
    parts = [
        (fus.joint.audio_in(fa.pooled), fus.audio_pool(fus.joint.audio_in(fa.tokens)), on),
        (fus.joint.video_in(fv.pooled), fus.video_pool(fus.joint.video_in(fv.tokens)), on),
    ]
    with torch.no_grad():
        z_mixed = fus._joint(parts, (layer, mix))[0]
        z_plain = fus._joint(parts)[0]
    torch.testing.assert_close(out.audio_pooled.detach(), z_mixed)
    assert (z_mixed - z_plain).abs().max() > 1e-4
    m.eval()
    assert m(a, v).mix is None  # evaluation never mixes


def test_latent_mixup_mixes_the_fused_targets_in_the_task() -> None:
    from avformer.fusion.base import LatentMix
    from avformer.tasks.classification import AVClassificationOptions, AVClassificationTask

    m = _model("sft_tiny")
    task = AVClassificationTask(m, AVClassificationOptions(), num_classes=5)
    soft = task._latent_mix(torch.tensor([0, 1, 2]), LatentMix(torch.tensor([1, 2, 0]), torch.tensor([1.0, 0.25, 0.5])))
    expected = torch.tensor([[1.0, 0, 0, 0, 0], [0, 0.25, 0.75, 0, 0], [0.5, 0, 0.5, 0, 0]])
    torch.testing.assert_close(soft, expected)


def test_task_trains_latent_mixup_against_the_mixed_targets() -> None:
    from avformer.tasks.classification import AVClassificationOptions, AVClassificationTask

    m = _model("sft_tiny", fusion_config={"mixup_alpha": 1.0}).train()
    task = AVClassificationTask(m, AVClassificationOptions(), num_classes=5)
    a, v = _inputs(b=6)
    label = torch.tensor([0, 1, 2, 3, 4, 0])
    ones = torch.ones(6, dtype=torch.bool)
    batch = {"audio": a, "video": v, "has_audio": ones, "has_video": ones, "label": label, "batch_size": 6}
    torch.manual_seed(11)
    _, logs = task.training_step(batch)
    torch.manual_seed(11)  # the same draw inside the fusion
    out = m(a, v, embed=False)
    assert out.mix is not None and not torch.equal(out.mix.index, torch.arange(6))
    soft = out.mix.lam[:, None] * torch.nn.functional.one_hot(label, 5) + (1 - out.mix.lam[:, None]) * (
        torch.nn.functional.one_hot(label[out.mix.index], 5)
    )
    expected = -(soft * out.logits.detach().log_softmax(-1)).sum(-1).mean()
    plain = torch.nn.functional.cross_entropy(out.logits.detach(), label)
    assert logs["ce"] == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(expected) - float(plain)) > 1e-3  # the test can tell the two apart


def test_uavm_per_batch_tells_ddp_about_the_encoder_it_leaves_out() -> None:
    from avformer.tasks.classification import AVClassificationOptions, AVClassificationTask

    with_avc = AVClassificationOptions(avc_weight=0.1)
    assert AVClassificationTask(_model("uavm_tiny"), with_avc, num_classes=5).unused_parameters
    both = _model("uavm_tiny", fusion_config={"audio_prob": None})
    assert not AVClassificationTask(both, with_avc, num_classes=5).unused_parameters


def test_agnostic_fused_embedding_is_a_representation_for_retrieval() -> None:
    from avformer.eval.representations import Embeddings

    m = _model("eao_tiny")
    a, v = _inputs()
    has_v = torch.tensor([True, False, True])
    with torch.no_grad():
        rep = m.represent(v, a, has_video=has_v)
        res = m.fusion(m.audio_encoder, m.video_encoder, a, v, has_video=has_v)
    torch.testing.assert_close(rep["av_fused"], res.fused)
    torch.testing.assert_close(rep["av_fused"][1], res.audio.pooled[1])  # video absent: the audio embedding alone
    assert "av_fused" not in _model("concat_tiny").represent(v, a)  # only a fusion that makes one
    assert "av_fused" in {f.name for f in dataclasses.fields(Embeddings)}
