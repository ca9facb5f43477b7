"""Run folders: how a trained model is stored and found again by ``eval``, ``predict``, ``embed`` and fine-tuning.

A run folder (``train.out_dir``) holds ``config.yaml`` (the resolved :class:`~avformer.config.ExperimentConfig`),
``classes.txt`` (one class name a line, in logit order; absent for a self-supervised run), ``last.pt`` and
``best.pt`` (trainer checkpoints: the model's ``state_dict`` under ``"model"``, the EMA shadow under ``"ema"`` when
EMA was on, the config under ``"config"``; ``"model_overrides"`` when the model was built from another run, such as
a fine-tuned VATT, so it can be rebuilt without that run), ``metrics.csv`` and ``train_log.csv``. :func:`load_run`
takes a run folder or a checkpoint file and returns the model ready for inference.

An export folder (``avformer export``, :func:`export_run`; ``avformer convert`` writes the same) is the weights-only
form of a run: ``config.yaml`` (the resolved config, its ``model`` the spec that rebuilds the model on its own),
``classes.txt`` (absent without classes) and the weights, ``model.safetensors`` for the ``safetensors`` format (the
model's ``state_dict``: the EMA shadow when the run had one, no optimizer, RNG or trainer state; fp32, or bf16 /
fp16 when asked; ``__metadata__`` says ``format: avformer-export``, its version, the dtype and the source).
:func:`load_run` takes such a folder (or its ``model.safetensors``) wherever it takes a run folder, so ``eval``,
``predict``, ``embed`` and :func:`avformer.load` read both. Reading one never runs code: safetensors holds raw
tensors, the config is YAML read with ``safe_load``.

:data:`EXPORTERS` maps a format name to a function that writes the model file of a :class:`LoadedRun` into the
export folder (the config and classes are written once, beside it). ``torchscript`` and ``onnx`` write
``model.safetensors`` too (fp32 only), so the folder still loads eagerly, plus ``model.torchscript.pt`` or
``model.onnx`` (see :mod:`avformer.models.export_formats`), which ``predict --backend`` runs; exporting into a
folder removes another format's model file left there, so no file is older than the weights beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avformer.config import ConfigError, ExperimentConfig, ModelSpec, dump, from_dict, loads
from avformer.models.registry import create_model
from avformer.models.task_heads import strip_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.utils.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from avformer.utils.run_folder import CLASSES_FILE, read_classes, write_classes

__all__ = [
    "EXPORTERS",
    "EXPORT_DTYPES",
    "EXPORT_FORMAT",
    "EXPORT_WEIGHTS",
    "LoadedRun",
    "build_model",
    "export_run",
    "is_export",
    "load_run",
    "load_vatt_run",
    "state_dict_mismatch",
]

EXPORT_FORMAT = "avformer-export"  # __metadata__["format"] of an export's weights file
_EXPORT_VERSION = "1"
EXPORT_WEIGHTS = "model.safetensors"  # the weights file of the safetensors format
_CONFIG_FILE = "config.yaml"
_RUN_CHECKPOINTS = ("best.pt", "last.pt")
EXPORT_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    """Load a model from a run folder (``best.pt``, else ``last.pt``), a checkpoint file or an export folder.

    Args:
        path: run folder, ``.pt`` file, or export folder (or its ``model.safetensors``; see the module docstring).
        prefer: ``"best"`` or ``"last"`` when ``path`` is a run folder (an export holds one set of weights).
        use_ema: load the EMA weights when the checkpoint has them (what validation reported); an export holds
            the weights its export chose.
        require_classes: a classifier run must have ``classes.txt`` beside the checkpoint; with False a run without
            it (``avformer pretrain``) is built without ``num_classes``.

    Returns:
        The run, with the model in eval mode on the CPU.

    Raises:
        FileNotFoundError: no checkpoint, or no ``classes.txt`` when ``require_classes``.
        avformer.utils.checkpoint.CheckpointError: an unreadable checkpoint or export, or weights that do not fit
            the model.
        avformer.config.ConfigError: an export whose ``config.yaml`` is invalid.
    """
    if is_export(path):
        return _load_export(Path(path), require_classes)
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


# ---- export folders -------------------------------------------------------------------------------------------
def state_dict_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """One line naming what keeps ``state`` from loading strictly into ``model`` (missing or unexpected keys, shape
    mismatches; a few of each), or None when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]

    def few(items: list[str]) -> str:
        return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

    parts = [f"{what} {few(items)}" for what, items in (("missing", missing), ("unexpected", unexpected)) if items]
    if shapes:
        parts.append(f"shape mismatch (file vs model) {few(shapes)}")
    return "; ".join(parts) or None


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (a folder with ``model.safetensors`` and ``config.yaml`` and no run
    checkpoint) or the ``model.safetensors`` of one."""
    path = Path(path)
    if path.is_file():
        return path.name == EXPORT_WEIGHTS and (path.parent / _CONFIG_FILE).is_file()
    return (
        path.is_dir()
        and (path / EXPORT_WEIGHTS).is_file()
        and (path / _CONFIG_FILE).is_file()
        and not any((path / n).is_file() for n in _RUN_CHECKPOINTS)
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and ``__metadata__`` of a safetensors file (CheckpointError naming it when it is damaged)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        return load_file(path, device="cpu"), meta
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors weights ({' '.join(str(e).split())})") from e


def _load_export(path: Path, require_classes: bool) -> LoadedRun:
    folder = path.parent if path.is_file() else path
    weights = folder / EXPORT_WEIGHTS
    try:
        cfg = loads((folder / _CONFIG_FILE).read_text(encoding="utf-8"))
    except ConfigError as e:
        raise ConfigError(f"{folder / _CONFIG_FILE}: {e}") from e
    state, meta = _read_safetensors(weights)
    if meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{weights}: not an avformer export (its metadata has no format: {EXPORT_FORMAT})")
    has_classes = (folder / CLASSES_FILE).is_file()
    classes = read_classes(folder) if require_classes or has_classes else []
    model = build_model(cfg.model, len(classes) if classes else None)
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CheckpointError(f"{weights}: the weights do not fit model {cfg.model.name!r}: {problem}")
    model.load_state_dict(state)  # a bf16 / fp16 export is cast to the model's fp32 here
    model.eval()
    epoch = meta.get("epoch", "")
    return LoadedRun(cfg, model, classes, weights, int(epoch) if epoch.isdigit() else None, cfg.model)


Exporter = Callable[["LoadedRun", Path, torch.dtype, Mapping[str, str]], Path]


def _export_safetensors(run: LoadedRun, folder: Path, dtype: torch.dtype, metadata: Mapping[str, str]) -> Path:
    """``model.safetensors``: the model's state dict, floating tensors in ``dtype``, each tensor its own copy
    (safetensors refuses shared storage)."""
    from safetensors.torch import save_file

    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous().clone()
        for k, v in run.model.state_dict().items()
    }
    target = folder / EXPORT_WEIGHTS
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=dict(metadata))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _check_graph_export(run: LoadedRun, fmt: str, dtype: torch.dtype) -> None:
    """UsageError (one line) for what ``torchscript`` / ``onnx`` cannot export: no classes, not a classifier of
    audio and/or video (a VATT pretraining run), weights other than fp32."""
    from avformer.models.export_formats import input_names
    from avformer.utils.errors import UsageError

    if dtype != torch.float32:
        raise UsageError(f"--format {fmt} exports fp32 weights only (bf16 inference: autocast, bench predict)")
    if not run.classes:
        raise UsageError(f"{run.checkpoint}: no classes.txt; --format {fmt} exports classifiers (their logits)")
    try:
        input_names(run.model)
    except UsageError as e:
        raise UsageError(f"model {run.spec.name}: --format {fmt} is not supported ({e})") from e


def _graph_exporter(fmt: str) -> Exporter:
    """``model.safetensors`` plus the traced graph of ``fmt`` (``torchscript`` or ``onnx``); returns the latter."""

    def export(run: LoadedRun, folder: Path, dtype: torch.dtype, metadata: Mapping[str, str]) -> Path:
        from avformer.models import export_formats

        _check_graph_export(run, fmt, dtype)
        _export_safetensors(run, folder, dtype, metadata)
        writer = export_formats.write_onnx if fmt == "onnx" else export_formats.write_torchscript
        return writer(run.model, folder)

    return export


# format name -> writer of the model file (the last one written; torchscript / onnx also write model.safetensors)
EXPORTERS: dict[str, Exporter] = {
    "safetensors": _export_safetensors,
    "torchscript": _graph_exporter("torchscript"),
    "onnx": _graph_exporter("onnx"),
}
_GRAPH_FILES = ("model.torchscript.pt", "model.onnx")  # export_formats.FORMAT_FILES, removed when stale


def export_run(run: LoadedRun, out: str | Path, *, fmt: str = "safetensors", dtype: str = "fp32") -> Path:
    """Write ``run`` as an export folder ``out`` (see the module docstring); returns the weights file.

    Args:
        run: from :func:`load_run` (its model's weights are what is written: the EMA shadow when it loaded that).
        out: the folder (created); an existing export there is replaced, a run folder is refused.
        fmt: a key of :data:`EXPORTERS`.
        dtype: ``fp32``, ``bf16`` or ``fp16`` (floating tensors only; integer buffers keep their type).

    Raises:
        ValueError: an unknown format or dtype, or ``out`` holding a run's checkpoint.
        avformer.utils.errors.UsageError: a model or dtype the format cannot export (``torchscript`` / ``onnx``).
    """
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}")
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(EXPORT_DTYPES)}")
    if fmt in ("torchscript", "onnx"):
        _check_graph_export(run, fmt, EXPORT_DTYPES[dtype])  # before anything is written
    out = Path(out)
    if any((out / n).is_file() for n in _RUN_CHECKPOINTS):
        raise ValueError(f"{out}: holds a run's checkpoint; export into another folder")
    out.mkdir(parents=True, exist_ok=True)
    from avformer._version import __version__

    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": _EXPORT_VERSION,
        "avformer": __version__,
        "model": run.spec.name,
        "dtype": dtype,
        "source": run.checkpoint.name,
        "epoch": "" if run.epoch is None else str(run.epoch),
    }
    cfg = dataclasses.replace(run.cfg, model=run.spec)  # the spec that rebuilds the model without another run
    (out / _CONFIG_FILE).write_text(dump(cfg), encoding="utf-8")
    if run.classes:
        write_classes(out, run.classes)
    else:
        with contextlib.suppress(FileNotFoundError):
            (out / CLASSES_FILE).unlink()
    for name in _GRAPH_FILES:  # another format's graph would not match the weights written now
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    return EXPORTERS[fmt](run, out, EXPORT_DTYPES[dtype], metadata)
