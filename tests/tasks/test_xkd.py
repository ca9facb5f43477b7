"""XKD task: EMA teacher without gradient, centring, cross-modal pairing, MMD, the agnostic backbone, resume."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import nn

from avformer.losses.distill import cosine_momentum, distill_cross_entropy, teacher_distribution
from avformer.models.masked import MaskingUnsupported
from avformer.models.registry import create_model
from avformer.tasks.base import EpochContext
from avformer.tasks.registry import TaskData, get_task
from avformer.tasks.xkd import XKDOptions, XKDTask, build_xkd

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16),
        "audio_input": "spectrogram", "spec_size": (32, 40), "spec_patch": (8, 10), "vocab_size": 97,
        "text_word_dim": 8, "va_dim": 16, "vt_dim": 8, "pool": "mean"}  # fmt: skip
SMALL = {"out_dim": 64, "head_hidden": 32, "head_bottleneck": 16, "decoder_dim": 16, "decoder_depth": 1,
         "decoder_heads": 2}  # fmt: skip
K = SMALL["out_dim"]


def _task(name: str = "vatt_tiny", seed: int = 0, cnn: bool = False, **options: Any) -> XKDTask:
    torch.manual_seed(seed)
    model = create_model(name, **(TINY | ({"video_stem": "frame_cnn", "audio_stem": "cnn"} if cnn else {})))
    opts = XKDOptions(agnostic=name.startswith("vatt_ma"), **(SMALL | options))
    return XKDTask(model, opts)  # type: ignore[arg-type]


def _batch(b: int = 6, seed: int = 1) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randn(b, 3, 4, 32, 32, generator=g), "audio": torch.randn(b, 1, 32, 40, generator=g)}


def _ctx(epoch: int = 0, epochs: int = 4) -> EpochContext:
    return EpochContext(epoch, epochs, torch.device("cpu"), "fp32", None, 0)


def _train(task: XKDTask, steps: int, lr: float = 1e-3, batch: dict[str, Any] | None = None) -> list[float]:
    opt = torch.optim.AdamW(task.model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss, _ = task.training_step(batch if batch is not None else _batch())
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


# ---- the teacher ---------------------------------------------------------------------------------------------------
def test_teacher_gets_no_gradient_and_the_student_does() -> None:
    task = _task()
    task.model.train()
    loss, logs = task.training_step(_batch())
    loss.backward()
    assert task.teacher is not None
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.parameters())
    for m in ("video", "audio"):
        params = [*task.model.encoders[m].named_parameters(), *task.heads[f"proj_{m}"].named_parameters()]
        for name, p in params:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{m} {name}"
        assert any(p.grad.abs().sum() > 0 for p in task.heads[f"dec_{m}"].parameters())
    for key in ("recon_video", "recon_audio", "kd_video_to_audio", "kd_audio_to_video", "mmd_student",
                "teacher_entropy_video", "teacher_entropy_audio", "spread_video", "spread_audio"):  # fmt: skip
        assert math.isfinite(logs[key]), key
    assert 0 <= logs["teacher_entropy_video"] <= math.log(K) + 1e-4


def test_teacher_follows_the_ema_formula_exactly() -> None:
    task = _task()
    task.on_epoch_start(_ctx(epoch=1, epochs=4))
    m = task.momentum
    assert m == pytest.approx(cosine_momentum(0.997, 1.0, 0.25))
    task.model.train()
    opt = torch.optim.SGD(task.model.parameters(), lr=0.1)
    for step in range(2):
        teacher_before = {n: p.clone() for n, p in task._ensure_teacher().named_parameters()}
        student_now = {n: p.detach().clone() for n, p in task.student.named_parameters()}
        opt.zero_grad()
        loss, _ = task.training_step(_batch(seed=step))
        assert task.teacher is not None
        for n, p in task.teacher.named_parameters():  # updated at the start of the step, from the student as it was
            torch.testing.assert_close(p, m * teacher_before[n] + (1 - m) * student_now[n], rtol=0, atol=1e-7)
        loss.backward()
        opt.step()
    # after two optimizer steps the teacher lags the student: not a copy
    pairs = zip(task.teacher.parameters(), task.student.parameters(), strict=True)
    diffs = [float((p - q.detach()).abs().max()) for p, q in pairs]
    assert max(diffs) > 0


def test_teacher_starts_as_a_copy_of_the_student() -> None:
    task = _task()
    teacher = task._ensure_teacher()
    for (n, p), (n2, q) in zip(teacher.named_parameters(), task.student.named_parameters(), strict=True):
        assert n == n2 and torch.equal(p, q) and p.data_ptr() != q.data_ptr()


def test_cnn_tokenizers_teacher_uses_batch_statistics_like_the_student() -> None:
    # the recipes' tokenizers (a per-frame CNN, a CNN over the log-mel) have BatchNorm: at the first step the teacher
    # must give exactly the student's outputs (running statistics at their init values would not)
    task = _task(cnn=True, refine="none")
    task.model.train()
    batch = _batch()
    teacher = task.teacher_outputs(batch["video"], batch["audio"])
    for m in ("video", "audio"):
        student = task.heads[f"proj_{m}"](task.model.encoders[m].forward_features(batch[m]).tokens.mean(dim=1))
        torch.testing.assert_close(teacher[m], student.detach(), rtol=1e-4, atol=1e-4)
    loss, logs = task.training_step(batch)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and logs["teacher_batch_entropy_audio"] > 0.1
    task.model.eval()
    pictures = task.reconstruct(batch)
    assert pictures["video"].input.shape == batch["video"].shape


def test_centre_update_follows_its_momentum() -> None:
    task = _task(center_momentum=0.8)
    task.model.train()
    batch = _batch()
    expected = task.teacher_outputs(batch["video"], batch["audio"])  # the first step does not move the teacher
    task.training_step(batch)
    for m in ("video", "audio"):
        torch.testing.assert_close(task.centres[m].value, 0.2 * expected[m].mean(0), rtol=0, atol=1e-6)


# ---- cross-modal pairing -------------------------------------------------------------------------------------------
def _peaked_teacher(task: XKDTask, peaks: dict[str, int]) -> None:
    """Make each teacher head output the same one-hot direction for every clip (index ``peaks[m]``)."""
    teacher = task._ensure_teacher()
    with torch.no_grad():
        for m, k in peaks.items():
            head = teacher["heads"][m]
            head.mlp[-1].weight.zero_()
            head.mlp[-1].bias.zero_()
            head.mlp[-1].bias[0] = 1.0  # bottleneck output: e_0 for every input
            w = head.last_layer.weight
            w[:, 0] = 0.0
            w[k] = 0.0
            w[k, 0] = 1.0  # only prototype k sees e_0


@pytest.mark.parametrize("full_view", [True, False])
def test_audio_teacher_teaches_the_video_student_and_vice_versa(full_view: bool) -> None:
    task = _task(recon_weight=0.0, align_weight=0.0, momentum=1.0, momentum_final=1.0, student_full_view=full_view)
    _peaked_teacher(task, {"video": 5, "audio": 11})
    captured: dict[str, list[torch.Tensor]] = {"video": [], "audio": []}
    for m in ("video", "audio"):

        def hook(_mod: nn.Module, _inp: Any, out: torch.Tensor, m: str = m) -> None:
            out.retain_grad()
            captured[m].append(out)

        task.heads[f"proj_{m}"].register_forward_hook(hook)
    task.model.train()
    loss, logs = task.training_step(_batch())
    loss.backward()
    for student, target in (("video", 11), ("audio", 5)):  # descent raises the other teacher's prototype most
        assert len(captured[student]) == (2 if full_view else 1)  # the masked view (and the unmasked one)
        for out in captured[student]:
            assert out.grad is not None
            assert (-out.grad).argmax(dim=1).eq(target).all(), student
    # the logged terms are the CE of each student against the *other* modality's teacher
    t = task.teacher_outputs(_batch()["video"], _batch()["audio"])
    q_audio = teacher_distribution(t["audio"], torch.zeros(K), task.temps["audio"])
    expected = torch.stack([distill_cross_entropy(s, q_audio, 0.1) for s in captured["video"]]).mean()
    assert logs["kd_audio_to_video"] == pytest.approx(float(expected.detach()), rel=1e-5)


def test_two_views_the_teacher_reads_the_second_and_the_masked_student_the_first() -> None:
    task = _task()
    b1, b2 = _batch(seed=1), _batch(seed=2)
    two = {m: torch.stack([b1[m], b2[m]], dim=1) for m in ("video", "audio")}
    views, present = task._views(two)
    assert torch.equal(views["video"][0], b1["video"]) and torch.equal(views["audio"][1], b2["audio"])
    assert present["video"].all()
    seen: dict[str, list[torch.Tensor]] = {"teacher": [], "student": []}
    task._ensure_teacher()["encoders"]["audio"].patch_embed.register_forward_pre_hook(
        lambda _m, a: seen["teacher"].append(a[0])
    )
    task.model.encoders["audio"].patch_embed.register_forward_pre_hook(lambda _m, a: seen["student"].append(a[0]))
    task.model.train()
    task.training_step(two)
    assert len(seen["teacher"]) == 1 and torch.equal(seen["teacher"][0], b2["audio"])
    assert len(seen["student"]) == 2  # masked view 0, then the unmasked view 1
    assert torch.equal(seen["student"][0], b1["audio"]) and torch.equal(seen["student"][1], b2["audio"])


# ---- alignment, absent streams, collapse monitor -------------------------------------------------------------------
def test_mmd_term_is_in_the_loss_and_reaches_the_students() -> None:
    task = _task(recon_weight=0.0, kd_weight=0.0, align_weight=1.0)
    task.model.train()
    loss, logs = task.training_step(_batch())
    assert float(loss.detach()) == pytest.approx((logs["mmd_student"] + logs["mmd_teacher"]) / 2, rel=1e-5)
    loss.backward()
    for m in ("video", "audio"):
        assert sum(float(p.grad.abs().sum()) for p in task.model.encoders[m].parameters() if p.grad is not None) > 0


def test_clips_without_a_stream_leave_its_terms() -> None:
    # what the absent clips' audio holds (zeros or anything else) changes no logged term
    has_audio = torch.tensor([True, True, True, False, False, False])
    runs = []
    for fill in (torch.zeros(3, 1, 32, 40), 5 * torch.randn(3, 1, 32, 40)):
        task = _task()
        task.model.train()
        batch = _batch() | {"has_audio": has_audio}
        batch["audio"][3:] = fill
        torch.manual_seed(5)  # the same masks
        loss, logs = task.training_step(batch)
        assert math.isfinite(float(loss.detach()))
        runs.append((logs, task.centres["audio"].value.clone()))
    (first, c1), (second, c2) = runs
    assert first.keys() == second.keys()
    for key, value in first.items():
        assert second[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    torch.testing.assert_close(c1, c2)
    # no audio at all: the audio terms are exact zeros and the audio centre does not move
    none = _batch() | {"has_audio": torch.zeros(6, dtype=torch.bool)}
    centre = task.centres["audio"].value.clone()
    loss, logs = task.training_step(none)
    assert torch.equal(task.centres["audio"].value, centre)
    assert logs["kd_audio_to_video"] == 0.0 and logs["recon_audio"] == 0.0


def test_chance_values() -> None:
    task = _task()
    ln_k = math.log(K)
    kd = {"kd": ln_k, "kd_video_to_audio": ln_k, "kd_audio_to_video": ln_k}
    assert task.chance_losses(128) == kd | {"recon_video": 1.0, "recon_audio": 1.0}
    assert _task(kd_weight=0.0, norm_pix=False).chance_losses(128) == {}


def test_schedules_follow_the_epoch() -> None:
    task = _task(momentum=0.99, warmup_teacher_temp_audio=0.04, teacher_temp_audio=0.07, warmup_teacher_temp_epochs=3)
    task.on_epoch_start(_ctx(0, 10))
    assert task.momentum == pytest.approx(0.99) and task.temps["audio"] == pytest.approx(0.04)
    task.on_epoch_start(_ctx(1, 10))
    assert task.temps["audio"] == pytest.approx(0.055) and task.temps["video"] == pytest.approx(0.1)
    task.on_epoch_start(_ctx(5, 10))
    assert task.momentum == pytest.approx(0.995) and task.temps["audio"] == pytest.approx(0.07)


# ---- the agnostic variant ------------------------------------------------------------------------------------------
def test_agnostic_variant_has_one_backbone_trained_by_both_modalities() -> None:
    task = _task("vatt_ma_tiny", kd_weight=0.0, align_weight=0.0)  # reconstruction only: one modality at a time
    enc = task.model.encoders
    assert enc["video"].blocks is enc["audio"].blocks and enc["video"].norm is enc["audio"].norm
    teacher = task._ensure_teacher()
    assert teacher["encoders"]["video"].blocks is teacher["encoders"]["audio"].blocks
    assert teacher["encoders"]["video"].blocks is not enc["video"].blocks
    names = [n for n, _ in task.model.named_parameters()]
    assert any(n.startswith("encoders.video.blocks.") for n in names)
    assert not any(n.startswith("encoders.audio.blocks.") for n in names)  # one parameter set, not two
    assert enc["video"].patch_embed is not enc["audio"].patch_embed  # tokenizers stay per modality
    task.model.train()
    for present in ("video", "audio"):
        task.model.zero_grad()
        absent = "audio" if present == "video" else "video"
        loss, _ = task.training_step(_batch() | {f"has_{absent}": torch.zeros(6, dtype=torch.bool)})
        loss.backward()
        assert sum(float(p.grad.abs().sum()) for p in enc["video"].blocks.parameters() if p.grad is not None) > 0
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in enc[absent].patch_embed.parameters())


def test_builder_checks_the_model_and_the_variant() -> None:
    data = TaskData()
    assert isinstance(get_task("xkd").build(create_model("vatt_tiny", **TINY), XKDOptions(**SMALL), data), XKDTask)
    with pytest.raises(ValueError, match="shared-backbone"):
        build_xkd(create_model("vatt_tiny", **TINY), XKDOptions(agnostic=True, **SMALL), data)
    with pytest.raises(ValueError, match="one trunk per modality"):
        build_xkd(create_model("vatt_ma_tiny", **TINY), XKDOptions(**SMALL), data)
    with pytest.raises(MaskingUnsupported, match="conv stem"):  # masking cannot hide a tubelet from a conv stem
        build_xkd(create_model("vatt_tiny", **(TINY | {"video_stem": "conv"})), XKDOptions(**SMALL), data)
    with pytest.raises(TypeError, match="VATT"):
        build_xkd(nn.Linear(2, 2), XKDOptions(**SMALL), data)
    with pytest.raises(ValueError, match="views"):
        build_xkd(create_model("vatt_tiny", **TINY), XKDOptions(**SMALL), TaskData(num_views=3))
    with pytest.raises(ValueError, match="refine"):
        XKDOptions(refine="max")
    with pytest.raises(ValueError, match="momentum"):
        XKDOptions(momentum=0.999, momentum_final=0.99)


# ---- resume --------------------------------------------------------------------------------------------------------
def test_resume_restores_teacher_and_centres_exactly() -> None:
    task = _task()
    task.on_epoch_start(_ctx(1, 4))
    task.model.train()
    opt = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    for step in range(2):
        opt.zero_grad()
        loss, _ = task.training_step(_batch(seed=step))
        loss.backward()
        opt.step()
    model_state = copy.deepcopy(task.model.state_dict())
    task_state = copy.deepcopy(task.state_dict())
    rng = torch.get_rng_state()
    loss_a, logs_a = task.training_step(_batch(seed=7))

    other = _task(seed=123)  # another init: everything must come from the checkpoint
    other.model.load_state_dict(model_state)
    other.load_state_dict(task_state)  # no on_epoch_start: a mid-epoch resume
    other.model.train()
    torch.set_rng_state(rng)
    loss_b, logs_b = other.training_step(_batch(seed=7))
    assert float(loss_a.detach()) == float(loss_b.detach())
    assert logs_a == logs_b
    assert task.teacher is not None and other.teacher is not None
    for p, q in zip(task.teacher.parameters(), other.teacher.parameters(), strict=True):
        assert torch.equal(p, q)
    for m in ("video", "audio"):
        assert torch.equal(task.centres[m].value, other.centres[m].value)


def test_validation_reports_retrieval_spread_and_teacher_entropy() -> None:
    task = _task()
    task.model.eval()
    batch = _batch(8) | {"label": torch.arange(8) % 4}
    out = task.validation_end(task.validation_step(batch))
    for key in ("a2v_mAP", "a2v_R@1", "embed_std_video", "embed_std_audio", "teacher_entropy_video"):
        assert math.isfinite(out[key]), key
    pictures = task.reconstruct(batch)
    assert pictures["video"].input.shape == batch["video"].shape
    assert pictures["audio"].masked.isnan().float().mean() == pytest.approx(pictures["audio"].mask_ratio)


def test_kd_falls_on_a_fixed_batch() -> None:
    task = _task(recon_weight=1.0, momentum=0.9, momentum_final=0.9)
    batch = _batch(8)
    task.model.train()
    first, *_, last = _train(task, 25, lr=2e-3, batch=batch)
    assert last < first
