"""The composition root: old-form configs mean what they meant, tasks are plug-ins with hooks and state, pretraining
runs any self-supervised task. Everything here trains through :func:`avformer.train.experiment.run_experiment`, the
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
