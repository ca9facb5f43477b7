"""The composition root: one config in, data + model + task + trainer out. Every command that trains comes here.

    exp = build_experiment(cfg)              # data, model, task (nothing trained yet)
    result = run_experiment(cfg, out_dir=...)  # build_experiment + fit + classes.txt + report.md

``avformer train``, ``avformer pretrain``, ``avformer demo``, ``avformer bench train`` and ``avformer compare``
all go through :func:`build_experiment`; the CLI modules only parse arguments and print results.

What is built, in order (the initial weights depend on ``train.seed`` alone):

1. **The task** (:func:`avformer.tasks.registry.resolve_task`): ``task:`` of the config, or, for a config of the
   old form, the one the command implies (``pretrain``: ``vatt_pretrain``; ``train``: ``av_classification`` for an
   audio-visual model, ``classification`` for one encoder) with the options of its ``loss:`` section.
2. **The data** the task needs. A supervised task gets labeled manifests (or shards), the class list from
   ``classes`` or the train labels, and one loader per split; under ``torchrun`` each rank its share. A
   self-supervised task gets the training rows *without* their labels (dropped before anything reads them), full
   batches only (``drop_last``; at least one batch of 2 clips per process), their text when the task reads text
   (manifest column, sidecar file, subtitle stream), and one view per validation clip; validation keeps its labels
   (they only score retrieval).
3. **The model**: ``create_model(model.name, **overrides)`` plus what the task asks of the data (``num_classes``).
4. The **checkpoint extras**: what rebuilds a model built from another run (``model_overrides``, from the model
   registry; :func:`avformer.models.registry.standalone_overrides`).
5. With ``init_from`` (a checkpoint; a later stage of a multi-stage config), after the task has attached its heads:
   every tensor of the checkpoint's model (its EMA weights when it has them) whose name and shape the model has is
   loaded, the others stay as built (a note names them); then the task's optional
   ``from_previous_stage(state)`` hook runs (MAViL stage 2 freezes its teacher there).

A config with ``stages:`` (:class:`~avformer.config.StageSpec`) runs its stages one after the other
(:func:`run_experiment`), each in ``<out_dir>/<stage name>`` as a run of its own (resumable there), a stage with
``init: previous`` starting from the previous stage's ``last.pt``. After a training that finished, a task that can
``reconstruct`` a batch (masked autoencoders) gets its reconstruction pictures written into the run folder
(:mod:`avformer.eval.reconstruction`).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch.distributed as dist
from rich.console import Console
from torch import nn

from avformer.config import ConfigError, ExperimentConfig, TaskSpec, dump, stage_config, to_dict
from avformer.data.dataset import AVDataset, make_loader
from avformer.data.manifest import Manifest, ManifestError, read_manifest
from avformer.data.shards import ShardDataset, make_shard_loader
from avformer.data.text import with_resolved_text
from avformer.eval.reconstruction import write_reconstructions
from avformer.models.av_model import AVModel
from avformer.models.registry import create_model, standalone_overrides
from avformer.tasks.base import Task
from avformer.tasks.registry import TaskData, TaskEntry, get_task, resolve_task
from avformer.train.report import write_run_report
from avformer.train.trainer import evaluate, fit, seed_everything
from avformer.utils.checkpoint import CheckpointError, load_checkpoint
from avformer.utils.distributed import is_main
from avformer.utils.errors import UsageError
from avformer.utils.precision import resolve_precision
from avformer.utils.run_folder import write_classes
from avformer.utils.run_lock import RunLock

__all__ = [
    "Composed",
    "Experiment",
    "ExperimentData",
    "RunResult",
    "build_experiment",
    "compose",
    "load_data",
    "run_experiment",
    "strip_labels",
    "task_needs",
]

MODES = ("train", "pretrain")


@dataclass
class ExperimentData:
    """Manifests (None for shards), classes and loaders of one experiment."""

    classes: list[str]  # empty for a self-supervised task
    multilabel: bool
    train: Manifest | None
    val: Manifest | None
    train_loader: Any
    val_loader: Any | None
    notes: list[str] = dataclasses.field(default_factory=list)  # one line each, for the console and report.md


@dataclass
class Experiment:
    """Everything :func:`build_experiment` makes. ``cfg`` is the resolved config (``task:`` filled in)."""

    cfg: ExperimentConfig
    entry: TaskEntry
    data: ExperimentData
    model: nn.Module
    task: Task
    checkpoint_extras: dict[str, Any]
    notice: str | None  # a one-line note for the user (an old-form config), else None

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


@dataclass
class RunResult:
    """What :func:`run_experiment` returns."""

    out_dir: Path
    summary: dict[str, Any]
    classes: list[str]
    outputs: dict[str, Any] | None  # final validation outputs of a supervised task (logits, label, ...)
    num_params: int
    seconds: float
    report: Path | None
    text_clips: int  # training clips with text (tasks that read text), else 0
    experiment: Experiment
    stages: tuple[RunResult, ...] = ()  # a staged config: every stage's result in order (this one is the last)


def strip_labels(manifest: Manifest) -> Manifest:
    """The same rows without labels or classes: what self-supervised training may see."""
    rows = [dataclasses.replace(r, labels=()) for r in manifest]
    return dataclasses.replace(manifest, rows=rows, classes=[], multilabel=False)


# ---- data ---------------------------------------------------------------------------------------------------


def _manifest(path: str | None, what: str, root: str | None, classes: Any = None, split: str | None = None) -> Manifest:
    """The manifest at ``path``, refused (UsageError) when it has no row or none of its local files exists."""
    if path is None:
        raise UsageError(f"{what} is not set in the config (set it in the YAML or as {what}=PATH)")
    if not Path(path).is_file():
        raise UsageError(f"{what}: no such file: {path}")
    try:
        manifest = read_manifest(path, root, classes=classes, split=split)
    except ManifestError as e:
        raise UsageError(f"{what}: {e}") from e
    where = f"{what} {path}" + (f" (split {split!r})" if split else "")
    if len(manifest) == 0:
        raise UsageError(f"{where}: no rows")
    # one usable file is enough to start (stops at the first that exists; URLs count as present)
    if not any("://" in r.path or Path(r.path).is_file() for r in manifest):
        raise UsageError(
            f"{where}: none of its {len(manifest)} files exists (first: {manifest.rows[0].path}); check the "
            "paths and `root`"
        )
    return manifest


def _check_classes(classes: list[str], multilabel: bool, where: str) -> None:
    """A single-label classifier needs 2 classes or more (one class trains to a constant: CE 0, top-1 1.0)."""
    if not multilabel and len(classes) < 2:
        raise UsageError(
            f"{where}: {len(classes)} class{'es' if len(classes) != 1 else ''} ({', '.join(classes) or 'none'}); "
            "a classifier needs at least 2 (give the full class list with classes: FILE)"
        )


def _shards(
    cfg: ExperimentConfig, source: str, what: str, train: bool, classes: list[str] | None, labels: bool = True
) -> ShardDataset:
    tcfg = cfg.train
    try:
        return ShardDataset(
            source,
            cfg.data,
            train=train,
            seed=tcfg.seed,
            batch_size=tcfg.batch_size,
            shuffle_buffer=tcfg.shuffle_buffer,
            classes=classes,
            labels=labels,
            allow_urls=cfg.allow_shard_urls,
        )
    except (OSError, ValueError) as e:
        raise UsageError(f"{what}: {e}") from e


def _prepare_failures(ds: ShardDataset, what: str, source: str) -> list[str]:
    """A note naming the rows ``avformer prepare`` could not write into the shards (they are not in the data)."""
    failed = ds.prepare_failures
    if not failed:
        return []
    first = "; ".join(f"{f.get('id', f.get('path', '?'))} ({f.get('reason', '?')})" for f in failed[:3])
    return [f"{what} {source}: {len(failed)} source rows failed in `avformer prepare`, not in the shards: {first}"]


def _read_classes(path: str | None) -> list[str] | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise UsageError(f"classes: no such file: {path}")
    return [c for c in Path(path).read_text().splitlines() if c.strip()]


def _world() -> tuple[int, int]:
    return (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)


def _eval_loader(cfg: ExperimentConfig, manifest: Manifest, one_view: bool) -> Any:
    world, rank = _world()
    data_cfg = replace(cfg.data, num_test_clips=1, num_test_crops=1) if one_view else cfg.data
    ds = AVDataset(manifest, data_cfg, train=False, seed=cfg.train.seed)
    return make_loader(
        ds, batch_size=cfg.train.batch_size, shuffle=False, num_workers=cfg.train.workers,
        num_replicas=world, rank=rank, pad=False,
    )  # fmt: skip


def _train_loader(cfg: ExperimentConfig, manifest: Manifest, drop_last: bool) -> Any:
    world, rank = _world()
    tcfg = cfg.train
    return make_loader(
        AVDataset(manifest, cfg.data, train=True, seed=tcfg.seed),
        batch_size=tcfg.batch_size,
        shuffle=True,
        num_workers=tcfg.workers,
        drop_last=drop_last,
        seed=tcfg.seed,
        num_replicas=world,
        rank=rank,
    )


def _labeled_data(cfg: ExperimentConfig) -> ExperimentData:
    tcfg = cfg.train
    world, _ = _world()
    if cfg.train_shards is not None:
        train_ds = _shards(cfg, cfg.train_shards, "train_shards", True, _read_classes(cfg.classes))
        if not train_ds.classes:
            raise UsageError(f"train_shards {cfg.train_shards}: no class list (set classes: FILE)")
        classes, multilabel = list(train_ds.classes), train_ds.multilabel
        _check_classes(classes, multilabel, f"train_shards {cfg.train_shards}")
        val_loader: Any = None
        val = None
        if cfg.val_shards is not None:
            val_ds = _shards(cfg, cfg.val_shards, "val_shards", False, classes)
            val_loader = make_shard_loader(val_ds, num_workers=tcfg.workers)
        elif cfg.val_manifest:
            val = _manifest(cfg.val_manifest, "val_manifest", cfg.root, classes, cfg.val_split)
            val = replace(val, multilabel=multilabel)
            val_loader = _eval_loader(cfg, val, one_view=False)
        train_loader = make_shard_loader(train_ds, num_workers=tcfg.workers)
        notes = _prepare_failures(train_ds, "train_shards", cfg.train_shards)
        if cfg.val_shards is not None:
            notes += _prepare_failures(val_ds, "val_shards", cfg.val_shards)
        return ExperimentData(classes, multilabel, None, val, train_loader, val_loader, notes)
    if cfg.classes is not None and not Path(cfg.classes).is_file():
        raise UsageError(f"classes: no such file: {cfg.classes}")
    train = _manifest(cfg.train_manifest, "train_manifest", cfg.root, cfg.classes, cfg.train_split)
    if not train.classes:
        raise UsageError(f"train_manifest {cfg.train_manifest}: no labels (a classifier needs a label column)")
    _check_classes(list(train.classes), train.multilabel, f"train_manifest {cfg.train_manifest}")
    val = (
        _manifest(cfg.val_manifest, "val_manifest", cfg.root, train.classes, cfg.val_split)
        if cfg.val_manifest
        else None
    )
    if val is not None and val.multilabel != train.multilabel:
        if val.multilabel:
            raise UsageError(
                f"val_manifest {cfg.val_manifest} has rows with several labels, but train_manifest has one per row"
            )
        val = replace(val, multilabel=True)  # multi-label data whose val rows happen to carry one label each
    drop_last = len(train) >= 2 * tcfg.batch_size * world  # no ragged last step, unless the set is tiny
    train_loader = _train_loader(cfg, train, drop_last)
    val_loader = _eval_loader(cfg, val, one_view=False) if val is not None else None
    return ExperimentData(list(train.classes), train.multilabel, train, val, train_loader, val_loader)


def _unlabeled_data(cfg: ExperimentConfig, reads_text: bool, subtitles: bool) -> ExperimentData:
    tcfg = cfg.train
    world, _ = _world()
    need = max(2, tcfg.batch_size) * world
    val = _manifest(cfg.val_manifest, "val_manifest", cfg.root, split=cfg.val_split) if cfg.val_manifest else None
    val_loader = _eval_loader(cfg, val, one_view=True) if val is not None else None
    if cfg.train_shards is not None:
        train_ds = _shards(cfg, cfg.train_shards, "train_shards", True, [], labels=False)
        if len(train_ds) < need:
            raise UsageError(f"train_shards {cfg.train_shards}: {len(train_ds)} clips, fewer than one full batch")
        loader = make_shard_loader(train_ds, num_workers=tcfg.workers)
        notes = _prepare_failures(train_ds, "train_shards", cfg.train_shards)
        return ExperimentData([], False, None, val, loader, val_loader, notes)
    train = strip_labels(_manifest(cfg.train_manifest, "train_manifest", cfg.root, split=cfg.train_split))
    if reads_text:
        train = with_resolved_text(train, subtitles=subtitles)
    if len(train) < need:
        raise UsageError(
            f"{cfg.train_manifest}: {len(train)} clips, fewer than one batch (train.batch_size={tcfg.batch_size}"
            f" x {world} processes); contrastive pretraining needs full batches of at least 2 clips"
        )
    # contrastive batches of one size; a 1-clip batch would break BatchNorm in projection heads
    return ExperimentData([], False, train, val, _train_loader(cfg, train, drop_last=True), val_loader)


def load_data(
    cfg: ExperimentConfig, *, supervised: bool = True, reads_text: bool = False, subtitles: bool = True
) -> ExperimentData:
    """Read the manifests or shard indexes and build the loaders (see the module docstring).

    Raises:
        UsageError: a missing manifest, shard index or class file, an unreadable manifest, or too few clips.
    """
    return _labeled_data(cfg) if supervised else _unlabeled_data(cfg, reads_text, subtitles)


# ---- composition --------------------------------------------------------------------------------------------


@dataclass
class Composed:
    """The model and task of a config, without data loaders (see :func:`compose`)."""

    cfg: ExperimentConfig  # resolved: task: filled in, no legacy loss: section
    entry: TaskEntry
    model: nn.Module
    task: Task
    checkpoint_extras: dict[str, Any]
    notice: str | None  # a one-line note for the user (an old-form config), else None
    init_note: str | None = None  # what init_from loaded (a later stage of a multi-stage config), else None


def _init_from_checkpoint(model: nn.Module, task: Task, path: str | Path) -> str:
    """Load the tensors of checkpoint ``path`` that fit ``model`` (by name and shape), then run the task's
    ``from_previous_stage`` hook; returns a one-line note of what was loaded (item 5 of the module docstring)."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        raise UsageError(f"init_from: {e}") from e
    ema = ckpt.get("ema")
    state = ema["shadow"] if ema else ckpt.get("model")
    if not isinstance(state, dict):
        raise UsageError(f"init_from: {path} holds no model weights")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fits:
        raise UsageError(f"init_from: no tensor of {path} fits model {type(model).__name__} (another architecture?)")
    model.load_state_dict(fits, strict=False)
    hook = getattr(task, "from_previous_stage", None)
    if callable(hook):
        try:
            hook(fits)
        except (TypeError, ValueError) as e:
            raise UsageError(f"init_from {path}: {e}") from e
    fresh = sorted(k for k in own if k not in fits)
    unused = sorted(k for k in state if k not in fits)
    note = f"initialised from {path}: {len(fits)} of {len(own)} tensors"
    if fresh:
        note += f"; new: {', '.join(fresh[:4])}" + (f" (+{len(fresh) - 4})" if len(fresh) > 4 else "")
    if unused:
        note += f"; not used: {', '.join(unused[:4])}" + (f" (+{len(unused) - 4})" if len(unused) > 4 else "")
    return note


