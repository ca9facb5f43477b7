"""Experiment configuration: frozen, typed dataclasses loaded from YAML, with ``key=value`` overrides.

One dataclass per concern, composed into :class:`ExperimentConfig`; YAML files follow the same nesting::

    inherit: ../base.yaml          # optional: deep-merged under this file (see "Paths" below)
    name: mmt_vggsound
    model: {name: mmt_base, overrides: {num_classes: 309}}
    data: {modalities: [video, audio], video: {size: 224}}
    task: {name: av_classification, options: {avc_weight: 0.1, imc_weight: 0.1}}
    optim: {lr: 1.0e-4, weight_decay: 0.05, warmup_epochs: 2}
    train: {epochs: 30, batch_size: 16, precision: bf16}

``task`` names a registered task (:mod:`avformer.tasks.registry`) and its options, which that task reads strictly.
Configs written before tasks were named have a flat ``loss:`` section instead; it is still read (the composition
in :mod:`avformer.train.experiment` turns it into ``task:`` with a one-line notice), and is never written.

``stages`` (a list of :class:`StageSpec`) makes one file run several trainings in a row (MAViL's stage 1, then
stage 2 from its weights): each stage is the config with the stage's ``overrides`` merged over it
(:func:`stage_config`), trained in ``<train.out_dir>/<stage name>``.

Loading is strict: an unknown key is an error naming its full path and the valid keys there; values are checked
against the field annotations (nested dataclasses, ``X | None``, tuples from YAML lists; ints are accepted for
floats, and so are numeric strings such as ``1e-4``, which YAML 1.1 reads as a string). Each dataclass
validates its own values in ``__post_init__``. ``load(dump(cfg)) == cfg`` for every config.

Paths: ``inherit:`` is relative to the file that says it; when nothing is there, it is looked up in the
built-in recipe folders (``configs/experiment/``, then ``configs/``, beside ``src/``), so a recipe copied out of
``configs/experiment/`` keeps its ``inherit: ../model/mmt_base.yaml``. Every other path in a config (manifests,
``classes``, ``root``, shards, ``train.out_dir``) is relative to the working directory, as on the command line.
A file that inherits (or a stage) and names another ``task.name`` does not inherit ``task.options``: they belong to
the task.

This is the only module that reads YAML. Convert once at the CLI boundary; below it, code takes dataclasses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from avformer.data.config import DataConfig
from avformer.utils.structure import ConfigError, structure, to_dict

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "LossConfig",
    "ModelSpec",
    "OptimConfig",
    "StageSpec",
    "TaskSpec",
    "TrainConfig",
    "apply_overrides",
    "dump",
    "from_dict",
    "load",
    "loads",
    "stage_config",
    "structure",
    "to_dict",
]


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay, stepped once per optimizer step."""

    lr: float = 1e-4  # peak learning rate (reached at the end of warmup)
    weight_decay: float = 0.05  # not applied to norms, biases and the model's no_weight_decay() names
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_epochs: float = 0.0  # may be fractional
    warmup_steps: int | None = None  # optimizer steps; when set, wins over warmup_epochs
    min_lr: float = 0.0  # cosine floor
    grad_clip: float = 0.0  # max global grad norm; 0 = no clipping
    accum_steps: int = 1  # micro-batches per optimizer step
    # AdamW kernel: auto = fused where torch has it (CPU, CUDA; 3-3.5x faster steps on CPU), foreach under FSDP
    implementation: str = "auto"  # auto | fused | foreach | for_loop

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(0 <= self.min_lr <= self.lr, f"need 0 <= min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(all(0 <= b < 1 for b in self.betas), f"betas must be in [0, 1), got {self.betas}")
        _check(self.eps > 0, f"eps must be > 0, got {self.eps}")
        _check(self.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        _check(self.warmup_steps is None or self.warmup_steps >= 0, f"warmup_steps must be >= 0: {self.warmup_steps}")
        _check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        _check(self.accum_steps >= 1, f"accum_steps must be >= 1, got {self.accum_steps}")
        _check(
            self.implementation in _ADAMW_IMPLEMENTATIONS,
            f"implementation must be one of {', '.join(_ADAMW_IMPLEMENTATIONS)}, got {self.implementation!r}",
        )


_ADAMW_IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
_PRECISIONS = ("auto", "fp32", "bf16")  # avformer.utils.precision.PRECISIONS
_BEST_MODES = ("max", "min")
_STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class TrainConfig:
    """The training loop: length, batch, precision, EMA, evaluation, checkpoints and logging."""

    epochs: int = 10
    batch_size: int = 8  # per process, per micro-batch: global batch = batch_size x processes x optim.accum_steps
    steps_per_epoch: int | None = None  # cap on optimizer steps per epoch; None = the whole loader
    seed: int = 0
    # 'auto' (bf16 autocast where the device has fast bf16: CUDA Ampere+, CPUs with AMX / AVX-512 BF16; else fp32;
    # resolved when a run starts, see avformer.utils.precision) | 'fp32' | 'bf16' (autocast; on CPU too). auto is the
    # default since the bf16-vs-fp32 tables (docs/numbers/throughput.md) showed no accuracy lost beyond seed spread
    precision: str = "auto"
    ema_decay: float = 0.0  # EMA of the weights, evaluated instead of the raw weights; 0 = off
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    workers: int = 0  # DataLoader worker processes
    out_dir: str = "runs/default"
    resume: str | None = "auto"  # 'auto' = out_dir/last.pt when present; a path; None = start fresh
    log_every: int = 50  # optimizer steps between train_log.csv rows and console lines
    checkpoint_every: int = 0  # optimizer steps between mid-epoch last.pt saves; 0 = end of epoch only
    best_metric: str = "top1"  # validation metric that selects best.pt
    best_mode: str = "max"  # 'max' (accuracy, mAP) | 'min' (loss)
    device: str = "auto"  # 'auto' (cuda when available) | 'cpu' | 'cuda' | 'cuda:1' ...
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower; exact GPU repeats)
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed
    strategy: str = "ddp"  # under torchrun: 'ddp' (replicated weights) | 'fsdp' (FSDP2 fully_shard, sharded weights)
    shuffle_buffer: int = 1000  # samples in each worker's shuffle buffer when training from shards
    # parameter-name regex -> epochs those parameters stay frozen at the start (no update, no weight decay), e.g.
    # {"^audio_encoder\\.": 4}: the video tower trains alone first (our option, off by default); buffers such as
    # BatchNorm statistics of frozen modules still update in training mode
    freeze_epochs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(self.strategy in _STRATEGIES, f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}")
        _check(
            re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
            f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}",
        )
        _check(self.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        _check(
            not (self.strategy == "fsdp" and self.ema_decay > 0),
            "ema_decay > 0 is not supported with strategy=fsdp (the weights are sharded): set one of them off",
        )
        _check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch must be >= 1 or None")
        _check(self.precision in _PRECISIONS, f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        _check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        _check(self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}")
        _check(self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        _check(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        _check(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        _check(self.best_mode in _BEST_MODES, f"best_mode must be one of {_BEST_MODES}, got {self.best_mode!r}")
        _check(self.resume != "", "resume must be 'auto', a checkpoint path or null")
        for pattern, n in self.freeze_epochs.items():
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"train.freeze_epochs: bad regex {pattern!r}: {e}") from e
            _check(isinstance(n, int) and n >= 0, f"train.freeze_epochs[{pattern!r}] must be an int >= 0, got {n!r}")


def _checked_spec(kind: str, name: str, what: str, values: dict[str, Any]) -> dict[str, Any]:
    """The ``values`` of a ``kind`` ("model" / "task") spec, lists made tuples, once its registry ``name`` is
    non-empty and the keys of its ``what`` ("override" / "option") mapping are strings."""
    _check(bool(name), f"{kind} name must be a non-empty registry key")
    _check(all(isinstance(k, str) for k in values), f"{kind} {what} keys must be strings")
    return _tuplify(values)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model variant plus keyword overrides for ``create_model(name, **overrides)``.

    Override values are checked by the model family's factory, not here; YAML lists become tuples.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", _checked_spec("model", self.name, "override", self.overrides))


@dataclass(frozen=True)
class TaskSpec:
    """A registered task and its options (checked by the task's options dataclass, not here)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", _checked_spec("task", self.name, "option", self.options))


@dataclass(frozen=True)
class LossConfig:
    """The flat objective section of configs written before ``task:`` existed (read for them, never written)."""

    ce_weight: float = 1.0  # cross-entropy / BCE on the fused logits
    modality_ce_weight: float = 0.0  # CE / BCE on each modality alone (the other masked, as in eval), summed
    avc_weight: float = 0.0  # audio-video supervised contrastive
    imc_weight: float = 0.0  # intra-modal supervised contrastive
    temperature: float = 0.07  # contrastive softmax temperature
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # 0 = no mixup
    # AV tasks, our option (0 = off, as MMT): each training clip that has both streams loses one of them (audio or
    # video, even odds) with this probability, exactly as if the file lacked it, so the fused model must also
    # classify from either stream alone instead of leaning on the one that learns fastest
    modality_dropout: float = 0.0
    # self-supervised pretraining (VATT, `avformer pretrain`; ce_weight and the supervised terms are not used there)
    nce_weight: float = 1.0  # video-audio NCE
    mil_nce_weight: float = 1.0  # video-text MIL-NCE (clips without text are masked out)
    learnable_temperature: bool = False  # learn log(1/T) per space (CLIP style, capped at 100), starting at T
    max_text_segments: int = 4  # text segments (MIL-NCE positives) kept per clip

    def __post_init__(self) -> None:
        _check(self.max_text_segments >= 1, f"max_text_segments must be >= 1, got {self.max_text_segments}")
        for name in ("ce_weight", "modality_ce_weight", "avc_weight", "imc_weight", "mixup_alpha", "nce_weight",
                     "mil_nce_weight"):  # fmt: skip
            _check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        _check(0 <= self.modality_dropout <= 1, f"modality_dropout must be in [0, 1], got {self.modality_dropout}")


_STAGE_INITS = ("previous", "none")


@dataclass(frozen=True)
class StageSpec:
    """One stage of a multi-stage run (``stages:``): the config with ``overrides`` deep-merged over it.

    Each stage trains in its own run folder, ``<train.out_dir>/<name>``, and resumes there like any run. With
    ``init: previous`` the model (and the task's heads of the same name and shape) starts from the previous stage's
    final weights (its ``last.pt``; the EMA weights when it kept them); ``none`` starts fresh. The first stage always
    starts fresh. See :func:`stage_config`.
    """

    name: str  # the stage's run folder under train.out_dir
    overrides: dict[str, Any] = field(default_factory=dict)  # a partial config, e.g. {task: {...}, train: {epochs: 4}}
    init: str = "previous"  # "previous" | "none"

    def __post_init__(self) -> None:
        _check(
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name) is not None,
            f"stage name must be a folder name (letters, digits, _ . -), got {self.name!r}",
        )
        _check(self.init in _STAGE_INITS, f"stage {self.name}: init must be one of {_STAGE_INITS}, got {self.init!r}")
        _check(all(isinstance(k, str) for k in self.overrides), f"stage {self.name}: override keys must be strings")
        _check("stages" not in self.overrides, f"stage {self.name}: a stage cannot have stages of its own")
        train = self.overrides.get("train")
        _check(
            not (isinstance(train, Mapping) and "out_dir" in train),
            f"stage {self.name}: train.out_dir is set per stage (<train.out_dir>/{self.name}); leave it out",
        )
        object.__setattr__(self, "overrides", _tuplify(self.overrides))


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one run needs; written resolved to ``<out_dir>/config.yaml``."""

    name: str  # run name (also the default out_dir leaf for CLIs)
    model: ModelSpec
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    task: TaskSpec | None = None  # None: inferred from the command and model (old configs; see the module docs)
    loss: LossConfig | None = None  # old configs only: migrated into task.options by the composition
    train_manifest: str | None = None
    val_manifest: str | None = None
    # the split of a manifest file that holds several (VGGSound/Kinetics `split` column, ESC-50 folds: `fold1`,
    # `except-fold1`); None = every row
    train_split: str | None = None
    val_split: str | None = None
    root: str | None = None  # media root that relative manifest paths resolve against
    classes: str | None = None  # class order, one name a line (e.g. synth's classes.txt); None = sorted train labels
    # shards written by `avformer prepare` (a folder, its index.json, or a URL of one); used instead of the manifests
    train_shards: str | None = None
    val_shards: str | None = None
    # an index may name shards by http(s) URL anywhere (listed in the log); False = only files in the index's
    # folder (or, for an index read by URL, under that URL's folder): an index is untrusted input
    allow_shard_urls: bool = False
    # several trainings in a row from this config (e.g. MAViL stage 1 then 2): each stage is this config with its
    # overrides, trained in <train.out_dir>/<stage name>; empty = one training (see StageSpec)
    stages: tuple[StageSpec, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        _check(len(set(names)) == len(names), f"stages: stage names must differ, got {names}")
        for i in range(len(self.stages)):
            stage_config(self, i)  # a stage whose merged config is invalid is an error at load time


def stage_config(cfg: ExperimentConfig, index: int) -> ExperimentConfig:
    """The config of stage ``index`` of ``cfg``: ``cfg`` without ``stages``, the stage's overrides deep-merged over
    it (mappings key by key, anything else replaced), ``train.out_dir`` = ``<cfg.train.out_dir>/<stage name>``.

    Raises:
        ValueError: the merged config is invalid (the message names ``stages[index]`` and the key path).
    """
    stage = cfg.stages[index]
    base = to_dict(cfg)
    base["stages"] = []
    merged = _merge_config(base, stage.overrides)
    merged["train"] = {**merged["train"], "out_dir": str(Path(cfg.train.out_dir) / stage.name)}
    try:
        return from_dict(merged)
    except ConfigError as e:
        raise ValueError(f"stages[{index}] ({stage.name}).overrides: {e}") from e


def _tuplify(value: Any) -> Any:
    """Lists -> tuples, recursively (dicts are kept), so free-form values compare equal after a YAML round trip."""
    if isinstance(value, list | tuple):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuplify(v) for k, v in value.items()}
    return value


def from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a nested dict (strict; see the module docstring)."""
    return structure(ExperimentConfig, data)


# ---- YAML, inheritance, overrides ---------------------------------------------------------------------------


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``top`` replaces the value in ``base``."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        raise ConfigError(f"{path}: inheritance cycle: {' -> '.join(map(str, (*chain, path)))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file" + (f" (inherited from {chain[-1]})" if chain else "")) from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: a folder, not a config file") from e
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    parent = data.pop("inherit", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'inherit' must be a relative or absolute path string, got {parent!r}")
    return _merge_config(_read_yaml(_inherited(path, parent), (*chain, path)), data)


def _merge_config(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`_merge` of two configs, except that ``task.options`` belong to their task: when ``top`` names another
    ``task.name``, ``base``'s task options are dropped (the new task starts from its own defaults)."""
    task, base_task = top.get("task"), base.get("task")
    if (
        isinstance(task, Mapping)
        and isinstance(base_task, dict)
        and task.get("name", base_task.get("name")) != (base_task.get("name"))
    ):
        base = {**base, "task": {}}
    return _merge(base, top)


BUILTIN_CONFIGS = Path(__file__).resolve().parents[2] / "configs"  # the recipes beside src/ (a source checkout)


def _inherited(path: Path, parent: str) -> Path:
    """The file ``inherit: parent`` of ``path`` names: beside ``path``, else in the built-in recipe folders."""
    own = path.parent / parent
    if own.exists() or Path(parent).is_absolute():
        return own
    for base in (BUILTIN_CONFIGS / "experiment", BUILTIN_CONFIGS):
        candidate = (base / parent).resolve()
        if candidate.is_file() and candidate.is_relative_to(BUILTIN_CONFIGS):
            return candidate
    raise ConfigError(
        f"{path}: inherit: {parent}: no such file beside the config ({own}) nor among the built-in recipes "
        f"({BUILTIN_CONFIGS}); give a path relative to {path.parent} or an absolute one"
    )


def load(path: str | Path) -> ExperimentConfig:
    """Read a YAML experiment file (following ``inherit:``) into a validated :class:`ExperimentConfig`."""
    path = Path(path)
    data = _read_yaml(path)
    try:
        return from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def loads(text: str) -> ExperimentConfig:
    """Like :func:`load`, from YAML text (no ``inherit:``)."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(data).__name__}")
    return from_dict(data)


def dump(cfg: Any) -> str:
    """YAML text of a config dataclass, in field order; ``loads(dump(cfg)) == cfg``. An empty legacy ``loss``
    section and an empty ``stages`` list are left out."""
    data = to_dict(cfg)
    if isinstance(cfg, ExperimentConfig) and cfg.loss is None:
        del data["loss"]
    if isinstance(cfg, ExperimentConfig) and not cfg.stages:
        del data["stages"]
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _list_index(node: list[Any], part: str, item: str) -> int:
    """The index ``part`` names in a list of a config (``stages.1.overrides...``)."""
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override {item!r}: {part!r} is not an index of a list of {len(node)} item(s)")
    return int(part)


def _list_item(node: list[Any], part: str, item: str) -> Any:
    return node[_list_index(node, part, item)]


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``"dotted.key=value"`` overrides in order; values are parsed with ``yaml.safe_load``.

    A mapping value merges into the existing one (``data.video={size: 64}`` keeps the other video fields).
    ``loss.KEY=VALUE`` (the old spelling) sets ``task.options.KEY`` on a config that has a ``task:`` section.
    Free-form mappings (``model.overrides.depth=2``) accept new keys; everywhere else an unknown key is an error.
    A number indexes a list: ``stages.1.overrides.train.epochs=2`` (the second stage's epochs).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=3e-4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        data = to_dict(cfg)
        node: Any = data
        parts = key.strip().split(".")
        if parts[0] == "loss" and len(parts) > 1 and isinstance(cfg, ExperimentConfig) and cfg.task is not None:
            parts = ["task", "options", *parts[1:]]  # the old spelling of a task option, on a config of the new form
        for i, part in enumerate(parts[:-1]):
            child = _list_item(node, part, item) if isinstance(node, list) else node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])!r} is a value, not a section")
            node = child
        last = parts[-1]
        if isinstance(node, list):  # a list item replaced whole: stages.1={...}
            node[_list_index(node, last, item)] = value
        else:
            node[last] = (
                _merge(node[last], value) if isinstance(value, dict) and isinstance(node.get(last), dict) else value
            )
        try:
            cfg = from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"override {item!r}: {e}") from e
    return cfg
