"""The av_correspondence task (Objects that Sound): pairs, training, validation, localisation."""

from __future__ import annotations

import math

import pytest
import torch

from avformer.models.registry import create_model
from avformer.tasks.correspondence import CorrespondenceOptions, CorrespondenceTask, correspondence_pairs
from avformer.tasks.registry import TaskData, get_task

_TINY = {
    "embed_dim": 16, "depth": 1, "num_heads": 2, "num_frames": 8, "img_size": 16, "spec_size": (16, 40), "pool": "mean",
    "video_stem": "frame_cnn", "audio_input": "spectrogram", "audio_stem": "cnn", "stem_stride": 4, "stem_width": 8,
    "vocab_size": 16, "text_word_dim": 4,
}  # fmt: skip


def _task(**options: object) -> CorrespondenceTask:
    torch.manual_seed(0)
    model = create_model("vatt_tiny", **_TINY)
    entry = get_task("av_correspondence")
    task = entry.build(model, entry.parse_options(dict(options)), TaskData())
    assert isinstance(task, CorrespondenceTask)
    return task


# ---- pairs ---------------------------------------------------------------------------------------------------------
def test_pairs_never_give_a_clip_its_own_audio_as_a_negative() -> None:
    for seed in range(20):
        index = torch.randperm(1000)[:17]
        usable = torch.ones(17, dtype=torch.bool)
        usable[[3, 8]] = False
        partner, target = correspondence_pairs(index, usable, seed)
        rows = torch.arange(17)
        neg = target == 0
        assert int(neg.sum()) == round(0.5 * 15)  # exactly half of the 15 usable clips
        assert (partner[neg] != rows[neg]).all()  # a negative is never the clip's own audio
        assert usable[partner[neg]].all() and usable[neg].all()  # only usable clips lend and borrow
        assert (partner[~usable] == rows[~usable]).all()
        assert torch.equal(target, (partner == rows).float())


def test_pairs_depend_on_seed_and_clip_indices_only() -> None:
    index = torch.arange(100, 132)
    usable = torch.ones(32, dtype=torch.bool)
    a = correspondence_pairs(index, usable, seed=3)
    b = correspondence_pairs(index.clone(), usable, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], correspondence_pairs(index, usable, seed=4)[0])
    assert not torch.equal(a[0], correspondence_pairs(index + 1, usable, seed=3)[0])
    partner, target = correspondence_pairs(torch.tensor([5]), torch.tensor([True]), seed=0)
    assert partner.tolist() == [0] and target.tolist() == [1.0]  # one clip: nothing to mismatch with


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="heads"):
        CorrespondenceOptions(heads="all")
    with pytest.raises(ValueError, match="negative_fraction"):
        CorrespondenceOptions(negative_fraction=1.0)
    with pytest.raises(ValueError, match="avol_time"):
        CorrespondenceOptions(avol_time="late")


def test_needs_a_two_tower_vatt() -> None:
    entry = get_task("av_correspondence")
    with pytest.raises(TypeError, match="VATT"):
        entry.build(torch.nn.Linear(2, 2), CorrespondenceOptions(), TaskData())
    with pytest.raises(ValueError, match="num_views"):
        entry.build(create_model("vatt_tiny", **_TINY), CorrespondenceOptions(), TaskData(num_views=2))


# ---- training --------------------------------------------------------------------------------------------------
def _event_batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Clips of 8 frames 16x16 with two squares that flash at random frames; the sound is loud on the frames of the
    first square's flashes (5 spectrogram frames per video frame). Only timing links a clip to its sound."""
    g = torch.Generator().manual_seed(seed)
    video = torch.zeros(n, 3, 8, 16, 16)
    audio = torch.zeros(n, 1, 16, 40)
    for i in range(n):
        for k, (y, x) in enumerate(torch.randint(0, 3, (2, 2), generator=g).tolist()):
            on = torch.randperm(8, generator=g)[:3]
            y0, x0 = 4 * y + 2 * k, 4 * x
            video[i, :, :, y0 : y0 + 4, x0 : x0 + 4] = 0.3
            video[i, :, on, y0 : y0 + 4, x0 : x0 + 4] = 1.5
            if k == 0:
                for f in on.tolist():
                    audio[i, 0, :, 5 * f : 5 * f + 3] = 2.0
    video += 0.05 * torch.randn(video.shape, generator=g)
    audio += 0.05 * torch.randn(audio.shape, generator=g)
    return {"video": video, "audio": audio, "index": torch.arange(n), "batch_size": n}


def _train(task: CorrespondenceTask, batch: dict[str, torch.Tensor], steps: int) -> list[float]:
    opt = torch.optim.AdamW(task.model.parameters(), lr=3e-3)
    task.model.train()
    losses = []
    for step in range(steps):
        b = dict(batch, index=batch["index"] + 1000 * step)  # new pairs each step
        loss, _ = task.training_step(b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_training_learns_correspondence_from_timing_only() -> None:
    torch.set_num_threads(1)
    batch = _event_batch(16, seed=0)
    losses = _train(_task(heads="avol", embed_dim=16), batch, 40)
    assert sum(losses[-8:]) / 8 < 0.7 * math.log(2)
    # broken link: every clip gets the same sound, so nothing tells a clip's own audio from another's
    same = dict(batch, audio=batch["audio"][:1].expand_as(batch["audio"]).clone())
    broken = _train(_task(heads="avol", embed_dim=16), same, 40)
    assert sum(broken[-8:]) / 8 > 0.9 * math.log(2)


def test_both_heads_train_and_every_head_parameter_gets_a_gradient() -> None:
    task = _task(heads="both", embed_dim=16)
    batch = _event_batch(8, seed=1)
    task.model.train()
    loss, logs = task.training_step(batch)
    loss.backward()
    assert {"loss_ave", "loss_avol", "ave_acc", "avol_acc"} <= set(logs)
    for name, p in task.heads.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    for name in ("video", "audio"):
        grads = [p.grad for p in task.model.encoders[name].parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    assert task.chance_losses(8) == {"loss_ave": pytest.approx(math.log(2)), "loss_avol": pytest.approx(math.log(2))}


def test_validation_is_deterministic_and_localize_gives_a_map() -> None:
    task = _task(heads="both", embed_dim=16)
    task.model.eval()
    batch = _event_batch(10, seed=2)
    batch["has_audio"] = torch.ones(10, dtype=torch.bool)
    batch["has_video"] = torch.ones(10, dtype=torch.bool)
    batch["has_audio"][4] = False
    a, b = task.validation_step(batch), task.validation_step(batch)
    assert torch.equal(a["target"], b["target"]) and torch.equal(a["avol_logit"], b["avol_logit"])
    assert not a["usable"][4]
    metrics = task.validation_end(a)
    assert metrics["pairs"] == 9 and 0 <= metrics["acc"] <= 1 and {"ave_acc", "avol_acc"} <= set(metrics)
    out = task.localize(batch["video"], batch["audio"])
    assert out.logit_map.shape == (10, 4, 4) and out.logit.shape == (10,)
    with pytest.raises(ValueError, match="localisation head"):
        _task(heads="ave").localize(batch["video"], batch["audio"])