def _default_task(cfg: ExperimentConfig, mode: str) -> str | None:
    """The task an old-form config means when the command alone decides it (None: it follows the model)."""
    if cfg.task is not None:
        return cfg.task.name
    return "vatt_pretrain" if mode == "pretrain" else None


def task_needs(cfg: ExperimentConfig, mode: str = "train") -> tuple[bool, bool]:
    """``(supervised, reads_text)`` of the task ``cfg`` will run, known before any data is read."""
    name = _default_task(cfg, mode)
    if name is None:  # old form under `train`: classification or av_classification, both supervised
        return True, False
    try:
        entry = get_task(name)
    except ConfigError as e:
        raise UsageError(str(e)) from e
    if mode == "pretrain" and entry.supervised:
        raise UsageError(f"task {entry.name!r} is supervised: train it with `avformer train`")
    return entry.supervised, entry.reads_text


def compose(
    cfg: ExperimentConfig, data: TaskData, *, mode: str = "train", init_from: str | Path | None = None
) -> Composed:
    """Model and task of ``cfg`` for data described by ``data`` (the seeded model first, then the task; then the
    weights of ``init_from``, a checkpoint, where they fit: item 5 of the module docstring).

    Raises:
        UsageError: a bad model name or override, an unknown task or option, a task that does not fit the model.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    task_needs(cfg, mode)  # a supervised task under `pretrain` is refused here too
    name = _default_task(cfg, mode)
    kwargs = get_task(name).model_kwargs(data) if name is not None else {"num_classes": data.num_classes}
    seed_everything(cfg.train.seed)  # the initial weights depend on train.seed alone, in any process
    try:
        model = create_model(cfg.model.name, **kwargs, **dict(cfg.model.overrides))
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"model {cfg.model.name!r}: {e}") from e
    infer = name if name is not None else ("av_classification" if isinstance(model, AVModel) else "classification")
    try:
        entry, options, notice = resolve_task(cfg, lambda: infer)
    except ConfigError as e:
        raise UsageError(str(e)) from e
    try:
        task = entry.build(model, options, data)
    except (TypeError, ValueError) as e:
        raise UsageError(f"task {entry.name!r}: {e}") from e
    init_note = _init_from_checkpoint(model, task, init_from) if init_from is not None else None
    resolved = replace(cfg, task=TaskSpec(entry.name, to_dict(options)), loss=None)
    extras = {"model_overrides": standalone_overrides(cfg.model.name, dict(cfg.model.overrides))}
    return Composed(resolved, entry, model, task, extras, notice, init_note)


def build_experiment(
    cfg: ExperimentConfig, *, mode: str = "train", subtitles: bool = True, init_from: str | Path | None = None
) -> Experiment:
    """Data, model and task of ``cfg`` (see the module docstring); nothing is trained or written.

    Args:
        cfg: the experiment.
        mode: ``"train"`` (any task) or ``"pretrain"`` (self-supervised tasks only; the default task of an
            old-form config is ``vatt_pretrain``).
        subtitles: read text from the containers' subtitle streams (tasks that read text).
        init_from: a checkpoint whose fitting weights start the model (see :func:`compose`).

    Raises:
        UsageError: bad data, model name, override or task option.
    """
    supervised, reads_text = task_needs(cfg, mode)
    data = load_data(cfg, supervised=supervised, reads_text=reads_text, subtitles=subtitles)
    c = compose(cfg, TaskData.of(cfg.data, data.classes, data.multilabel), mode=mode, init_from=init_from)
    if c.init_note is not None:
        data.notes.append(c.init_note)
    return Experiment(c.cfg, c.entry, data, c.model, c.task, c.checkpoint_extras, c.notice)


def run_experiment(
    cfg: ExperimentConfig,
    *,
    mode: str = "train",
    out_dir: str | Path | None = None,
    console: Console | None = None,
    command: str | None = None,
    report: bool = True,
    subtitles: bool = True,
    init_from: str | Path | None = None,
) -> RunResult:
    """Build ``cfg`` (:func:`build_experiment`) and train it with :func:`~avformer.train.trainer.fit`; a supervised
    run also gets ``classes.txt`` (before training, so a killed run can be evaluated) and ``report.md``.

    A config with ``stages:`` runs them in order (see the module docstring) and returns the result of the last one
    (or of the one a signal stopped), whose ``stages`` holds every stage's result in order; ``out_dir`` is then the
    folder that holds the stages' folders.

    The run folder is locked (:class:`~avformer.utils.run_lock.RunLock`, rank 0) before anything is read or written
    and until the run returns: a second run on the same folder is refused.

    Raises:
        UsageError: see :func:`build_experiment`; :class:`~avformer.utils.run_lock.RunFolderBusy` when another
            process runs in the folder; a folder path that is a file.
        OSError: the folder cannot be created or written.
    """
    out = Path(out_dir if out_dir is not None else cfg.train.out_dir)
    if str(out) != cfg.train.out_dir:
        cfg = replace(cfg, train=replace(cfg.train, out_dir=str(out)))
    if cfg.stages:
        return _run_stages(cfg, out, mode, console, command, report, subtitles)
    lock = RunLock(out, command=command) if is_main() else nullcontext()
    with lock:
        return _run_locked(cfg, out, mode, console, command, report, subtitles, init_from)


def _run_stages(
    cfg: ExperimentConfig,
    out: Path,
    mode: str,
    console: Console | None,
    command: str | None,
    report: bool,
    subtitles: bool,
) -> RunResult:
    """The stages of ``cfg`` one after the other, each a run of its own in ``out/<stage name>``; ``out/stages.yaml``
    keeps the whole config."""
    configs = []
    for i, stage in enumerate(cfg.stages):  # every stage's task and options checked before anything trains
        try:
            stage_cfg = stage_config(cfg, i)
            task_needs(stage_cfg, mode)
            if stage_cfg.task is not None:
                get_task(stage_cfg.task.name).parse_options(stage_cfg.task.options)
        except (ValueError, UsageError) as e:  # ConfigError is a ValueError
            raise UsageError(f"stages[{i}] ({stage.name}): {e}") from e
        configs.append(stage_cfg)
    if is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "stages.yaml").write_text(dump(cfg))
    results: list[RunResult] = []
    previous: Path | None = None
    for i, (stage, stage_cfg) in enumerate(zip(cfg.stages, configs, strict=True)):
        folder = Path(stage_cfg.train.out_dir)
        init = previous / "last.pt" if previous is not None and stage.init == "previous" else None
        if console is not None:
            start = f" from {init}" if init is not None else ""
            console.print(f"stage {i + 1}/{len(cfg.stages)}: {stage.name} in {folder}{start}", markup=False)
        result = run_experiment(
            stage_cfg, mode=mode, out_dir=folder, console=console, command=command, report=report,
            subtitles=subtitles, init_from=init,
        )  # fmt: skip
        results.append(result)
        if result.summary.get("stopped") is not None:
            break
        previous = folder
    return replace(results[-1], stages=tuple(results))


def _run_locked(
    cfg: ExperimentConfig,
    out: Path,
    mode: str,
    console: Console | None,
    command: str | None,
    report: bool,
    subtitles: bool,
    init_from: str | Path | None = None,
) -> RunResult:
    exp = build_experiment(cfg, mode=mode, subtitles=subtitles, init_from=init_from)
    for note in ([exp.notice] if exp.notice is not None else []) + exp.data.notes:
        if console is not None:
            console.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
    supervised = exp.entry.supervised
    if supervised and is_main():
        write_classes(out, exp.data.classes)
    t0 = time.perf_counter()
    summary = fit(
        exp.task, exp.data.train_loader, exp.data.val_loader, exp.cfg, out,
        console=console, checkpoint_extras=exp.checkpoint_extras,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    if summary.get("stopped") is None and is_main() and exp.data.val_loader is not None:
        pictures = write_reconstructions(exp.task, exp.data.val_loader, out, title=exp.cfg.name)
        if pictures and console is not None:
            console.print(f"reconstructions: {', '.join(str(p) for p in pictures)}", soft_wrap=True, markup=False)
    outputs = None
    if supervised and summary.get("stopped") is None and exp.data.val_loader is not None:
        outputs = getattr(exp.task, "last_outputs", None)
        if outputs is None:  # a finished run resumed: nothing was evaluated in this process
            device = next(exp.model.parameters()).device
            precision = resolve_precision(exp.cfg.train.precision, device, warn=False).used  # as the trainer did
            evaluate(exp.task, exp.data.val_loader, device=device, precision=precision)
            outputs = getattr(exp.task, "last_outputs", None)
    path = None
    if report and supervised and is_main() and summary.get("stopped") is None:
        path = write_run_report(
            out,
            cfg=exp.cfg,
            classes=exp.data.classes,
            summary=summary,
            outputs=outputs,
            multilabel=exp.data.multilabel,
            num_params=exp.num_params,
            train_seconds=seconds,
            command=command,
            notes=exp.data.notes,
        )
    elif report and is_main() and summary.get("stopped") is None:  # self-supervised: curves, metrics, chance
        chance_fn = getattr(exp.task, "chance_losses", None)
        path = write_run_report(
            out,
            cfg=exp.cfg,
            classes=[],
            summary=summary,
            outputs=None,
            num_params=exp.num_params,
            train_seconds=seconds,
            command=command,
            notes=exp.data.notes,
            chance=chance_fn(exp.cfg.train.batch_size * _world()[0]) if chance_fn is not None else None,
        )
    train_rows = exp.data.train
    text_clips = sum(r.text is not None for r in train_rows) if train_rows is not None and exp.entry.reads_text else 0
    return RunResult(out, summary, exp.data.classes, outputs, exp.num_params, seconds, path, text_clips, exp)
