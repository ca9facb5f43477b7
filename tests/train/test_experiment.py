"""The composition root: old-form configs mean what they meant; tasks and fusions are plug-ins (registered here,
outside the package, with no file of ``src/`` changed), tasks with hooks and state; pretraining runs any
self-supervised task. Everything here trains through :func:`avformer.train.experiment.run_experiment`, the
function ``avformer train`` and ``avformer pretrain`` call."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from rich.console import Console
from torch import Tensor, nn

from avformer.config import ExperimentConfig, LossConfig, ModelSpec, TaskSpec, apply_overrides, load
from avformer.data.synth import SynthConfig, write_dataset
from avformer.fusion.base import FusionResult
from avformer.fusion.registry import register_fusion, unregister_fusion
from avformer.models.loading import load_run
from avformer.tasks.base import Batch, EpochContext, present_mask
from avformer.tasks.registry import TaskData, register_task, unregister_task
from avformer.train.experiment import build_experiment, run_experiment
from avformer.utils.checkpoint import load_checkpoint
from avformer.utils.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke" / "tiny_av.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=27, seconds=1.0, size=32, fps=8), workers=1)
    return out


def _smoke(synth: Path, *overrides: str) -> ExperimentConfig:
    data = [f"train_manifest={synth / 'train.csv'}", f"val_manifest={synth / 'val.csv'}"]
    return apply_overrides(load(SMOKE), [*data, f"classes={synth / 'classes.txt'}", "train.epochs=1", *overrides])


def _quiet() -> Console:
    return Console(file=io.StringIO())


def test_an_old_form_config_trains_exactly_like_its_task_form(synth: Path, tmp_path: Path) -> None:
    new = _smoke(synth)
    assert new.task is not None and new.task.name == "av_classification"
    old = replace(new, task=None, loss=LossConfig(**new.task.options))
    console = Console(file=io.StringIO())
    res_old = run_experiment(old, out_dir=tmp_path / "old", console=console, report=False)
    res_new = run_experiment(new, out_dir=tmp_path / "new", console=_quiet(), report=False)
    assert "no task: section (old form); running task: {name: av_classification" in console.file.getvalue()
    written = yaml.safe_load((tmp_path / "old" / "config.yaml").read_text())
    assert "loss" not in written and written["task"]["name"] == "av_classification"
    assert written["task"]["options"]["avc_weight"] == 0.1
    a = load_checkpoint(tmp_path / "old" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "new" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res_old.summary["val_top1"] == res_new.summary["val_top1"]


def test_bad_task_names_and_options_are_usage_errors(synth: Path) -> None:
    with pytest.raises(UsageError, match="unknown task 'av_clasification'; did you mean 'av_classification'"):
        build_experiment(_smoke(synth, "task.name=av_clasification"))
    with pytest.raises(UsageError, match=r"task.options \(av_classification\).*nce_weight"):
        build_experiment(_smoke(synth, "task.options.nce_weight=1"))
    with pytest.raises(UsageError, match="needs an audio-visual model"):
        build_experiment(replace(_smoke(synth), model=ModelSpec("mat_tiny", {"input_size": (32, 100)})))
    with pytest.raises(UsageError, match="is supervised: train it with `avformer train`"):
        build_experiment(_smoke(synth), mode="pretrain")


# ---- a task registered from outside the package, with per-epoch hooks and state --------------------------------


@dataclass(frozen=True)
class CenterOptions:
    weight: float = 1.0


class CenterTask:
    """Self-supervised toy: pull the pooled audio features towards a centre that moves once per epoch (the shape of
    k-means pseudo-labels or an EMA teacher: state outside the model, updated by a hook, checkpointed)."""

    def __init__(self, model: nn.Module, options: CenterOptions) -> None:
        self.model = model
        self.options = options
        self.center = torch.zeros(model.num_features)
        self.calls: list[tuple[str, int]] = []
        self._epoch_feats: list[Tensor] = []

    def _features(self, batch: Batch) -> Tensor:
        x = batch["audio"]
        keep = present_mask(batch, "has_audio", x.shape[0], x.device)
        return self.model.forward_features(x).pooled[keep]

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        assert (batch["label"] == -1).all()  # self-supervised: the labels never arrive
        f = self._features(batch)
        self._epoch_feats.append(f.detach().float().mean(0))
        loss = self.options.weight * (f - self.center.to(f.device)).pow(2).mean()
        return loss, {}

    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        return {"dist": (self._features(batch) - self.center).pow(2).mean(1)}

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        return {"dist": float(outputs["dist"].mean())}

    def on_epoch_start(self, ctx: EpochContext) -> None:
        self.calls.append(("start", ctx.epoch))
        self._epoch_feats = []

    def on_epoch_end(self, ctx: EpochContext) -> None:
        self.calls.append(("end", ctx.epoch))
        self.center = torch.stack(self._epoch_feats).mean(0).cpu()
        if STOP_AFTER and ctx.epoch == STOP_AFTER[0]:  # as a scheduler would: the trainer saves after the epoch
            STOP_AFTER.clear()
            os.kill(os.getpid(), signal.SIGTERM)

    def state_dict(self) -> dict[str, Any]:
        return {"center": self.center.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.center = state["center"].clone()


BUILT: list[CenterTask] = []
STOP_AFTER: list[int] = []


@pytest.fixture
def center_task() -> Iterator[None]:
    @register_task("test_center", options=CenterOptions, supervised=False)
    def build(model: nn.Module, options: CenterOptions, data: TaskData) -> CenterTask:
        """Toy: features towards a per-epoch centre."""
        assert data.classes == ()  # a self-supervised task is told no classes
        BUILT.append(CenterTask(model, options))
        return BUILT[-1]

    BUILT.clear()
    yield
    unregister_task("test_center")


def _center_cfg(synth: Path, epochs: int) -> ExperimentConfig:
    cfg = _smoke(
        synth,
        "data.modalities=[audio]",
        f"train.epochs={epochs}",
        "train.batch_size=4",
        "train.best_metric=dist",
        "train.best_mode=min",
    )
    return replace(
        cfg, model=ModelSpec("mat_tiny", {"input_size": (32, 100)}), task=TaskSpec("test_center", {"weight": 0.5})
    )


def test_a_task_from_outside_the_package_trains_with_hooks_and_resumes_its_state(
    synth: Path, tmp_path: Path, center_task: None
) -> None:
    out = tmp_path / "run"
    res = run_experiment(_center_cfg(synth, 2), mode="pretrain", out_dir=out, console=_quiet())
    assert res.summary["stopped"] is None and "val_dist" in res.summary
    assert BUILT[-1].calls == [("start", 0), ("end", 0), ("start", 1), ("end", 1)]
    full_center = BUILT[-1].center
    assert full_center.abs().sum() > 0
    assert not (out / "classes.txt").exists()  # nothing supervised about this run

    # the same run stopped after its first epoch (SIGTERM) and started again: it resumes the hook's state
    half = tmp_path / "half"
    STOP_AFTER.append(0)
    stopped = run_experiment(_center_cfg(synth, 2), mode="pretrain", out_dir=half, console=_quiet())
    assert stopped.summary["stopped"] == "SIGTERM" and BUILT[-1].calls == [("start", 0), ("end", 0)]
    saved = load_checkpoint(half / "last.pt")["task"]["center"]
    torch.testing.assert_close(saved, BUILT[-1].center)
    run_experiment(_center_cfg(synth, 2), mode="pretrain", out_dir=half, console=_quiet())
    assert BUILT[-1].calls == [("start", 1), ("end", 1)]  # epoch 0 is not replayed
    torch.testing.assert_close(BUILT[-1].center, full_center)
    a = load_checkpoint(out / "last.pt")["model"]
    b = load_checkpoint(half / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- a fusion registered from outside the package ----------------------------------------------------------------


@dataclass(frozen=True)
class GateConfig:
    scale: float = 1.0


class GateFusion(nn.Module):
    """Toy interaction: each modality's pooled feature gains a gated projection of the other's (absent: nothing)."""

    def __init__(self, da: int, dv: int, cfg: GateConfig) -> None:
        super().__init__()
        self.v2a, self.a2v = nn.Linear(dv, da), nn.Linear(da, dv)
        self.gate = nn.Parameter(torch.zeros(()))
        self.cfg = cfg
        self.calls = 0

    def init_weights(self) -> None:
        nn.init.zeros_(self.v2a.bias)
        nn.init.zeros_(self.a2v.bias)

    def forward(
        self,
        audio_encoder: nn.Module,
        video_encoder: nn.Module,
        audio: Tensor,
        video: Tensor,
        has_audio: Tensor | None = None,
        has_video: Tensor | None = None,
        *,
        alone: bool = False,
    ) -> FusionResult:
        self.calls += 1
        fa, fv = audio_encoder.forward_features(audio), video_encoder.forward_features(video)
        g = self.cfg.scale * torch.tanh(self.gate)
        ha = (has_audio if has_audio is not None else torch.ones(audio.shape[0], dtype=torch.bool))[:, None]
        hv = (has_video if has_video is not None else torch.ones(video.shape[0], dtype=torch.bool))[:, None]
        pa = fa.pooled + torch.where(hv, g * self.v2a(fv.pooled), 0.0)
        pv = fv.pooled + torch.where(ha, g * self.a2v(fa.pooled), 0.0)
        out_a, out_v = replace(fa, pooled=pa), replace(fv, pooled=pv)
        return FusionResult(out_a, out_v, fa if alone else None, fv if alone else None, fused=(pa.mean() + pv.mean()))


@pytest.fixture
def gate_fusion() -> Iterator[None]:
    @register_fusion("test_gate", config=GateConfig)
    def build(audio_encoder: nn.Module, video_encoder: nn.Module, cfg: GateConfig) -> GateFusion:
        """Toy: gated cross-modal pooled features."""
        return GateFusion(int(audio_encoder.num_features), int(video_encoder.num_features), cfg)

    yield
    unregister_fusion("test_gate")


def test_a_fusion_from_outside_the_package_trains_through_the_composition(
    synth: Path, tmp_path: Path, gate_fusion: None
) -> None:
    cfg = _smoke(synth, "train.epochs=2", "task.options.modality_ce_weight=0.5")
    overrides = {**cfg.model.overrides, "fusion": "test_gate", "fusion_config": {"scale": 2.0}}
    cfg = replace(cfg, model=ModelSpec("mmt_tiny", overrides))
    res = run_experiment(cfg, out_dir=tmp_path / "gate", console=_quiet())
    model = res.experiment.model
    assert isinstance(model.fusion, GateFusion) and model.fusion.cfg == GateConfig(2.0)
    assert model.fusion.calls > 0 and float(model.fusion.gate.detach()) != 0.0  # it was used and trained
    assert {"val_top1", "val_audio_top1", "val_video_top1"} <= set(res.summary)
    loaded = load_run(tmp_path / "gate")  # a run of a registered fusion loads back by name
    assert isinstance(loaded.model.fusion, GateFusion)
    assert torch.equal(loaded.model.fusion.gate, model.fusion.gate.detach().cpu())
