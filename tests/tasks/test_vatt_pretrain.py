"""VATT pretraining task: finite losses with and without text, masking, labels never read, learnable temperature."""

from __future__ import annotations

import math

import pytest
import torch

from avformer.losses import mil_nce
from avformer.metrics.retrieval import retrieval_report
from avformer.models.registry import create_model
from avformer.tasks.vatt_pretrain import VATTPretrainOptions, VATTPretrainTask

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16),
        "num_samples": 1024, "vocab_size": 97, "text_word_dim": 8, "va_dim": 16, "vt_dim": 8}  # fmt: skip


def _batch(b: int = 4, texts: list[str | None] | None = None) -> dict[str, object]:
    batch: dict[str, object] = {
        "video": torch.randn(b, 3, 4, 32, 32),
        "audio": torch.randn(b, 1, 1024),
        "has_video": torch.ones(b, dtype=torch.bool),
        "has_audio": torch.ones(b, dtype=torch.bool),
        "label": torch.full((b,), -1),
        "batch_size": b,
    }
    if texts is not None:
        batch["text"] = texts
    return batch


def _task(**loss: object) -> VATTPretrainTask:
    torch.manual_seed(0)
    return VATTPretrainTask(create_model("vatt_tiny", **TINY, drop_token_rate=0.5), VATTPretrainOptions(**loss))  # type: ignore[arg-type]


@pytest.mark.parametrize("texts", [None, [None] * 4, ["red cat", None, "a | b c", None], ["x", "y", "z", "w"]])
def test_losses_finite_and_all_grads_finite(texts: list[str | None] | None) -> None:
    task = _task(learnable_temperature=True)
    task.model.train()
    loss, logs = task.training_step(_batch(texts=texts))
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in task.model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), name
    if texts is None or not any(texts):
        assert logs["mil_nce"] == 0.0 and logs["text_clips"] == 0.0  # no text: exact zero, still attached
    else:
        assert logs["mil_nce"] > 0
    assert task.model.logit_scale_va.grad is not None  # learnable temperature gets a gradient


def test_fixed_temperature_is_not_trained() -> None:
    task = _task(temperature=0.2)
    assert not task.model.logit_scale_va.requires_grad
    assert math.isclose(float(task.model.logit_scale_va.exp()), 5.0, rel_tol=1e-5)


def test_clip_without_text_is_masked_out_of_mil_nce() -> None:
    torch.manual_seed(0)
    v, t = torch.randn(3, 8), torch.randn(3, 2, 8)
    mask = torch.tensor([[True, True], [False, False], [True, False]])
    full = mil_nce(v, t, 0.1, text_mask=mask)
    # clip 1 has no text: not an anchor; its (padded) segments are never candidates either
    t2 = t.clone()
    t2[1] = 1e3
    assert torch.allclose(full, mil_nce(v, t2, 0.1, text_mask=mask))


def test_mil_nce_learns_on_a_tiny_captioned_set() -> None:
    """Two captions per clip as positives: the loss falls on a fixed batch in a few steps, never NaN."""
    task = _task(nce_weight=0.0, learnable_temperature=True)
    task.model.train()
    batch = _batch(texts=["bin blue at f two now\nb f two", "lay red by k seven", None, "set white with p two soon"])
    opt = torch.optim.AdamW(task.model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(15):
        loss, _ = task.training_step(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    assert last is not None and first is not None and last < first


def test_needs_some_objective() -> None:
    with pytest.raises(ValueError, match="nothing to train"):
        _task(nce_weight=0.0, mil_nce_weight=0.0)


def test_validation_reports_retrieval_with_labels() -> None:
    task = _task()
    batch = _batch(6)
    batch["label"] = torch.tensor([0, 0, 1, 1, 2, 2])
    out = task.validation_step(batch)
    metrics = task.validation_end(out)
    assert {"a2v_R@1", "a2v_R@5", "a2v_median_rank", "a2v_mAP", "v2a_mAP"} <= set(metrics)


def test_retrieval_report_hand_computed() -> None:
    # audio i is closest to video i, except audio 2, whose nearest video is video 0 (same class)
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    audio = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, -0.2]])
    labels = torch.tensor([0, 1, 0])
    m = retrieval_report(video, audio, labels)
    # ranks of the correct video: 1, 1, 3 (audio 2 ranks video 0, then video 1, then video 2)
    assert m["a2v_R@1"] == pytest.approx(2 / 3) and m["a2v_median_rank"] == 1.0
    # a2v mAP: q0 (class 0) ranks v0, v1, v2: relevant v0 and v2 at ranks 1 and 3 -> AP (1 + 2/3) / 2 = 5/6
    # q1 (class 1) ranks v1 first -> AP 1; q2 (class 0) ranks v0, v1, v2 -> relevant at 1 and 3 -> 5/6
    assert m["a2v_mAP"] == pytest.approx((5 / 6 + 1 + 5 / 6) / 3)
    # a clip missing audio drops out of both directions
    m2 = retrieval_report(video, audio, labels, has_audio=torch.tensor([True, True, False]))
    assert m2["a2v_R@1"] == 1.0
