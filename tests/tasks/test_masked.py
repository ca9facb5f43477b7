"""Masked pretraining tasks: mae, cav_mae, mavil stages 1 and 2 (avformer.tasks.masked)."""

from __future__ import annotations

import pytest
import torch

from avformer.models import create_model
from avformer.models.masked import MaskingUnsupported
from avformer.tasks import masked as masked_tasks
from avformer.tasks.masked import MaskedAVTask
from avformer.tasks.registry import TaskData, get_task

TINY = {
    "embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 8, 8),
    "audio_input": "spectrogram", "spec_size": (32, 40), "spec_patch": (8, 10), "va_dim": 16, "vt_dim": 8,
    "vocab_size": 97, "text_word_dim": 8, "pool": "mean", "va_head": "mlp",
}  # fmt: skip
SMALL_DECODER = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}


def _task(name: str, **options) -> MaskedAVTask:
    torch.manual_seed(0)
    model = create_model("vatt_tiny", **TINY)
    entry = get_task(name)
    task = entry.build(model, entry.parse_options(SMALL_DECODER | options), TaskData())
    assert isinstance(task, MaskedAVTask)
    return task


def _batch(n: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(n, 1, 32, 40, generator=g), "video": torch.randn(n, 3, 4, 32, 32, generator=g)}


def test_tasks_register_and_options_are_checked():
    for name in ("mae", "cav_mae", "mavil"):
        assert not get_task(name).supervised
    from avformer.config import ConfigError

    with pytest.raises(ConfigError, match="video_mask_ratio"):
        get_task("mae").parse_options({"video_mask_ratio": 1.0})
    with pytest.raises(ConfigError, match="stage"):
        get_task("mavil").parse_options({"stage": 3})
    with pytest.raises(ConfigError, match="inter_weight"):
        get_task("mae").parse_options({"inter_weight": 0.1})  # mae has no contrastive term


def test_unsupported_models_are_clear_errors():
    entry = get_task("mae")
    conv = create_model("vatt_tiny", **(TINY | {"video_stem": "conv", "tubelet_size": (2, 16, 16)}))
    with pytest.raises(MaskingUnsupported, match=r"video encoder .* conv stem"):
        entry.build(conv, entry.parse_options({}), TaskData())
    with pytest.raises(TypeError, match="needs a VATT model"):
        entry.build(create_model("mat_tiny"), entry.parse_options({}), TaskData())


@pytest.mark.parametrize(("name", "options", "terms"), [
    ("mae", {}, {"recon_audio", "recon_video"}),
    ("cav_mae", {}, {"recon_audio", "recon_video", "inter"}),
    ("mavil", {}, {"recon_audio", "recon_video", "inter", "intra_audio", "intra_video"}),
    ("cav_mae", {"inter_video_mask_ratio": 0.5, "inter_audio_mask_ratio": 0.0},
     {"recon_audio", "recon_video", "inter"}),
    ("mavil", {"inter_video_mask_ratio": 0.5, "inter_audio_mask_ratio": 0.0},
     {"recon_audio", "recon_video", "inter", "intra_audio", "intra_video"}),
])  # fmt: skip
def test_training_step_logs_its_terms_and_every_head_learns(name, options, terms):
    task = _task(name, **options)
    task.model.train()
    loss, logs = task.training_step(_batch())
    assert set(logs) == terms and set(task.chance_losses(6)) == {t for t in terms if not t.startswith("recon")}
    loss.backward()
    for n, p in task.model.named_parameters():
        if n.startswith(("encoders.audio", "encoders.video", "task_heads")):
            assert p.grad is not None and torch.isfinite(p.grad).all(), n
    va = task.model.head_video_va[0].weight.grad
    assert (va is not None) == (name != "mae")  # only the contrastive tasks train the va heads


def test_mavil_intra_term_compares_two_independent_masks(monkeypatch: pytest.MonkeyPatch):
    task = _task("mavil")
    seen: list[tuple[str, torch.Tensor]] = []
    real = masked_tasks.mask_for

    def spy(encoder, x, ratio, **kw):
        m = real(encoder, x, ratio, **kw)
        seen.append((kw["what"], m.keep))
        return m

    monkeypatch.setattr(masked_tasks, "mask_for", spy)
    task.training_step(_batch())
    assert [w for w, _ in seen] == ["audio encoder", "video encoder"] * 2  # view 1, then view 2 of each modality
    assert not torch.equal(seen[0][1], seen[2][1]) and not torch.equal(seen[1][1], seen[3][1])


