"""The Task protocol: the only thing the trainer knows about models and objectives.

A Task binds a model, its objectives and the batch keys they read (open_clip / scenic style). The trainer moves
the batch to the device, runs ``training_step`` under autocast and does the optimisation; it concatenates the
per-sample tensors that ``validation_step`` returns over the whole validation set and hands them to
``validation_end`` for the metrics. A new objective or model therefore never touches the loop.

Optional parts a task may have (the trainer looks for them):

* ``unused_parameters: bool``: some parameters get no gradient in some steps (DDP must look for them).
* ``on_epoch_start(ctx)`` / ``on_epoch_end(ctx)``: per-epoch hooks with an :class:`EpochContext` (the epoch, the
  device, the training loader): k-means pseudo-labels over the training set, an EMA teacher's momentum schedule.
  ``on_epoch_start`` runs after the epoch's RNG state is fixed and before its first batch (also when a run resumes
  at an epoch start, never twice for one epoch); ``on_epoch_end`` after the epoch's last step, before validation.
* ``state_dict()`` / ``load_state_dict(state)``: task state outside the model (cluster centroids, a teacher's
  weights), saved in every checkpoint under ``"task"`` and restored on resume.
* ``chance_losses(batch_size) -> {term: value}``: what each logged loss term is worth when the model has learned
  nothing (``ln B`` for a contrastive term over ``B`` candidates), for a global batch of ``batch_size`` clips;
  the trainer warns when a term's epoch mean stays within 3 % of it (:data:`CHANCE_TOLERANCE`).

Batches are the dicts of :func:`avformer.data.dataset.collate`: tensors stacked on dim 0 plus ``batch_size``
(int) and ``skipped`` (list). The trainer never passes a batch with ``batch_size == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from avformer.fusion.base import presence_mask
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.utils.distributed import world_size

__all__ = [
    "CHANCE_TOLERANCE",
    "Batch",
    "EpochContext",
    "Task",
    "at_chance",
    "av_present",
    "one_view_keys",
    "present_mask",
    "two_tower_vatt",
]

Batch = dict[str, Any]

CHANCE_TOLERANCE = 0.03  # an epoch's mean loss term within 3 % of its chance value: "learns nothing" warning


def at_chance(mean: float, chance: float) -> bool:
    """Whether a loss term's epoch mean is within :data:`CHANCE_TOLERANCE` of its (positive) chance value."""
    return chance > 0 and abs(mean - chance) <= CHANCE_TOLERANCE * chance


def present_mask(batch: Batch, key: str, n: int, device: torch.device) -> Tensor:
    """``batch[key]`` (e.g. ``has_audio``) as a bool mask on ``device``; all True when the batch has no such key."""
    return presence_mask(batch.get(key), n, device)


def av_present(batch: Batch) -> tuple[Tensor, Tensor]:
    """``(has_audio, has_video)`` of a batch with both streams: (B,) bool masks on the device of its ``audio``."""
    n, device = batch["audio"].shape[0], batch["audio"].device
    return present_mask(batch, "has_audio", n, device), present_mask(batch, "has_video", n, device)


def one_view_keys(batch: Batch, task: str) -> dict[str, Tensor]:
    """What every audio-video validation step returns besides its outputs: ``has_video``, ``has_audio`` and
    ``label`` (when the batch has one label per clip).

    Raises:
        ValueError: a multi-view test batch (the self-supervised tasks validate one view per clip).
    """
    if batch["video"].ndim == 6:  # (B, V, C, T, H, W)
        raise ValueError(f"{task} validation takes one view per clip (data.num_test_clips = num_test_crops = 1)")
    has_audio, has_video = av_present(batch)
    res = {"has_video": has_video, "has_audio": has_audio}
    label = batch.get("label")
    if isinstance(label, Tensor) and label.ndim == 1:
        res["label"] = label
    return res


def two_tower_vatt(model: nn.Module, task: str, modalities: tuple[str, ...]) -> VisionAudioTextTransformer:
    """``model`` as a VATT with one trunk per modality, for a task that trains the video and audio towers apart
    with heads of its own (:mod:`avformer.models.task_heads`). Such a task runs the towers and its heads outside
    the model's ``forward``, which DDP does not see: one process only for now.

    Raises:
        TypeError: another model, or a modality-agnostic (shared-backbone) VATT.
        ValueError: the data does not load both video and audio, or several processes (torchrun).
    """
    if world_size() > 1:
        raise ValueError(
            f"task {task} runs in one process (not under torchrun): its heads run outside the model's forward"
        )
    if not isinstance(model, VisionAudioTextTransformer) or model.cfg.shared_backbone:
        raise TypeError(
            f"task {task} needs a VATT model with one trunk per modality (e.g. vatt_tiny; `avformer models "
            f"--filter vatt`), got {model.__class__.__name__}"
            + (" (shared backbone)" if isinstance(model, VisionAudioTextTransformer) else "")
        )
    if set(modalities) != {"video", "audio"}:
        raise ValueError(f"task {task} reads video and audio: set data.modalities to [video, audio]")
    return model


@dataclass
class EpochContext:
    """What a task's per-epoch hooks see.

    Attributes:
        epoch: 0-based index of the epoch that starts or has just ended.
        epochs: the run's number of epochs.
        device: where the model and batches live.
        precision: ``"fp32"`` or ``"bf16"`` (autocast), as in training.
        train_loader: the training loader (a hook may iterate it, e.g. to embed the training set).
        step: optimizer steps done so far.
        optimizer: the trainer's optimizer (a hook that re-initialises a head clears that head's optimizer state
            too, as XDC's clustering does); None outside a trainer.
    """

    epoch: int
    epochs: int
    device: torch.device
    precision: str
    train_loader: Any
    step: int
    optimizer: Any = None


@runtime_checkable
class Task(Protocol):
    """What the trainer calls.

    Attributes:
        model: every trainable parameter the optimizer should see (the trainer moves it to the device,
            switches train/eval mode, averages it for EMA and saves its state dict).
    """

    model: nn.Module

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Loss of one batch (a scalar tensor with grad; the mean over its samples) and extra scalars to log."""
        ...

    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sample outputs to accumulate, each with the batch on dim 0 (e.g. ``logits`` (B, K), ``label`` (B,))."""
        ...

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        """Metrics from the outputs of the whole validation set (each key concatenated on dim 0, on the CPU)."""
        ...
