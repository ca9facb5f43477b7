"""Training-throughput helpers behind ``avformer bench train``: FLOPs, peaks, step and loader rates (CPU)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from avformer.config import ExperimentConfig, ModelSpec, OptimConfig
from avformer.models.registry import create_model
from avformer.profiling import count_flops, forward_flops
from avformer.tasks.classification import ClassificationOptions, ClassificationTask
from avformer.train.speed import (
    BF16_PEAK_TFLOPS,
    device_peak_tflops,
    loader_train_rate,
    synthetic_batch,
    train_step_rate,
)

SPEC = ModelSpec("mat_tiny", {"input_size": (32, 100)})


def test_peak_table_and_cpu() -> None:
    assert device_peak_tflops(torch.device("cpu")) == ("cpu", None)
    names = [k for k, _ in BF16_PEAK_TFLOPS]
    # a more specific name must come before a name it contains ("H100 PCIe" before "H100", "A10G" before "A10")
    for i, a in enumerate(names):
        assert not any(a in b for b in names[i + 1 :]), a


def test_forward_flops_match_the_profiler_on_meta() -> None:
    with torch.device("meta"):
        model = create_model("mat_tiny", num_classes=5, input_size=(32, 100))
        x = torch.randn(2, 1, 32, 100)
    assert forward_flops(model, (x,)) == count_flops(model, x).forward > 0


def _task() -> Any:
    torch.manual_seed(0)
    model = create_model("mat_tiny", num_classes=5, input_size=(32, 100))
    return ClassificationTask(model, ClassificationOptions(), num_classes=5)


def test_train_step_rate_takes_optimizer_steps() -> None:
    task = _task()
    before = [p.detach().clone() for p in task.model.parameters()]
    batch = synthetic_batch((1, 32, 100), None, 4, 5)
    cfg = ExperimentConfig(name="t", model=SPEC, optim=OptimConfig(lr=1e-3))
    rate = train_step_rate(task, batch, cfg, device=torch.device("cpu"), steps=2, warmup=1)
    assert rate.clips_per_s > 0 and rate.batch_size == 4 and rate.steps == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.parameters(), strict=True))
    with pytest.raises(ValueError):
        train_step_rate(task, batch, cfg, device=torch.device("cpu"), steps=0)


def test_loader_train_rate_alternates_loaders() -> None:
    batches = [synthetic_batch((1, 32, 100), None, 4, 5, seed=i) for i in range(3)]
    empty = {"batch_size": 0, "skipped": []}
    rates = loader_train_rate(
        _task,
        {"a": batches, "b": [empty, *batches]},
        ExperimentConfig(name="t", model=SPEC),
        device=torch.device("cpu"),
        steps=4,
        warmup=1,
    )
    assert set(rates) == {"a", "b"} and all(v > 0 for v in rates.values())


def test_the_benchmark_steps_are_the_trainers_steps() -> None:
    """``train_step_rate`` times Trainer.train_step: from the same weights, its steps give the weights of the
    trainer's own steps on those batches (one loop, not a second copy of it)."""
    from avformer.train.trainer import Trainer

    batch = synthetic_batch((1, 32, 100), None, 4, 5)
    cfg = ExperimentConfig(name="t", model=SPEC, optim=OptimConfig(lr=1e-3, grad_clip=1.0))
    bench = _task()
    train_step_rate(bench, batch, cfg, device=torch.device("cpu"), steps=2, warmup=0)
    own = _task()
    trainer = Trainer(own, cfg)
    for _ in range(2):
        trainer.train_step(batch)
    for a, b in zip(bench.model.parameters(), own.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_nonempty_gives_up_when_every_batch_is_empty() -> None:
    """Regression: a data set whose every file fails made `bench train` loop forever."""
    from avformer.train.speed import _nonempty

    empty = iter([{"batch_size": 0}] * 5 + [{"batch_size": 2}])
    assert _nonempty(empty, max_empty=6)["batch_size"] == 2
    with pytest.raises(RuntimeError, match="no loadable clip"):
        _nonempty(iter([{"batch_size": 0}] * 5), max_empty=3)
