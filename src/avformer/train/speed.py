"""Training throughput: clips/s of full optimizer steps, model FLOPs utilisation (MFU), and the data pipeline's share.

Behind ``avformer bench train``. Two measurements, both of :meth:`avformer.train.trainer.Trainer.train_step`: the
trainer's own step (``task.training_step`` under its autocast, ``backward``, grad clipping when configured, AdamW,
the learning-rate schedule, EMA when configured), so a benchmark times exactly what training runs:

* :func:`train_step_rate` — **model only**: one synthetic batch of the model's input size, kept on the device, so
  no data loading. Warmup steps (allocator, ``torch.compile``, cuDNN/SDPA autotuning) are not timed; the rate is
  ``batch_size / median step time``.
* :func:`loader_train_rate` — **end to end**: the same steps fed by a real DataLoader (source files or shards);
  ``clips / wall time`` over ``steps`` steps after ``warmup`` steps. Several loaders are measured in alternating
  rounds in one process, so drift on a shared machine hits them alike and their ratio is meaningful.

MFU (model FLOPs utilisation, PaLM appendix B): ``achieved model FLOP/s / device peak``. Model FLOPs of a training
step are counted as 3 × the forward FLOPs (backward ≈ 2 × forward), the forward counted with
``torch.utils.flop_counter`` on the ``meta`` device with the attention on its eager path (see
:mod:`avformer.profiling`; 2 FLOPs per multiply-add, matmuls/convs/attention only). Peaks are the dense bf16 tensor
figures of the vendor data sheets (:data:`BF16_PEAK_TFLOPS`, no 2:4 sparsity); an unknown device gives no MFU unless
a peak is passed. Re-computation (activation checkpointing) is not counted, as in the definition of MFU.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from avformer.config import ExperimentConfig
from avformer.train.trainer import Trainer
from avformer.utils.device import synchronize

__all__ = [
    "BF16_PEAK_TFLOPS",
    "StepRate",
    "device_peak_tflops",
    "loader_rate",
    "loader_train_rate",
    "synthetic_batch",
    "train_step_rate",
]

# dense bf16 tensor-core peak, TFLOP/s, from NVIDIA's data sheets; matched in order against the device name
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM
    ("H800", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
)


def device_peak_tflops(device: torch.device) -> tuple[str, float | None]:
    """``(device name, bf16 peak TFLOP/s or None)``; CPUs have no entry."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    for key, peak in BF16_PEAK_TFLOPS:
        if key in name:
            return name, peak
    return name, None


@dataclass
class StepRate:
    """Throughput of training steps."""

    clips_per_s: float
    median_step_s: float
    steps: int
    batch_size: int


def synthetic_batch(
    audio_shape: tuple[int, ...] | None,
    video_shape: tuple[int, ...] | None,
    batch_size: int,
    num_classes: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """A batch with the keys of :func:`avformer.data.collate` (``audio`` / ``video`` of the given per-clip shapes,
    ``has_*``, labels cycling over the classes so every contrastive anchor has positives)."""
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, Any] = {"batch_size": batch_size, "label": torch.arange(batch_size) % max(num_classes, 1)}
    if audio_shape is not None:
        batch["audio"] = torch.randn((batch_size, *audio_shape), generator=g)
        batch["has_audio"] = torch.ones(batch_size, dtype=torch.bool)
    if video_shape is not None:
        batch["video"] = torch.randn((batch_size, *video_shape), generator=g)
        batch["has_video"] = torch.ones(batch_size, dtype=torch.bool)
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _trainer(task: Any, cfg: ExperimentConfig, device: torch.device, precision: str) -> Trainer:
    """A :class:`Trainer` of ``task`` on ``device`` (nothing is written); a compiled model is stepped compiled."""
    compiled = task.model
    task.model = _plain(compiled)
    cfg = replace(cfg, train=replace(cfg.train, device=str(device), precision=precision))
    trainer = Trainer(task, cfg)
    trainer.model = compiled if compiled is not task.model else trainer.model
    return trainer


def _plain(model: nn.Module) -> nn.Module:
    inner = getattr(model, "_orig_mod", None)  # torch.compile
    return inner if isinstance(inner, nn.Module) else model


