"""Run folders: how a trained model is stored and found again by ``eval``, ``predict``, ``embed`` and fine-tuning.

A run folder (``train.out_dir``) holds ``config.yaml`` (the resolved :class:`~avformer.config.ExperimentConfig`),
``classes.txt`` (one class name a line, in logit order; absent for a self-supervised run), ``last.pt`` and
``best.pt`` (trainer checkpoints: the model's ``state_dict`` under ``"model"``, the EMA shadow under ``"ema"`` when
EMA was on, the config under ``"config"``; ``"model_overrides"`` when the model was built from another run, such as
a fine-tuned VATT, so it can be rebuilt without that run), ``metrics.csv`` and ``train_log.csv``. :func:`load_run`
takes a run folder or a checkpoint file and returns the model ready for inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from avformer.config import ExperimentConfig, ModelSpec, from_dict
from avformer.models.registry import create_model
from avformer.models.task_heads import strip_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.utils.checkpoint import find_checkpoint, load_checkpoint
from avformer.utils.run_folder import CLASSES_FILE, read_classes

__all__ = ["LoadedRun", "build_model", "load_run", "load_vatt_run"]


def build_model(spec: ModelSpec, num_classes: int | None = None) -> nn.Module:
    """The registered model of ``spec``, with ``num_classes`` outputs when given (overrides checked by the family)."""
    extra = {} if num_classes is None else {"num_classes": num_classes}
    return create_model(spec.name, **extra, **dict(spec.overrides))


@dataclass
class LoadedRun:
    """A trained model with what is needed to feed it and read its outputs."""

    cfg: ExperimentConfig
    model: nn.Module
    classes: list[str]  # empty for a run without classes.txt (self-supervised pretraining)
    checkpoint: Path
    epoch: int | None
    spec: ModelSpec  # what built ``model`` (without any init_from): build_model(spec, ...) is a fresh copy

    def fresh_model(self) -> nn.Module:
        """The same architecture with new random weights (the baseline of a probe), in eval mode."""
        return build_model(self.spec, len(self.classes) if self.classes else None).eval()


def load_run(
    path: str | Path, *, prefer: str = "best", use_ema: bool = True, require_classes: bool = True
) -> LoadedRun:
    """Load a model from a run folder (``best.pt``, else ``last.pt``) or from a checkpoint file.

    Args:
        path: run folder or ``.pt`` file.
        prefer: ``"best"`` or ``"last"`` when ``path`` is a folder.
        use_ema: load the EMA weights when the checkpoint has them (what validation reported).
        require_classes: a classifier run must have ``classes.txt`` beside the checkpoint; with False a run without
            it (``avformer pretrain``) is built without ``num_classes``.

    Returns:
        The run, with the model in eval mode on the CPU.

    Raises:
        FileNotFoundError: no checkpoint, or no ``classes.txt`` when ``require_classes``.
        avformer.utils.checkpoint.CheckpointError: an unreadable checkpoint.
    """
    ckpt_path = find_checkpoint(path, prefer)
    ckpt = load_checkpoint(ckpt_path)
    cfg = from_dict(ckpt["config"])
    has_classes = (ckpt_path.parent / CLASSES_FILE).is_file()
    classes = read_classes(ckpt_path.parent) if require_classes or has_classes else []
    standalone = ckpt.get("model_overrides")  # set for models built from another run (e.g. a fine-tuned VATT)
    spec = cfg.model if standalone is None else ModelSpec(cfg.model.name, dict(standalone))
    model = build_model(spec, len(classes) if classes else None)
    ema = ckpt.get("ema")
    state = ema["shadow"] if use_ema and ema else ckpt["model"]
    model.load_state_dict(strip_task_heads(state))  # a self-supervised task's own heads are not the model's
    model.eval()
    trainer = ckpt.get("trainer") or {}
    return LoadedRun(cfg, model, classes, ckpt_path, trainer.get("epoch"), spec)


def load_vatt_run(
    path: str | Path, *, prefer: str = "best", use_ema: bool = True
) -> tuple[ExperimentConfig, VisionAudioTextTransformer, Path]:
    """A pretrained VATT from a run folder of ``avformer pretrain`` or a checkpoint: ``(config, model, checkpoint)``.

    Raises:
        FileNotFoundError: no checkpoint there. TypeError: the checkpoint is not a VATT model.
    """
    run = load_run(path, prefer=prefer, use_ema=use_ema, require_classes=False)
    if not isinstance(run.model, VisionAudioTextTransformer):
        raise TypeError(f"{run.checkpoint}: model {run.cfg.model.name!r} is not a VATT model")
    return run.cfg, run.model, run.checkpoint
