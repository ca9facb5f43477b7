"""Compare trained models side by side: accuracy over seeds, plus the cost of each model (``avformer compare``).

The training itself is ``avformer train`` (one run folder per config and seed, see :mod:`avformer.cli.compare`);
this module reads those folders and measures the models:

* **accuracy**: the headline validation metric (``val_<train.best_metric>``: ``top1``, or ``mAP`` for multi-label
  data) of the *last* epoch of each run, mean ± sample std (``ddof=1``) over seeds. The last epoch, not the best
  one: picking the best epoch on the validation set would flatter every model.
* **parameters** and **FLOPs per clip**: :func:`avformer.profiling.count_flops` on the meta device with one clip of
  the config's input shape (an audio-visual model: one clip of each modality; eager attention; 2 FLOPs per
  multiply-add, matmul/conv only).
* **peak training memory**: :func:`avformer.profiling.training_peak_memory` at the training batch size. On CPU this
  is an *estimate* (parameters + gradients + AdamW state + tensors saved for backward), not an RSS reading.
* **training clips/s**: the mean over epochs of the trainer's own ``clips_per_s`` (``metrics.csv``), i.e. what
  training really ran at, data loading included, on whatever else the machine was doing at the time.

:func:`format_table` writes the Markdown table and a plain-language verdict of the first config against each other.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avformer.config import ExperimentConfig
from avformer.models.loading import build_model
from avformer.profiling import count_flops, count_parameters, training_peak_memory
from avformer.utils.run_folder import read_classes

__all__ = [
    "ModelCost",
    "RunResult",
    "Summary",
    "format_table",
    "measure_cost",
    "read_run",
    "sample_shape",
    "summarize",
]


@dataclass
class RunResult:
    """One training run (one config, one seed), read back from its run folder."""

    config: str  # the config's display name
    seed: int
    out_dir: str
    metric: str  # e.g. "val_top1"
    value: float | None  # the last epoch's value; None when the run did not finish
    best_value: float | None  # the best epoch's value (reported, never used for the headline)
    epochs: int
    train_clips_per_s: float | None  # mean over epochs of metrics.csv clips_per_s
    wall_s: float | None = None  # wall time of the `avformer train` process
    returncode: int | None = None


@dataclass
class ModelCost:
    """What one model costs, measured once per config."""

    input_shape: tuple[tuple[int, ...], ...]  # one clip of each input (audio, video), without the batch dimension
    params: int
    flops_per_clip: int  # forward, 2 FLOPs per multiply-add
    train_batch_size: int
    peak_train_memory_bytes: int  # at train_batch_size
    memory_measured: bool  # False: CPU estimate
    memory_parts: dict[str, int] = field(default_factory=dict)


@dataclass
class Summary:
    """One config: its runs, the aggregate over seeds and its cost."""

    config: str
    path: str
    model: str
    runs: list[RunResult]
    cost: ModelCost | None
    metric: str
    mean: float | None = None
    std: float | None = None
    n: int = 0
    train_clips_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _float(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def read_run(out_dir: str | Path, *, config: str, seed: int, metric: str, epochs: int) -> RunResult:
    """Read ``metrics.csv`` of a run folder: the headline ``metric`` at the last epoch, and the mean clips/s.

    A run that stopped before ``epochs`` epochs, or never wrote a row, gets ``value=None``.
    """
    path = Path(out_dir) / "metrics.csv"
    rows: list[dict[str, str]] = []
    if path.is_file():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    done = len(rows)
    values = [_float(r.get(metric)) for r in rows]
    finite = [v for v in values if v is not None]
    speeds = [s for s in (_float(r.get("clips_per_s")) for r in rows) if s is not None]
    return RunResult(
        config=config,
        seed=seed,
        out_dir=str(out_dir),
        metric=metric,
        value=values[-1] if done >= epochs and values else None,
        best_value=max(finite) if finite else None,
        epochs=done,
        train_clips_per_s=statistics.fmean(speeds) if speeds else None,
    )


def sample_shape(cfg: ExperimentConfig, modality: str) -> tuple[int, ...]:
    """The per-clip input shape the data config produces for ``modality`` (``audio`` or ``video``)."""
    data = cfg.data
    if modality == "audio":
        from avformer.data.audio import AudioFeatures

        n = round(data.window_seconds * data.audio.sample_rate)
        with torch.inference_mode():
            x = AudioFeatures(data.audio).eval()(torch.zeros(n))
        return tuple(x.shape)
    if modality == "video":
        v = data.video
        return (3, v.num_frames, v.size, v.size)
    raise ValueError(f"no single input shape for modality {modality!r} (an audio-visual model takes two inputs)")


class _OneInput(nn.Module):
    """An audio-visual model seen by the one-input profilers: each row of ``x`` is a clip's audio and video,
    flattened and concatenated; ``forward`` returns the fused logits."""

    def __init__(self, model: nn.Module, audio_shape: tuple[int, ...], video_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model, self.audio_shape, self.video_shape = model, audio_shape, video_shape
        self.split = math.prod(audio_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        audio = x[:, : self.split].reshape(-1, *self.audio_shape)
        video = x[:, self.split :].reshape(-1, *self.video_shape)
        return self.model(audio, video).logits


def _one_input(model: nn.Module, shapes: tuple[tuple[int, ...], ...]) -> tuple[nn.Module, tuple[int, ...]]:
    """``model`` and its one-input sample shape: itself for one input, :class:`_OneInput` for audio + video."""
    if len(shapes) == 1:
        return model, shapes[0]
    return _OneInput(model, *shapes), (sum(math.prod(sh) for sh in shapes),)


def measure_cost(cfg: ExperimentConfig, num_classes: int) -> ModelCost:
    """Parameters, forward FLOPs per clip and peak training memory of ``cfg.model`` on its data config's input.

    An audio-visual model is measured on one clip of each modality (``input_shape`` is then the audio shape and the
    video shape, in that order).
    """
    from avformer.models.av_model import AVModel
    from avformer.tasks.inference import input_modality

    with torch.device("meta"):
        meta = build_model(cfg.model, num_classes)
    modalities = ("audio", "video") if isinstance(meta, AVModel) else (input_modality(meta),)
    shapes = tuple(sample_shape(cfg, m) for m in modalities)
    meta_in, flat = _one_input(meta, shapes)
    flops = count_flops(meta_in, torch.empty((1, *flat), device="meta"))
    model = build_model(cfg.model, num_classes)
    params, _ = count_parameters(model)
    batch = cfg.train.batch_size
    model_in, _ = _one_input(model, shapes)
    mem = training_peak_memory(model_in, torch.randn(batch, *flat))
    return ModelCost(
        input_shape=shapes,
        params=params,
        flops_per_clip=flops.forward,
        train_batch_size=batch,
        peak_train_memory_bytes=mem.peak_bytes,
        memory_measured=mem.measured,
        memory_parts=dict(mem.parts),
    )


def summarize(config: str, path: str, cfg: ExperimentConfig, runs: list[RunResult], *, cost: bool = True) -> Summary:
    """Aggregate the finished runs of one config (mean ± std over seeds) and measure the model's cost."""
    metric = f"val_{cfg.train.best_metric}"
    values = [r.value for r in runs if r.value is not None]
    speeds = [r.train_clips_per_s for r in runs if r.train_clips_per_s is not None]
    model_cost = None
    if cost and runs:
        classes = read_classes(runs[0].out_dir)
        try:
            model_cost = measure_cost(cfg, len(classes))
        except ValueError:  # a model the one- and two-input profiles cannot feed (VATT's three towers)
            model_cost = None
    return Summary(
        config=config,
        path=path,
        model=cfg.model.name,
        runs=runs,
        cost=model_cost,
        metric=metric,
        mean=statistics.fmean(values) if values else None,
        std=statistics.stdev(values) if len(values) > 1 else (0.0 if values else None),
        n=len(values),
        train_clips_per_s=statistics.fmean(speeds) if speeds else None,
    )