def train_step_rate(
    task: Any,
    batch: dict[str, Any],
    cfg: ExperimentConfig,
    *,
    device: torch.device,
    precision: str = "fp32",
    steps: int = 10,
    warmup: int = 3,
) -> StepRate:
    """Clips/s of full training steps on one fixed batch (no data loading); warmup steps are not timed."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    trainer = _trainer(task, cfg, device, precision)
    batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
    times: list[float] = []
    for i in range(warmup + steps):
        synchronize(device)
        t0 = time.perf_counter()
        trainer.train_step(batch)
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n = int(batch["batch_size"])
    return StepRate(clips_per_s=n / med, median_step_s=med, steps=steps, batch_size=n)


def _cycle(loader: Any) -> Iterator[dict[str, Any]]:
    epoch = 0
    while True:
        for obj in (getattr(loader, "dataset", None), getattr(loader, "sampler", None)):
            fn = getattr(obj, "set_epoch", None)
            if callable(fn):
                fn(epoch)
        yield from loader
        epoch += 1


def loader_train_rate(
    make_task: Callable[[], Any],
    loaders: dict[str, Any],
    cfg: ExperimentConfig,
    *,
    device: torch.device,
    precision: str = "fp32",
    steps: int = 20,
    warmup: int = 3,
    rounds: int = 2,
) -> dict[str, float]:
    """End-to-end training clips/s of each loader, measured in ``rounds`` alternating rounds of ``steps // rounds``
    steps (after ``warmup`` untimed steps per loader, which also start its workers). Each loader trains its own
    task from ``make_task()`` (same initial weights when ``make_task`` seeds). Returns clips/s per loader name."""
    if steps < rounds or rounds < 1:
        raise ValueError(f"need steps >= rounds >= 1, got steps={steps}, rounds={rounds}")
    states: dict[str, tuple[Trainer, Iterator[dict[str, Any]]]] = {}
    for name, loader in loaders.items():
        trainer, it = _trainer(make_task(), cfg, device, precision), _cycle(loader)
        for _ in range(warmup):
            trainer.train_step(_nonempty(it))
        states[name] = (trainer, it)
    clips = dict.fromkeys(loaders, 0)
    seconds = dict.fromkeys(loaders, 0.0)
    per_round = steps // rounds
    for _ in range(rounds):
        for name, (trainer, it) in states.items():
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(per_round):
                batch = _nonempty(it)
                trainer.train_step(batch)
                clips[name] += int(batch["batch_size"])
            synchronize(device)
            seconds[name] += time.perf_counter() - t0
    with contextlib.suppress(Exception):
        for _, it in states.values():
            it.close()  # type: ignore[attr-defined]
    return {name: clips[name] / max(seconds[name], 1e-9) for name in loaders}


def loader_rate(loaders: dict[str, Any], *, steps: int = 20, warmup: int = 3, rounds: int = 2) -> dict[str, float]:
    """Clips/s of each loader alone (batches fetched, nothing trained), in alternating rounds like
    :func:`loader_train_rate`: the data pipeline's own ceiling, to set against the model-only rate."""
    its = {name: _cycle(loader) for name, loader in loaders.items()}
    for it in its.values():
        for _ in range(warmup):
            _nonempty(it)
    clips = dict.fromkeys(loaders, 0)
    seconds = dict.fromkeys(loaders, 0.0)
    for _ in range(rounds):
        for name, it in its.items():
            t0 = time.perf_counter()
            for _ in range(max(steps // rounds, 1)):
                clips[name] += int(_nonempty(it)["batch_size"])
            seconds[name] += time.perf_counter() - t0
    return {name: clips[name] / max(seconds[name], 1e-9) for name in loaders}


def _nonempty(it: Iterator[dict[str, Any]], max_empty: int = 100) -> dict[str, Any]:
    """The next batch with at least one clip; gives up after ``max_empty`` empty ones (every file failing)."""
    for _ in range(max_empty):
        batch = next(it)
        if int(batch["batch_size"]) > 0:
            return batch
    raise RuntimeError(f"{max_empty} batches in a row had no loadable clip: check the data (avformer probe)")
