"""Classification tasks: loss terms follow their weights, missing modalities are masked, grads are finite."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import torch

from avformer.config import ConfigError, ExperimentConfig, LossConfig, ModelSpec, TaskSpec
from avformer.losses.classification import MixupOutput
from avformer.models.av_model import AVModel
from avformer.models.registry import create_model
from avformer.tasks import classification as tasks_module
from avformer.tasks.classification import (
    AVClassificationOptions,
    AVClassificationTask,
    ClassificationTask,
    drop_modality,
)
from avformer.tasks.registry import TaskData, get_task, resolve_task

K = 5
B = 6
AUDIO = (16, 32)  # mel bins x frames
VIDEO = (2, 16, 16)  # frames x height x width


def _av_model(**overrides: Any) -> AVModel:
    torch.manual_seed(0)
    model = create_model(
        "mmt_tiny",
        num_classes=K,
        audio_overrides={"input_size": AUDIO},
        video_overrides={"input_size": VIDEO},
        proj_dim=16,
        **overrides,
    )
    assert isinstance(model, AVModel)
    return model


def _batch(multilabel: bool = False) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    label = torch.tensor([0, 1, 2, 0, 1, 3])
    if multilabel:
        label = torch.nn.functional.one_hot(label, K).float()
        label[0, 4] = 1.0
    return {
        "audio": torch.randn(B, 1, *AUDIO, generator=g),
        "video": torch.randn(B, 3, *VIDEO, generator=g),
        "has_audio": torch.ones(B, dtype=torch.bool),
        "has_video": torch.ones(B, dtype=torch.bool),
        "label": label,
        "batch_size": B,
    }


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("weights", "terms"),
    [
        ({}, {"ce"}),
        ({"avc_weight": 0.5}, {"ce", "avc"}),
        ({"avc_weight": 0.5, "imc_weight": 0.2}, {"ce", "avc", "imc"}),
        ({"modality_ce_weight": 0.5}, {"ce", "ce_audio", "ce_video"}),
        ({"ce_weight": 0.0, "avc_weight": 1.0}, {"avc"}),
    ],
)
def test_loss_terms_follow_their_weights(weights: dict[str, float], terms: set[str]) -> None:
    task = AVClassificationTask(_av_model(), AVClassificationOptions(**weights), num_classes=K)
    loss, logs = task.training_step(_batch())
    assert set(logs) - {"top1"} == terms
    assert math.isclose(float(loss.detach()), sum(logs[t] for t in terms), rel_tol=1e-5)
    assert 0.0 <= logs["top1"] <= 1.0


def test_every_parameter_gets_a_finite_grad() -> None:
    model = _av_model()
    task = AVClassificationTask(
        model, AVClassificationOptions(avc_weight=0.5, imc_weight=0.5, modality_ce_weight=0.5), num_classes=K
    )
    loss, _ = task.training_step(_batch())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_missing_audio_is_masked_out_of_every_term() -> None:
    """Whatever sits in the audio slot of a clip without audio changes neither the loss nor the gradients."""
    cfg = AVClassificationOptions(avc_weight=0.5, imc_weight=0.5, modality_ce_weight=0.5)
    results = []
    for fill in (0.0, 7.0):
        model = _av_model()
        task = AVClassificationTask(model, cfg, num_classes=K)
        batch = _batch()
        batch["has_audio"][[1, 4]] = False
        batch["audio"][[1, 4]] = fill  # zeros (the dataset's placeholder) or junk
        loss, logs = task.training_step(batch)
        loss.backward()
        results.append((float(loss), logs, _grads(model)))
    (loss0, logs0, g0), (loss1, logs1, g1) = results
    assert loss0 == pytest.approx(loss1, rel=1e-5)
    assert logs0 == pytest.approx(logs1, rel=1e-5)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g0[name], g1[name], rtol=1e-4, atol=1e-6, msg=name)


def test_drop_modality_removes_one_stream_of_clips_that_have_both() -> None:
    n = 4000
    has_a = torch.ones(n, dtype=torch.bool)
    has_v = torch.ones(n, dtype=torch.bool)
    has_a[:100] = False  # audio missing already: keeps its video
    has_v[100:200] = False  # video missing already: keeps its audio
    torch.manual_seed(0)
    a, v = drop_modality(has_a, has_v, 0.3)
    assert (a | v).all()  # never both gone
    assert v[:100].all() and a[100:200].all()
    lost_a, lost_v = (has_a & ~a)[200:].float().mean(), (has_v & ~v)[200:].float().mean()
    assert 0.12 < lost_a < 0.18 and 0.12 < lost_v < 0.18  # 0.3 x 1/2 each
    assert torch.equal(drop_modality(has_a, has_v, 0.0)[0], has_a)
    a1, v1 = drop_modality(has_a, has_v, 1.0)
    assert ((~a1) ^ (~v1))[200:].all()  # exactly one stream dropped from every clip that had both
    with pytest.raises(ValueError, match="modality_dropout"):
        AVClassificationOptions(modality_dropout=1.5)


def test_modality_dropout_masks_the_dropped_stream_like_a_missing_one() -> None:
    """With p = 1 a training step equals the step on the same clips whose dropped streams are marked missing."""
    cfg = AVClassificationOptions(avc_weight=0.5, imc_weight=0.5, modality_ce_weight=0.5)
    torch.manual_seed(5)
    has_a, has_v = drop_modality(torch.ones(B, dtype=torch.bool), torch.ones(B, dtype=torch.bool), 1.0)
    results = []
    for loss_cfg, masks in ((replace(cfg, modality_dropout=1.0), None), (cfg, (has_a, has_v))):
        batch = _batch()
        if masks is not None:
            batch["has_audio"], batch["has_video"] = masks
        task = AVClassificationTask(_av_model(), loss_cfg, num_classes=K)
        torch.manual_seed(5)  # the draw inside training_step repeats the one above
        loss, logs = task.training_step(batch)
        results.append((float(loss), logs))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-5)


def test_unlabeled_rows_and_clips_with_neither_stream_do_not_count() -> None:
    task = AVClassificationTask(_av_model(), AVClassificationOptions(avc_weight=0.5, imc_weight=0.5), num_classes=K)
    batch = _batch()
    batch["label"][2] = -1
    batch["has_audio"][5] = batch["has_video"][5] = False
    loss, _ = task.training_step(batch)
    assert torch.isfinite(loss)
    ref = _batch()
    keep = [0, 1, 3, 4]
    sub = {k: v[keep] if isinstance(v, torch.Tensor) else v for k, v in ref.items()}
    loss_sub, _ = AVClassificationTask(_av_model(), task.options, num_classes=K).training_step(sub)
    assert float(loss) == pytest.approx(float(loss_sub), rel=1e-4)


def test_mixup_trains_with_soft_targets() -> None:
    torch.manual_seed(3)
    task = AVClassificationTask(_av_model(), AVClassificationOptions(mixup_alpha=0.4, avc_weight=0.1), num_classes=K)
    loss, logs = task.training_step(_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert "top1" not in logs  # no hard targets to score against


@pytest.mark.parametrize("single", [False, True])
def test_mixup_whose_lambda_rounds_to_one_still_trains(monkeypatch: pytest.MonkeyPatch, single: bool) -> None:
    """Beta(0.2, 0.2) draws λ == 1.0 in float64 now and then; the targets are then (B, K) floats all the same.
    Regression: the top-1 log compared argmax (B,) with (B, K) targets and crashed a Speech Commands run."""
    real_mixup = tasks_module.mixup

    def mixup_at_one(inputs: dict[str, torch.Tensor], targets: torch.Tensor, **kw: Any) -> MixupOutput:
        out = real_mixup(inputs, targets, **kw)  # soft (B, K) targets and a permutation, as always
        return replace(out, inputs=dict(inputs), targets=torch.nn.functional.one_hot(targets, K).float(), lam=1.0)

    monkeypatch.setattr(tasks_module, "mixup", mixup_at_one)
    torch.manual_seed(3)
    loss_cfg = AVClassificationOptions(mixup_alpha=0.2)
    if single:
        model = create_model("mat_tiny", input_size=AUDIO, num_classes=K)
        task: AVClassificationTask | ClassificationTask = ClassificationTask(model, loss_cfg, num_classes=K)
    else:
        task = AVClassificationTask(_av_model(), loss_cfg, num_classes=K)
    loss, logs = task.training_step(_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert "top1" not in logs


def test_validation_reports_fused_and_each_modality() -> None:
    task = AVClassificationTask(_av_model(), AVClassificationOptions(), num_classes=K)
    task.model.eval()
    outputs = task.validation_step(_batch())
    assert set(outputs) == {"logits", "audio_logits", "video_logits", "label"}
    metrics = task.validation_end(outputs)
    assert set(metrics) == {"top1", "top5", "mean_class_acc", "loss", "audio_top1", "video_top1"}
    assert task.last_outputs is outputs


def test_multilabel_uses_bce_and_map() -> None:
    task = AVClassificationTask(
        _av_model(), AVClassificationOptions(avc_weight=0.5, imc_weight=0.5), num_classes=K, multilabel=True
    )
    loss, logs = task.training_step(_batch(multilabel=True))
    loss.backward()
    assert torch.isfinite(loss) and set(logs) == {"ce", "avc", "imc"}
    task.model.eval()
    metrics = task.validation_end(task.validation_step(_batch(multilabel=True)))
    assert {"mAP", "AUC", "d_prime", "loss", "audio_mAP", "video_mAP"} <= set(metrics)


@pytest.mark.parametrize(("name", "key", "size"), [("mat_tiny", "audio", AUDIO), ("mvit_v2_s_16x4", "video", VIDEO)])
def test_single_encoder_task_reads_its_modality(name: str, key: str, size: tuple[int, ...]) -> None:
    overrides: dict[str, Any] = {"input_size": size}
    if key == "video":
        overrides |= {"embed_dim": 16, "stages": ((1, (1, 1, 1), 1, 1), (1, (1, 2, 2), 2, 2)), "kv_stride": (1, 2, 2)}
    model = create_model(name, num_classes=K, **overrides)
    cfg = ExperimentConfig(name="t", model=ModelSpec(name), task=TaskSpec("classification", {"label_smoothing": 0.1}))
    entry, options, _ = resolve_task(cfg, lambda: "unused")
    task = entry.build(model, options, TaskData(tuple(map(str, range(K)))))
    assert isinstance(task, ClassificationTask) and task.modality == key
    batch = _batch()
    del batch["video" if key == "audio" else "audio"]
    batch[f"has_{key}"][0] = False
    loss, logs = task.training_step(batch)
    loss.backward()
    assert torch.isfinite(loss) and set(logs) == {"ce", "top1"}
    model.eval()
    metrics = task.validation_end(task.validation_step(batch))
    assert set(metrics) == {"top1", "top5", "mean_class_acc", "loss"}


def test_single_encoder_rejects_cross_modal_losses() -> None:
    """The classification task has no contrastive options; an old config's loss: section that sets one is an error
    naming the key, and av_classification refuses a single encoder."""
    model = create_model("mat_tiny", num_classes=K, input_size=AUDIO)
    with pytest.raises(ConfigError, match="avc_weight"):
        get_task("classification").parse_options({"avc_weight": 0.1})
    old = ExperimentConfig(name="t", model=ModelSpec("mat_tiny"), loss=LossConfig(avc_weight=0.1))
    with pytest.raises(ConfigError, match=r"loss.avc_weight=0.1 does not apply to task 'classification'"):
        resolve_task(old, lambda: "classification")
    with pytest.raises(TypeError, match="audio-visual model"):
        get_task("av_classification").build(model, AVClassificationOptions(), TaskData(("a", "b")))
    entry, options, notice = resolve_task(
        ExperimentConfig(name="t", model=ModelSpec("mmt_tiny"), loss=LossConfig(avc_weight=0.1)),
        lambda: "av_classification",
    )
    assert isinstance(entry.build(_av_model(), options, TaskData(tuple(map(str, range(K))))), AVClassificationTask)
    assert options == AVClassificationOptions(avc_weight=0.1)
    assert notice is not None and "task: {name: av_classification, options: {'avc_weight': 0.1}}" in notice


@pytest.mark.parametrize("fusion_config", [{"fusion_layers": 2}, {"fusion_layers": 2, "head": "concat"}])
def test_modality_ce_trains_each_modality_alone(fusion_config: dict[str, Any]) -> None:
    """The per-modality CE scores each modality with the other masked (as single-modality evaluation does): the
    video term sends no gradient into the audio encoder, though the bottleneck connects the towers; any head works."""
    model = _av_model(fusion_config=fusion_config)
    task = AVClassificationTask(model, AVClassificationOptions(ce_weight=0.0, modality_ce_weight=1.0), num_classes=K)
    batch = _batch()
    out = model(batch["audio"], batch["video"], alone=True)
    assert out.video_alone_logits is not None
    torch.nn.functional.cross_entropy(out.video_alone_logits, batch["label"]).backward()
    audio_grads = [p.grad for p in model.audio_encoder.parameters() if p.grad is not None]
    assert all(float(g.abs().sum()) == 0 for g in audio_grads)
    model.zero_grad()
    loss, logs = task.training_step(batch)
    assert set(logs) >= {"ce_audio", "ce_video"} and "ce" not in logs
    loss.backward()
    assert math.isfinite(float(loss))


def test_ce_only_task_tells_ddp_that_the_projection_heads_get_no_gradient() -> None:
    """Without AVC/IMC, audio_proj / video_proj are computed but unused: DDP needs find_unused_parameters."""
    ce = AVClassificationTask(_av_model(), AVClassificationOptions(), num_classes=K)
    assert ce.unused_parameters
    loss, _ = ce.training_step(_batch())
    loss.backward()
    no_grad = {n.split(".")[0] for n, p in ce.model.named_parameters() if p.grad is None}
    assert no_grad == {"audio_proj", "video_proj"}
    # and they are not run at all: DDP finds unused parameters by walking back from the outputs, so an output that
    # depends on them while the loss does not would still be an error there
    out = ce.model(_batch()["audio"], _batch()["video"], embed=False)
    assert out.audio_emb is None and out.video_emb is None
    assert not AVClassificationTask(
        _av_model(), AVClassificationOptions(avc_weight=0.1), num_classes=K
    ).unused_parameters


def test_a_fusion_that_drops_a_modality_masks_it_out_of_every_term() -> None:
    """UAVM trains on one modality per batch: the video it did not run must not enter AVC / IMC (its features are
    zeros), exactly as if the batch had no video."""
    from avformer.models.av_variants import vit_audio, vit_video

    def uavm() -> AVModel:
        torch.manual_seed(0)
        m = create_model(
            "uavm_tiny", num_classes=K, proj_dim=16, audio_overrides=vit_audio(1, 32, 2),
            video_overrides=vit_video(1, 32, 2), fusion_config={"num_heads": 2, "audio_prob": 1.0},
        )  # fmt: skip
        assert isinstance(m, AVModel)
        return m

    def batch() -> dict[str, Any]:
        g = torch.Generator().manual_seed(1)
        return {
            "audio": torch.randn(B, 1, 64, 100, generator=g),
            "video": torch.randn(B, 3, 8, 32, 32, generator=g),
            "has_audio": torch.ones(B, dtype=torch.bool),
            "has_video": torch.ones(B, dtype=torch.bool),
            "label": torch.tensor([0, 1, 2, 0, 1, 3]),
            "batch_size": B,
        }

    cfg = AVClassificationOptions(avc_weight=0.5, imc_weight=0.5)
    dropped = AVClassificationTask(uavm(), cfg, num_classes=K).training_step(batch())
    no_video = batch()
    no_video["has_video"] = torch.zeros(B, dtype=torch.bool)
    absent = AVClassificationTask(uavm(), cfg, num_classes=K).training_step(no_video)
    assert dropped[1] == pytest.approx(absent[1], rel=1e-5)
    assert float(dropped[0].detach()) == pytest.approx(float(absent[0].detach()), rel=1e-5)
