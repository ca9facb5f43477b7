"""CrissCross task: the six relation terms, stop-gradient, the predictor's place, weights and the collapse monitor."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from avformer.models.registry import create_model
from avformer.models.task_heads import TASK_HEADS
from avformer.tasks.crisscross import CrissCrossOptions, CrissCrossTask, embedding_std, negative_cosine

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32, "tubelet_size": (2, 16, 16),
        "num_samples": 1024, "vocab_size": 97, "text_word_dim": 8, "va_dim": 16, "vt_dim": 8}  # fmt: skip


def _task(**options: Any) -> CrissCrossTask:
    torch.manual_seed(0)
    return CrissCrossTask(create_model("vatt_tiny", **TINY), CrissCrossOptions(proj_dim=16, **options))  # type: ignore[arg-type]


def _batch(b: int = 6) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    return {"video": torch.randn(b, 2, 3, 4, 32, 32, generator=g), "audio": torch.randn(b, 2, 1, 1024, generator=g)}


class _Constant(nn.Module):
    """A predictor whose output does not depend on its input (a learned constant)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.value.expand(z.shape[0], -1)


def _grad_norm(module: nn.Module) -> float:
    return sum(float(p.grad.norm()) for p in module.parameters() if p.grad is not None)


def test_stop_gradient_blocks_the_target_branch() -> None:
    # synchronous terms only, and a video predictor that ignores its input: the video tower could only get a
    # gradient as the target z_v of D(p_a, z_v), which the stop-gradient blocks
    task = _task(intra_weight=0.0, async_weight=0.0)
    task.heads["pred_video"] = _Constant(16)
    task.model.train()
    loss, _ = task.training_step(_batch())
    loss.backward()
    assert _grad_norm(task.model.encoders["video"]) == 0.0 and _grad_norm(task.heads["proj_video"]) == 0.0
    assert _grad_norm(task.model.encoders["audio"]) > 0  # the online branch (audio -> predictor) learns
    assert _grad_norm(task.heads["pred_video"]) > 0 and _grad_norm(task.heads["pred_audio"]) > 0


def test_negative_cosine_stops_the_gradient_of_its_target() -> None:
    p, z = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None
    assert float(negative_cosine(z, z)) == pytest.approx(-1.0)
    none = negative_cosine(p, z, torch.zeros(4, dtype=torch.bool))
    assert float(none) == 0.0 and none.requires_grad  # no row counts: an attached zero


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 2.0, 1.0)])
def test_loss_is_the_weighted_mean_of_the_symmetrised_pairs(weights: tuple[float, float, float]) -> None:
    intra, sync, asyn = weights
    task = _task(intra_weight=intra, sync_weight=sync, async_weight=asyn)
    task.model.eval()  # BN on running statistics: the manual recomputation sees the same numbers
    batch = _batch()
    loss, logs = task.training_step(batch)
    z = {(m, i): task.project(m, batch[m][:, i]) for m in ("video", "audio") for i in range(2)}
    p = {k: task.heads[f"pred_{k[0]}"](v) for k, v in z.items()}

    def sym(x: tuple[str, int], y: tuple[str, int]) -> torch.Tensor:  # the predictor on the source, z the target
        return -(F.cosine_similarity(p[x], z[y]).mean() + F.cosine_similarity(p[y], z[x]).mean()) / 2

    v1, v2, a1, a2 = ("video", 0), ("video", 1), ("audio", 0), ("audio", 1)
    groups = [(intra, sym(v1, v2) + sym(a1, a2)), (sync, sym(v1, a1) + sym(v2, a2)), (asyn, sym(v1, a2) + sym(a1, v2))]
    expected = sum(w * t for w, t in groups if w > 0) / (2 * sum(w > 0 for w, _ in groups))
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert ("loss_async" in logs) == (asyn > 0) and ("loss_intra" in logs) == (intra > 0)


def test_absent_streams_leave_their_pairs() -> None:
    task = _task()
    task.model.eval()
    batch = _batch()
    full, _ = task.training_step(batch)
    has_audio = torch.ones(6, 2, dtype=torch.bool)
    has_audio[0] = False
    noisy = dict(batch, audio=batch["audio"].clone(), has_audio=has_audio)
    noisy["audio"][0] = float("nan")  # an absent stream's values never reach the loss
    loss, _ = task.training_step(noisy)
    assert torch.isfinite(loss) and float(loss) != pytest.approx(float(full))


def test_training_needs_two_views_and_options_are_checked() -> None:
    task = _task()
    with pytest.raises(ValueError, match="num_views to 2"):
        task.training_step({"video": torch.randn(2, 3, 4, 32, 32), "audio": torch.randn(2, 1, 1024)})
    with pytest.raises(ValueError, match="all 0"):
        CrissCrossOptions(intra_weight=0, sync_weight=0, async_weight=0)
    assert set(task.model.get_submodule(TASK_HEADS).keys()) == {"proj_video", "pred_video", "proj_audio", "pred_audio"}


def test_collapse_monitor_is_zero_for_a_point_and_about_one_over_root_d_when_spread() -> None:
    assert float(embedding_std(torch.ones(50, 64) * 3)) == pytest.approx(0.0, abs=1e-6)
    spread = float(embedding_std(torch.randn(4000, 64, generator=torch.Generator().manual_seed(0))))
    assert spread == pytest.approx(1 / math.sqrt(64), rel=0.05)


def test_validation_reports_retrieval_and_spread_in_the_projection_space() -> None:
    task = _task()
    task.model.eval()
    b = _batch(8)
    out = task.validation_step({"video": b["video"][:, 0], "audio": b["audio"][:, 0], "label": torch.arange(8) % 2})
    assert out["video_z"].shape == (8, 16)
    metrics = task.validation_end(out)
    assert {"a2v_R@1", "a2v_mAP", "embed_std_video", "embed_std_audio"} <= metrics.keys()
