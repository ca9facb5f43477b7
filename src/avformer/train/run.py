"""Run folders: how a trained model is stored and found again by ``eval`` and ``predict``.

A run folder (``train.out_dir``) holds ``config.yaml`` (the resolved :class:`~avformer.config.ExperimentConfig`),
``classes.txt`` (one class name a line, in logit order), ``last.pt`` and ``best.pt`` (trainer checkpoints: the
model's ``state_dict`` under ``"model"``, the EMA shadow under ``"ema"`` when EMA was on, the config under
``"config"``; ``"model_overrides"`` when the model was built from another run, such as a fine-tuned VATT, so it
can be rebuilt without that run), ``metrics.csv`` and ``train_log.csv``. :func:`load_run` takes a run folder or a
checkpoint file (whose folder must hold ``classes.txt``) and returns the model ready for inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from avformer.config import ExperimentConfig, ModelSpec, from_dict
from avformer.registry import create_model
from avformer.train.checkpoint import load_checkpoint

__all__ = ["LoadedRun", "build_model", "load_run", "read_classes", "write_classes"]

CLASSES_FILE = "classes.txt"


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    """The registered model of ``spec`` with ``num_classes`` outputs (overrides checked by the family)."""
    return create_model(spec.name, num_classes=num_classes, **dict(spec.overrides))


def write_classes(out_dir: str | Path, classes: list[str]) -> Path:
    path = Path(out_dir) / CLASSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if any("\n" in c for c in classes):
        raise ValueError("class names cannot contain newlines")
    path.write_text("".join(f"{c}\n" for c in classes))
    return path


def read_classes(run_dir: str | Path) -> list[str]:
    path = Path(run_dir) / CLASSES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a run folder written by `avformer train` holds its class names")
    return path.read_text().splitlines()


@dataclass
class LoadedRun:
    """A trained model with what is needed to feed it and read its outputs."""

    cfg: ExperimentConfig
    model: nn.Module
    classes: list[str]
    checkpoint: Path
    epoch: int | None


def load_run(path: str | Path, *, prefer: str = "best", use_ema: bool = True) -> LoadedRun:
    """Load a model from a run folder (``best.pt``, else ``last.pt``) or from a checkpoint file.

    Args:
        path: run folder or ``.pt`` file.
        prefer: ``"best"`` or ``"last"`` when ``path`` is a folder.
        use_ema: load the EMA weights when the checkpoint has them (what validation reported).

    Returns:
        The run, with the model in eval mode on the CPU.

    Raises:
        FileNotFoundError: no checkpoint or no ``classes.txt``.
        avformer.train.checkpoint.CheckpointError: an unreadable checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        order = ["best.pt", "last.pt"] if prefer == "best" else ["last.pt", "best.pt"]
        found = next((path / n for n in order if (path / n).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path}: no best.pt or last.pt (is this a run folder of `avformer train`?)")
        ckpt_path = found
    else:
        ckpt_path = path
    ckpt = load_checkpoint(ckpt_path)
    cfg = from_dict(ckpt["config"])
    classes = read_classes(ckpt_path.parent)
    standalone = ckpt.get("model_overrides")  # set for models built from another run (e.g. a fine-tuned VATT)
    spec = cfg.model if standalone is None else ModelSpec(cfg.model.name, dict(standalone))
    model = build_model(spec, len(classes))
    ema = ckpt.get("ema")
    state = ema["shadow"] if use_ema and ema else ckpt["model"]
    model.load_state_dict(state)
    model.eval()
    trainer = ckpt.get("trainer") or {}
    return LoadedRun(cfg, model, classes, ckpt_path, trainer.get("epoch"))
