"""Sparse Fusion Transformer: what the joint blocks see, max pooling, the summed class token, latent mixup."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.fusion._small import inputs, small_model


def test_sft_joint_blocks_see_only_the_pooled_tokens_and_the_class_token() -> None:
    m = small_model("sft_tiny")
    a, v = inputs()
    seen: list[tuple[int, ...]] = []
    fus: Any = m.fusion
    fus.joint.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        enc_a, enc_v = m.audio_encoder.forward_features(a), m.video_encoder.forward_features(v)
        m(a, v)
    assert enc_a.tokens.shape[1] == 8 and enc_v.tokens.shape[1] == 8
    assert seen == [(3, 1 + 2 + 2, 32)]  # 8 / 4 audio + 8 / 4 video + the summed class token


def test_sft_max_pooling_ignores_tokens_below_the_window_maximum() -> None:
    m = small_model("sft_tiny")
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
    m = small_model("sft_tiny")
    fus: Any = m.fusion
    seen: list[torch.Tensor] = []
    fus.joint.blocks[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0][:, 0].clone()))
    a, v = inputs()
    with torch.no_grad():
        m(a, v, has_video=torch.tensor([True, False, True]))
        pa, pv = m.audio_encoder.forward_features(a).pooled, m.video_encoder.forward_features(v).pooled
    torch.testing.assert_close(seen[0][0], pa[0] + pv[0])
    torch.testing.assert_close(seen[0][1], pa[1])


def test_sft_latent_mixup_mixes_one_joint_layer_and_reports_it() -> None:
    m = small_model("sft_tiny", fusion_config={"mixup_alpha": 0.3}).train()
    fus: Any = m.fusion
    a, v = inputs(b=4)
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

    m = small_model("sft_tiny")
    task = AVClassificationTask(m, AVClassificationOptions(), num_classes=5)
    soft = task._latent_mix(torch.tensor([0, 1, 2]), LatentMix(torch.tensor([1, 2, 0]), torch.tensor([1.0, 0.25, 0.5])))
    expected = torch.tensor([[1.0, 0, 0, 0, 0], [0, 0.25, 0.75, 0, 0], [0.5, 0, 0.5, 0, 0]])
    torch.testing.assert_close(soft, expected)


def test_task_trains_latent_mixup_against_the_mixed_targets() -> None:
    from avformer.tasks.classification import AVClassificationOptions, AVClassificationTask

    m = small_model("sft_tiny", fusion_config={"mixup_alpha": 1.0}).train()
    task = AVClassificationTask(m, AVClassificationOptions(), num_classes=5)
    a, v = inputs(b=6)
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