# ---- table ----------------------------------------------------------------------------------------------------


def _pct(metric: str) -> bool:
    return metric.endswith(("top1", "top5", "mean_class_acc"))


def _score(s: Summary) -> str:
    if s.mean is None:
        return "n/a (no finished run)"
    scale, unit = (100.0, " %") if _pct(s.metric) else (1.0, "")
    return f"{s.mean * scale:.1f} ± {(s.std or 0.0) * scale:.1f}{unit} (n={s.n})"


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def _verdict(a: Summary, b: Summary) -> str:
    """One plain sentence (plus cost ratios) comparing config ``a`` against ``b``."""
    if a.mean is None or b.mean is None:
        return f"{a.config} vs {b.config}: not comparable (a config has no finished run)."
    scale, unit = (100.0, " points") if _pct(a.metric) else (1.0, "")
    diff = (a.mean - b.mean) * scale
    noise = ((a.std or 0.0) + (b.std or 0.0)) * scale
    if diff > 0:
        how = "beat"
    elif diff < 0:
        how = "lost to"
    else:
        how = "tied with"
    clear = "more than" if abs(diff) > noise else "within"
    text = (
        f"{a.config} {how} {b.config} by {abs(diff):.1f}{unit} of {a.metric} "
        f"({a.mean * scale:.1f} vs {b.mean * scale:.1f}, mean of {a.n} and {b.n} seeds; "
        f"{clear} the sum of the two seed std's, {noise:.1f})."
    )
    if a.cost is not None and b.cost is not None:
        text += (
            f" Cost of {a.config} relative to {b.config}: parameters {_ratio(a.cost.params, b.cost.params)}, "
            f"FLOPs per clip {_ratio(a.cost.flops_per_clip, b.cost.flops_per_clip)}, "
            f"peak training memory {_ratio(a.cost.peak_train_memory_bytes, b.cost.peak_train_memory_bytes)}, "
            f"training clips/s {_ratio(a.train_clips_per_s, b.train_clips_per_s)}."
        )
    return text