@pytest.mark.parametrize("name", ["cav_mae", "mavil"])
def test_a_separate_inter_pass_decides_the_audio_video_term(name: str):
    """With inter_*_mask_ratio 0 the InfoNCE reads the whole clips: the reconstruction view's masking (its ratio,
    its draw) no longer changes it; without the option it does."""

    def inter(**options) -> float:
        task = _task(name, **options)
        task.model.train()
        torch.manual_seed(1)
        return task.training_step(_batch())[1]["inter"]

    whole = {"inter_video_mask_ratio": 0.0, "inter_audio_mask_ratio": 0.0}
    a = inter(**whole, video_mask_ratio=0.5, audio_mask_ratio=0.5)
    b = inter(**whole, video_mask_ratio=0.75, audio_mask_ratio=0.25)
    assert a == pytest.approx(b, abs=1e-6)
    assert inter(video_mask_ratio=0.5, audio_mask_ratio=0.5) != pytest.approx(
        inter(video_mask_ratio=0.75, audio_mask_ratio=0.25), abs=1e-4
    )
    from avformer.config import ConfigError

    with pytest.raises(ConfigError, match="together"):
        get_task(name).parse_options({"inter_video_mask_ratio": 0.5})
    with pytest.raises(ConfigError, match=r"inter_audio_mask_ratio must be in \[0, 1\)"):
        get_task(name).parse_options({"inter_video_mask_ratio": 0.5, "inter_audio_mask_ratio": 1.0})


def _smooth_batch(n: int) -> dict:
    """Clips of one smooth pattern each, scaled per clip: a masked patch is predictable from its place and the
    visible patches (random noise is not)."""
    g = torch.Generator().manual_seed(0)
    f, t = torch.meshgrid(torch.linspace(0, 3, 32), torch.linspace(0, 5, 40), indexing="ij")
    spec = (f.sin() * t.cos())[None, None]
    tt, yy, xx = torch.meshgrid(
        torch.linspace(0, 1, 4), torch.linspace(0, 3, 32), torch.linspace(0, 3, 32), indexing="ij"
    )
    frames = torch.stack([(yy + tt).sin(), (xx - tt).cos(), (yy * xx).sin()])[None]
    scale = torch.rand(n, 1, 1, 1, generator=g) + 0.5
    return {"audio": spec * scale, "video": frames * scale[..., None]}


def test_a_few_steps_reduce_reconstruction_on_a_tiny_batch():
    task = _task("mae")
    task.model.train()
    opt = torch.optim.AdamW(task.model.parameters(), lr=2e-3)
    batch = _smooth_batch(8)
    torch.manual_seed(0)
    first = sum(task.training_step(batch)[1].values())
    for _ in range(25):
        loss, _ = task.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.manual_seed(0)
    last = sum(task.training_step(batch)[1].values())
    assert last < 0.6 * first, (first, last)


def test_clips_without_a_modality_leave_its_reconstruction():
    """An absent clip's audio (whatever the decoder made of it) is never a target: scaling it changes nothing."""
    task = _task("mae")
    batch = _batch(4) | {"has_audio": torch.tensor([True, True, False, False])}
    other = {**batch, "audio": batch["audio"].clone()}
    other["audio"][2:] *= 1e3
    logs = []
    for b in (batch, other):
        torch.manual_seed(0)
        logs.append(task.training_step(b)[1])
    assert logs[0]["recon_audio"] == pytest.approx(logs[1]["recon_audio"], rel=1e-6)
    assert logs[0]["recon_video"] == logs[1]["recon_video"]  # no joint blocks in mae: audio never reaches video
    torch.manual_seed(0)
    everything = task.training_step(batch | {"has_audio": torch.ones(4, dtype=torch.bool)})[1]
    assert everything["recon_audio"] != pytest.approx(logs[0]["recon_audio"], rel=1e-6)


