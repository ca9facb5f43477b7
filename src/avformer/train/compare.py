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
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avformer.config import ExperimentConfig
from avformer.models.loading import build_model
from avformer.profiling import count_flops, count_parameters, forward_flops, training_peak_memory
from avformer.utils.run_folder import read_classes

__all__ = [
    "ModelCost",
    "RunResult",
    "Summary",
    "evaluate_views",
    "format_groups",
    "format_pretrain_table",
    "format_table",
    "measure_cost",
    "modality_confusion",
    "read_probe",
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
    audio_value: float | None = None  # audio-visual runs: the last epoch's audio-only / video-only metric
    video_value: float | None = None
    confusion: float | None = None  # audio-visual runs: see evaluate_views
    groups: dict[str, dict[str, float]] | None = None  # group -> view -> top-1 (``--by``)
    probe: dict[str, float] = field(default_factory=dict)  # self-supervised runs: probe.json's top-1s (read_probe)
    extras: dict[str, float] = field(default_factory=dict)  # the last epoch's val metrics asked for (read_run)


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
    fusion_flops_per_clip: int | None = None  # audio-visual models: forward FLOPs beyond the two encoders run alone


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
    audio: tuple[float, float] | None = None  # (mean, std) over seeds of the audio-only metric
    video: tuple[float, float] | None = None
    confusion: tuple[float, float] | None = None
    wall_s: float | None = None  # mean over seeds
    groups: dict[str, dict[str, float]] | None = None  # group -> view -> top-1, mean over seeds
    probe: dict[str, tuple[float, float]] = field(default_factory=dict)  # (mean, std) over seeds
    extras: dict[str, tuple[float, float]] = field(default_factory=dict)
    task: str = ""  # the config's task name ("" for the old form without task:)

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


def read_probe(out_dir: str | Path) -> dict[str, float]:
    """The linear-probe top-1s of ``probe.json`` (``avformer probe-linear --json``) in a run folder: ``video``,
    ``audio`` (pretrained) and ``video_random``, ``audio_random`` (random init); empty without the file."""
    path = Path(out_dir) / "probe.json"
    if not path.is_file():
        return {}
    res = json.loads(path.read_text())
    out: dict[str, float] = {}
    for kind, suffix in (("pretrained", ""), ("random_init", "_random")):
        for m in ("video", "audio"):
            v = _float(str(res.get(kind, {}).get(m, {}).get("top1", "")))
            if v is not None:
                out[m + suffix] = v
    return out


def read_run(
    out_dir: str | Path, *, config: str, seed: int, metric: str, epochs: int, extras: Sequence[str] = ()
) -> RunResult:
    """Read ``metrics.csv`` of a run folder: the headline ``metric`` at the last epoch, and the mean clips/s;
    ``extras`` (val metric names without ``val_``) from the last epoch, and the probe of :func:`read_probe`.

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
    finished = done >= epochs and bool(values)
    view = {m: _float(rows[-1].get(f"val_{m}_top1")) if finished else None for m in ("audio", "video")}
    return RunResult(
        config=config,
        seed=seed,
        out_dir=str(out_dir),
        metric=metric,
        value=values[-1] if finished else None,
        best_value=max(finite) if finite else None,
        epochs=done,
        train_clips_per_s=statistics.fmean(speeds) if speeds else None,
        audio_value=view["audio"],
        video_value=view["video"],
        probe=read_probe(out_dir) if finished else {},
        extras={k: v for k in extras if finished and (v := _float(rows[-1].get(f"val_{k}"))) is not None},
    )


def modality_confusion(rows: Sequence[Mapping[str, Any]]) -> float:
    """The fraction of clips that a single-modality view classified right and the fused view got wrong (VGGSounder's
    modality confusion, Zverev et al. 2025): what fusing cost. Rows are :class:`~avformer.eval.report.EvalResult`
    rows (``label``, ``fused_pred``, ``audio_pred``, ``video_pred``; an empty prediction = the stream is absent)."""
    if not rows:
        return math.nan
    lost = sum(
        1 for r in rows if r["fused_pred"] != r["label"] and r["label"] in (r.get("audio_pred"), r.get("video_pred"))
    )
    return lost / len(rows)


def evaluate_views(run_dir: str | Path, cfg: ExperimentConfig, by: str | None = None) -> dict[str, Any]:
    """Modality confusion (and top-1 per group of ``by`` = ``CSV:COLUMN``) of a finished audio-visual run on its
    validation manifest, from the last checkpoint; cached in ``run_dir/compare_eval.json`` until ``last.pt``
    changes."""
    from avformer.data.manifest import read_manifest
    from avformer.eval.report import evaluate, group_accuracy, read_groups
    from avformer.models.loading import load_run

    run_dir = Path(run_dir)
    ckpt = run_dir / "last.pt"
    cache = run_dir / "compare_eval.json"
    stamp = [ckpt.stat().st_mtime_ns, by]
    if cache.is_file():
        old = json.loads(cache.read_text())
        if old.get("stamp") == stamp:
            return dict(old["result"])
    run = load_run(ckpt)
    if cfg.val_manifest is None:
        raise ValueError("the config has no val_manifest")
    manifest = read_manifest(cfg.val_manifest, root=cfg.root, classes=run.classes)
    res = evaluate(run, manifest, run.cfg.data, batch_size=cfg.train.batch_size)
    out: dict[str, Any] = {"confusion": modality_confusion(res.rows)}
    if by:
        _, groups = read_groups(by)
        out["groups"] = {g: {k: float(v) for k, v in d.items()} for g, d in group_accuracy(res, groups).items()}
    cache.write_text(json.dumps({"stamp": stamp, "result": out}))
    return out


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


class _Features(nn.Module):
    """An audio-visual model up to its fused features (encoders and fusion, no head)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> Any:
        return self.model.forward_features(audio, video)


class _Encoders(_Features):
    """The two encoders of an audio-visual model, each alone."""

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> Any:
        return self.model.audio_encoder.forward_features(audio), self.model.video_encoder.forward_features(video)


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
    fusion_flops = None
    if isinstance(meta, AVModel):
        clip = tuple(torch.empty((1, *sh), device="meta") for sh in shapes)
        fusion_flops = forward_flops(_Features(meta), clip) - forward_flops(_Encoders(meta), clip)
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
        fusion_flops_per_clip=fusion_flops,
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
    walls = [r.wall_s for r in runs if r.wall_s is not None]
    return Summary(
        config=config,
        path=path,
        model=cfg.model.name,
        runs=runs,
        cost=model_cost,
        metric=metric,
        task=cfg.task.name if cfg.task is not None else "",
        mean=statistics.fmean(values) if values else None,
        std=_std(values) if values else None,
        n=len(values),
        train_clips_per_s=statistics.fmean(speeds) if speeds else None,
        audio=_mean_std([r.audio_value for r in runs]),
        video=_mean_std([r.video_value for r in runs]),
        confusion=_mean_std([r.confusion for r in runs]),
        wall_s=statistics.fmean(walls) if walls else None,
        groups=_mean_groups([r.groups for r in runs if r.groups]),
        probe=_mean_std_keys([r.probe for r in runs]),
        extras=_mean_std_keys([r.extras for r in runs]),
    )


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return (statistics.fmean(vals), _std(vals)) if vals else None


def _mean_std_keys(per_run: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Key -> (mean, std) over the runs that have it."""
    keys = sorted({k for r in per_run for k in r})
    out = {k: _mean_std([r.get(k) for r in per_run]) for k in keys}
    return {k: v for k, v in out.items() if v is not None}


def _mean_groups(per_run: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]] | None:
    """Group -> view -> the mean over runs (``n`` stays the clip count)."""
    if not per_run:
        return None
    out: dict[str, dict[str, float]] = {}
    for g in per_run[0]:
        keys = per_run[0][g]
        out[g] = {k: statistics.fmean(r[g][k] for r in per_run if g in r) for k in keys}
    return out


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


def _pair(v: tuple[float, float] | None, metric: str) -> str:
    if v is None:
        return "n/a"
    if _pct(metric):
        return f"{v[0] * 100:.1f} ± {v[1] * 100:.1f}"
    return f"{v[0]:.3f} ± {v[1]:.3f}"


def _cells(s: Summary, av: bool) -> list[str]:
    """The cells of one config's row."""
    c = s.cost
    params = f"{c.params / 1e6:.2f} M" if c else "n/a"
    flops = f"{c.flops_per_clip / 1e9:.3f} G" if c else "n/a"
    mem = f"{_mib(c.peak_train_memory_bytes)} (batch {c.train_batch_size})" if c else "n/a"
    speed = f"{s.train_clips_per_s:.1f}" if s.train_clips_per_s is not None else "n/a"
    if not av:
        return [s.config, s.model, _score(s), params, flops, mem, speed]
    fusion = f"{c.fusion_flops_per_clip / 1e6:.1f} M" if c and c.fusion_flops_per_clip is not None else "n/a"
    wall = f"{s.wall_s / 60:.1f} min" if s.wall_s is not None else "n/a"
    views = [_pair(s.audio, s.metric), _pair(s.video, s.metric), _pair(s.confusion, "top1")]
    return [s.config, s.model, _score(s), *views, params, fusion, flops, mem, speed, wall]


def format_groups(summaries: Sequence[Summary], column: str) -> list[str]:
    """Top-1 per group (e.g. per ``condition`` of ``val_meta.csv``), fused / audio-only / video-only, mean over
    seeds: one row per config and group."""
    rows = [s for s in summaries if s.groups]
    if not rows:
        return []
    lines = [f"| config | {column} | clips | fused | audio-only | video-only |", "|---|---|---:|---:|---:|---:|"]
    for s in rows:
        assert s.groups is not None
        for g, d in s.groups.items():
            cells = [
                f"{d[v] * 100:.1f}" if v in d and math.isfinite(d[v]) else "n/a" for v in ("fused", "audio", "video")
            ]
            lines.append(f"| {s.config} | {g} | {int(d.get('n', 0))} | " + " | ".join(cells) + " |")
    return ["", f"Top-1 by {column} (val, last checkpoint, mean over seeds):", "", *lines]


def format_table(
    summaries: Sequence[Summary], *, command: str | None = None, notes: Sequence[str] = (), by: str | None = None
) -> str:
    """The Markdown table of ``summaries`` (one row per config) with a verdict of the first against the others.

    Audio-visual runs (``val_audio_top1`` in their metrics) get audio-only, video-only, modality-confusion, fusion
    FLOPs and wall-time columns, and, with ``by`` (the ``CSV:COLUMN`` the runs were grouped by), a per-group table.
    """
    if not summaries:
        return "no configs\n"
    metric = summaries[0].metric.removeprefix("val_")
    av = any(s.audio is not None for s in summaries)
    if av:
        head = (
            f"| config | model | val {metric} fused (mean ± std) | audio-only | video-only | modality confusion | "
            "params | fusion FLOPs / clip | FLOPs / clip | peak train memory | train clips/s | wall / run |"
        )
        rule = "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    else:
        head = (
            f"| config | model | val {metric} (mean ± std) | params | FLOPs / clip | peak train memory | "
            "train clips/s |"
        )
        rule = "|---|---|---|---:|---:|---:|---:|"
    lines = [head, rule] + ["| " + " | ".join(_cells(s, av)) + " |" for s in summaries]
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
    if av:
        lines.append(
            "Audio-only / video-only: the same model with the other stream masked for every clip. Modality confusion: "
            "the fraction of val clips that the audio-only or the video-only view got right and the fused view got "
            "wrong (VGGSounder, Zverev et al. 2025), from the last checkpoint. Fusion FLOPs: the forward FLOPs of "
            "the encoders plus fusion minus those of the two encoders run alone (0 for late fusion; for bottleneck "
            "fusion only what the bottleneck tokens add, as its fused blocks are the encoders' own)."
        )
    lines += [f"- {n}" for n in notes]
    if by:
        lines += format_groups(summaries, by.rpartition(":")[2])
    if command:
        lines += ["", "```", command, "```"]
    return "\n".join(lines) + "\n"


def format_pretrain_table(
    summaries: Sequence[Summary],
    *,
    columns: Sequence[str] = (),
    command: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The Markdown table of self-supervised configs: linear-probe top-1 (pretrained / random init) per modality,
    the last epoch's val ``a2v_mAP`` and ``columns``, wall time; mean ± std over seeds (the value alone for one)."""
    cols = ["a2v_mAP", *(c for c in columns if c != "a2v_mAP")]
    head = "| config | task | video probe | (random init) | audio probe | (random init) | "
    head += " | ".join(f"val {c}" for c in cols) + " | wall / run |"
    lines = [head, "|---|---|" + "---:|" * (4 + len(cols) + 1)]
    for s in summaries:
        one = sum(bool(r.probe or r.extras) for r in s.runs) <= 1  # one seed: no spread to show

        def cell(v: tuple[float, float] | None, metric: str, one: bool = one) -> str:
            return _pair(v, metric) if not one or v is None else _fmt_value(v[0], metric)

        probe = [cell(s.probe.get(k), "top1") for k in ("video", "video_random", "audio", "audio_random")]
        extras = [cell(s.extras.get(c), c) for c in cols]
        wall = f"{s.wall_s / 60:.1f} min" if s.wall_s is not None else "n/a"
        lines.append("| " + " | ".join([s.config, s.task, *probe, *extras, wall]) + " |")
    lines.append("")
    for s in summaries:
        per_seed = ", ".join(
            f"{r.seed}: video {_fmt_value(r.probe.get('video'), 'top1')} / "
            f"audio {_fmt_value(r.probe.get('audio'), 'top1')}"
            for r in s.runs
        )
        lines.append(f"- {s.config} per seed (probe top-1): {per_seed}")
    lines += [
        "",
        "Probe: `avformer probe-linear` on each run's last.pt (frozen pooled features of one centre window per clip, "
        "multinomial logistic regression, L2 strength chosen on a held-out fifth of train), val top-1 in %; random "
        "init: the same probe on a freshly initialised encoder of the same architecture. val metrics: the last "
        "epoch's row of metrics.csv (a2v_mAP: audio->video class-relevance mAP in the task's own joint space; n/a "
        "where the task learns none). Wall: the pretraining process.",
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
    return f"{v * 100:.1f}" if _pct(metric) else f"{v:.3f}"