def format_table(summaries: Sequence[Summary], *, command: str | None = None, notes: Sequence[str] = ()) -> str:
    """The Markdown table of ``summaries`` (one row per config) with a verdict of the first against the others."""
    if not summaries:
        return "no configs\n"
    metric = summaries[0].metric.removeprefix("val_")
    head = f"| config | model | val {metric} (mean ± std) | params | FLOPs / clip | peak train memory | train clips/s |"
    lines = [head, "|---|---|---|---:|---:|---:|---:|"]
    for s in summaries:
        c = s.cost
        params = f"{c.params / 1e6:.2f} M" if c else "n/a"
        flops = f"{c.flops_per_clip / 1e9:.3f} G" if c else "n/a"
        mem = f"{_mib(c.peak_train_memory_bytes)} (batch {c.train_batch_size})" if c else "n/a"
        speed = f"{s.train_clips_per_s:.1f}" if s.train_clips_per_s is not None else "n/a"
        lines.append(f"| {s.config} | {s.model} | {_score(s)} | {params} | {flops} | {mem} | {speed} |")
    lines.append("")
    seeds = [", ".join(f"{r.seed}: {_fmt_value(r.value, s.metric)}" for r in s.runs) for s in summaries]
    lines += [f"- {s.config} per seed: {txt}" for s, txt in zip(summaries, seeds, strict=True)]
    lines.append("")
    lines += [f"- {_verdict(summaries[0], other)}" for other in summaries[1:]]
    shapes = sorted({" + ".join("x".join(map(str, x)) for x in s.cost.input_shape) for s in summaries if s.cost})
    lines += [
        "",
        f"val {metric}: last epoch of each run (not the best epoch). FLOPs: forward, one clip"
        + (f" of {' / '.join(shapes)}" if shapes else "")
        + ", 2 per multiply-add, matmul/conv only (`avformer.profiling.count_flops`, eager attention). "
        "Peak train memory: `avformer.profiling.training_peak_memory` at the training batch size "
        + ("(CPU estimate: params + grads + AdamW state + saved activations). " if _estimated(summaries) else ". ")
        + "Train clips/s: mean over epochs of the trainer's own rate, data loading included.",
    ]
    lines += [f"- {n}" for n in notes]
    if command:
        lines += ["", "```", command, "```"]
    return "\n".join(lines) + "\n"


def _estimated(summaries: Sequence[Summary]) -> bool:
    return any(s.cost is not None and not s.cost.memory_measured for s in summaries)


def _fmt_value(v: float | None, metric: str) -> str:
    if v is None:
        return "n/a"
    return f"{v * 100:.1f}" if _pct(metric) else f"{v:.4f}"