def test_stage2_teacher_is_frozen_sees_the_unmasked_clip_and_gets_no_gradient():
    stage1 = _task("mavil")
    task = _task("mavil", stage=2)
    with pytest.raises(RuntimeError, match="no teacher"):
        task.training_step(_batch())
    state = stage1.model.state_dict()
    fits = {k: v for k, v in state.items() if v.shape == task.model.state_dict()[k].shape}
    no_fusion = {k: v for k, v in fits.items() if not k.startswith("task_heads.fusion.")}
    with pytest.raises(ValueError, match=r"teacher must be the previous stage's model.*task_heads\.fusion"):
        task.from_previous_stage(no_fusion)  # a module the previous stage did not have: refused, not fresh
    task.model.load_state_dict(fits, strict=False)
    task.from_previous_stage(fits)
    teacher = task.teacher
    assert teacher is not None
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in task.model.parameters()}  # not optimised, not in checkpoints
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert torch.equal(before["audio.blocks.0.attn.qkv.weight"], state["encoders.audio.blocks.0.attn.qkv.weight"])
    task.model.train()
    opt = torch.optim.SGD(task.model.parameters(), lr=0.5)
    batch = _batch()
    for _ in range(2):
        loss, logs = task.training_step(batch)
        assert {"feat_audio", "feat_video"} <= logs.keys() and "recon_audio" not in logs
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    # the teacher's targets are its fused features of the whole clip: every patch of the input moves them
    t0 = task.teacher_features(batch["audio"], batch["video"])
    with torch.no_grad():
        a = teacher["audio"].forward_features(batch["audio"]).tokens
        v = teacher["video"].forward_features(batch["video"]).tokens
        fa, fv = teacher["fusion"](a, v)
    torch.testing.assert_close(t0["audio"], torch.nn.functional.layer_norm(fa, fa.shape[-1:]))
    torch.testing.assert_close(t0["video"], torch.nn.functional.layer_norm(fv, fv.shape[-1:]))
    assert t0["video"].shape == (6, 2 * 4 * 4, 32)  # every token of the grid, not only visible ones
    poked = batch["video"].clone()
    poked[:, :, :2, :8, :8] += 5.0  # one tubelet
    moved = task.teacher_features(batch["audio"], poked)["video"]
    assert not torch.allclose(moved[:, 0], t0["video"][:, 0])


def test_stage2_feature_loss_ignores_visible_tokens(monkeypatch: pytest.MonkeyPatch):
    task = _task("mavil", stage=2, inter_weight=0.0, intra_weight=0.0)
    task.from_previous_stage(task.model.state_dict())
    batch = _batch()
    torch.manual_seed(1)
    base = task.training_step(batch)[1]
    real = task.teacher_features
    masks: dict[str, torch.Tensor] = {}
    real_view = task._masked_view

    def view(m, x, generator=None):
        v = real_view(m, x, generator)
        masks[m] = v.mask.mask
        return v

    def visible_changed(audio, video):
        out = real(audio, video)
        return {m: out[m] + 50.0 * (~masks[m])[..., None] for m in out}  # only the visible tokens' targets move

    monkeypatch.setattr(task, "_masked_view", view)
    monkeypatch.setattr(task, "teacher_features", visible_changed)
    torch.manual_seed(1)
    changed = task.training_step(batch)[1]
    assert changed == pytest.approx(base, rel=1e-6)


def test_validation_is_repeatable_and_reports_retrieval_and_reconstruction():
    task = _task("cav_mae")
    task.model.eval()
    batch = _batch(6) | {"label": torch.tensor([0, 1, 0, 1, 0, 1])}
    runs = []
    for _ in range(2):
        out = task.validation_step(batch)
        runs.append(task.validation_end({k: v.cpu() for k, v in out.items()}))
    assert runs[0] == runs[1]  # the same masks at every evaluation
    assert {"a2v_mAP", "recon_audio", "recon_video"} <= runs[0].keys()


def test_reconstruct_keeps_visible_patches_and_blanks_masked_ones():
    task = _task("mae")
    task.model.eval()
    batch = _batch(3)
    recs = task.reconstruct(batch, seed=0)
    for m in ("audio", "video"):
        r = recs[m]
        assert r.input.shape == batch[m].shape
        torch.testing.assert_close(r.input, batch[m])
        hidden = r.masked.isnan()
        assert 0.7 < float(hidden.float().mean()) < 0.95
        assert torch.equal(r.reconstruction[~hidden], batch[m][~hidden])  # visible: as they were
        assert not torch.isnan(r.reconstruction).any()
    assert _task("mavil", stage=2).reconstruct(batch) == {}
