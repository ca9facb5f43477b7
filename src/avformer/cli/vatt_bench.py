"""``avformer vatt-bench``: pretrain self-supervised recipes on one budget, then probe, retrieve (and time
DropToken); one table.

    avformer vatt-bench --configs configs/experiment/av_digits_vatt_tiny.yaml \\
        configs/experiment/av_digits_vatt_ma_tiny.yaml --droptoken-ablation --out runs/vatt_bench

For every config (same data, epochs and batch: the same budget), in this process and one after the other:
``avformer pretrain`` into ``OUT/<name>/`` (resumed if already there), then the linear probe of
``avformer probe-linear`` on frozen video and audio features next to a randomly initialised encoder, and zero-shot
audio→video retrieval on val (class-relevance mAP, R@1). ``--droptoken-ablation`` adds the first config again with
``drop_token_rate=0`` (its effect on the probe). Then the DropToken step-time benchmark: training steps (forward,
backward, AdamW) of the first config's model on random inputs of the recipe's batch shape, rate 0.5 against 0.0,
alternating, median of ``--bench-steps`` each; the ratio is the headline. Writes ``OUT/results.json`` and
``OUT/table.md`` (the table of docs/numbers/vatt.md); ``--table-only`` rewrites the table from ``results.json``.
``--set k=v`` overrides apply to every config (e.g. ``train.epochs=1`` for a quick look).

Any pretraining recipe works (VATT, the masked rows of docs/numbers/masked.md, XKD, XDC, ...). A config with
``stages:`` (MAViL) gives one row per stage, each probed on its stage's folder, with the minutes of the stages up
to it (so stage 2's row shows the whole budget). Running the command again keeps the rows of the configs that
finished with the same config file and ``--set`` overrides (``results.json``) and resumes the one that was
stopped; a row whose pretraining was resumed marks its minutes with ``*`` (they count the last process only).
Two calls with different ``--configs`` may share ``--out`` (side by side, e.g. ``OMP_NUM_THREADS=1`` each): each
adds its rows to ``results.json`` under a lock and keeps the other's; the table the last one writes has all rows.

Exit status: 0 done; 2 a bad config or argument.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from avformer.cli._help import plain
from avformer.cli.probe_linear import probe
from avformer.config import ConfigError, ExperimentConfig, ModelSpec, apply_overrides, load
from avformer.data.manifest import ManifestError
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.registry import TaskData
from avformer.train.experiment import compose, run_experiment
from avformer.train.trainer import Trainer
from avformer.utils.errors import UsageError, report

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (run the calls one after the other there)
    fcntl = None  # type: ignore[assignment]

__all__ = ["droptoken_benchmark", "main", "render_table"]


def droptoken_benchmark(cfg: ExperimentConfig, *, steps: int = 10, rate: float = 0.5) -> dict[str, float]:
    """Median training-step seconds of ``cfg``'s model at DropToken ``rate`` and at 0 (alternating rounds of 2).

    Each step is :meth:`avformer.train.trainer.Trainer.train_step` of the config's pretraining task (its losses,
    optimizer, clipping) on one fixed random batch of ``train.batch_size`` clips: what pretraining runs per step,
    without the data loading.
    """
    trainers: dict[float, Trainer] = {}
    for r in (0.0, rate):
        overrides = {**dict(cfg.model.overrides), "drop_token_rate": r}
        c = replace(cfg, model=ModelSpec(cfg.model.name, overrides), train=replace(cfg.train, device="cpu"))
        composed = compose(c, TaskData.of(c.data), mode="pretrain")
        if not isinstance(composed.model, VisionAudioTextTransformer):
            raise UsageError(f"model {cfg.model.name!r} is not a VATT model")
        trainers[r] = Trainer(composed.task, composed.cfg)
    model = trainers[0.0].task.model
    assert isinstance(model, VisionAudioTextTransformer)
    vc, B = model.cfg, cfg.train.batch_size
    ones = torch.ones(B, dtype=torch.bool)
    batch = {
        "video": torch.randn(B, vc.in_chans, vc.num_frames, vc.img_size, vc.img_size),
        "audio": torch.randn(B, *vc.audio_input_shape),
        "has_video": ones,
        "has_audio": ones,
        "batch_size": B,
    }
    for t in trainers.values():  # warm-up
        t.train_step(batch)
    times: dict[float, list[float]] = {0.0: [], rate: []}
    for _ in range(max(1, steps // 2)):
        for r, t in trainers.items():
            for _ in range(2):
                t0 = time.perf_counter()
                t.train_step(batch)
                times[r].append(time.perf_counter() - t0)
    base, dropped = statistics.median(times[0.0]), statistics.median(times[rate])
    return {
        "rate": rate,
        "batch_size": float(B),
        "step_s_rate0": base,
        "step_s_dropped": dropped,
        "ratio": dropped / base,
        "threads": float(torch.get_num_threads()),
    }


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def render_table(results: dict[str, Any]) -> str:
    """Markdown of ``results.json``: one row per variant, then the DropToken timing line."""
    lines = [
        "| recipe | params | pretrain (min) | probe video: pretrained / random init | "
        "probe audio: pretrained / random init | a→v mAP | a→v R@1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results.get("rows", []):
        pr, rnd = row["probe"]["pretrained"], row["probe"].get("random_init", {})
        ret = pr.get("retrieval", {})
        cells = [
            row["label"],
            f"{row['params'] / 1e6:.2f} M",
            f"{row['pretrain_s'] / 60:.1f}{'*' if row.get('resumed') else ''}",
            f"{_fmt(pr['video']['top1'])} / {_fmt(rnd.get('video', {}).get('top1'))}",
            f"{_fmt(pr['audio']['top1'])} / {_fmt(rnd.get('audio', {}).get('top1'))}",
            _fmt(ret.get("a2v_mAP")),
            _fmt(ret.get("a2v_R@1")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    dt = results.get("droptoken")
    if dt:
        threads = int(dt["threads"])
        lines += [
            "",
            f"DropToken step time ({dt['config']}, batch {int(dt['batch_size'])}, {threads} "
            f"thread{'' if threads == 1 else 's'}, the trainer's step: losses, backward, clipping, AdamW; median): "
            f"rate {dt['rate']:g} {dt['step_s_dropped']:.3f} s vs rate 0 {dt['step_s_rate0']:.3f} s, "
            f"ratio **{dt['ratio']:.2f}**.",
        ]
    meta = results.get("meta", {})
    if meta:
        threads = f", {meta['threads']} torch threads" if "threads" in meta else ""
        lines += ["", f"Machine: {meta.get('cpus')} CPUs{threads}, load average at the end {meta.get('load')}."]
    return "\n".join(lines) + "\n"


def _store(path: Path, results: dict[str, Any], labels: set[str]) -> dict[str, Any]:
    """Write this call's rows (and other keys) into ``path`` under a lock, keeping the rows of other configs that
    are there: two calls with different ``--configs`` may share ``--out`` (e.g. one thread each, side by side).
    Returns what the file then holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / ".results.lock").open("w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else {}
        others = [r for r in old.get("rows", []) if r.get("job", r.get("label")) not in labels]
        merged = {**old, **results, "rows": others + results["rows"]}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(merged, indent=2))
        os.replace(tmp, path)
    return merged


def _bench_job(
    label: str, cfg: ExperimentConfig, out: Path, args: argparse.Namespace, console: Console, job: dict[str, Any]
) -> list[dict[str, Any]] | None:
    """Pretrain ``cfg`` into ``OUT/<name>`` and probe it: one row, or one per stage of a staged config (each
    probed on its own folder; its minutes are those of the stages up to it, the budget it used). None: a signal
    stopped the pretraining (its run folder resumes)."""
    run_dir = out / cfg.name
    resumed = any(run_dir.glob("last.pt")) or any(run_dir.glob("*/last.pt"))  # a stage's folder is <run_dir>/<name>
    console.print(f"[bold]{label}[/bold]: pretraining into {run_dir}")
    pre = run_experiment(cfg, mode="pretrain", out_dir=run_dir, console=console)
    if pre.summary.get("stopped") is not None:
        return None
    train_m = args.probe_train or cfg.train_manifest
    val_m = args.probe_val or cfg.val_manifest
    if train_m is None or val_m is None:
        raise UsageError("the probe needs labeled train and val manifests (--probe-train / --probe-val)")
    rows, seconds = [], 0.0
    for i, result in enumerate(pre.stages or (pre,)):
        seconds += result.seconds
        name = f"{label} {cfg.stages[i].name}" if cfg.stages else label
        console.print(f"probing {result.out_dir}")
        res = probe(result.out_dir, train_m, val_m, batch_size=cfg.train.batch_size, workers=cfg.train.workers)
        rows.append(
            {**job, "label": name, "config": cfg.name, "params": result.num_params, "pretrain_s": seconds,
             "resumed": resumed, "probe": res}
        )  # fmt: skip
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer vatt-bench", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", nargs="+", required=True, help="pretraining recipes (the first also gets timed)")
    p.add_argument("--out", default="runs/vatt_bench", help="output folder (one run folder per config inside)")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="key=value", help="override for all")
    p.add_argument("--droptoken-ablation", action="store_true", help="also the first config with drop_token_rate=0")
    p.add_argument("--bench-steps", type=int, default=10, help="timed steps per DropToken rate (0 = skip)")
    p.add_argument("--probe-train", help="labeled manifest for the probe (default: the config's train_manifest)")
    p.add_argument("--probe-val", help="labeled manifest for probe and retrieval (default: its val_manifest)")
    p.add_argument("--table-only", action="store_true", help="rewrite table.md from results.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    results_path = out / "results.json"
    if args.table_only:
        if not results_path.is_file():
            print(f"avformer vatt-bench: error: {results_path} does not exist", file=sys.stderr)
            return 2
        (out / "table.md").write_text(render_table(json.loads(results_path.read_text())))
        print((out / "table.md").read_text(), end="")
        return 0
    try:
        cfgs = [apply_overrides(load(c), args.set_) for c in args.configs]
        jobs: list[tuple[str, ExperimentConfig, str]] = [
            (c.name, c, f) for c, f in zip(cfgs, args.configs, strict=True)
        ]
        if args.droptoken_ablation:
            first = cfgs[0]
            spec = ModelSpec(first.model.name, {**dict(first.model.overrides), "drop_token_rate": 0.0})
            dt0 = replace(first, name=f"{first.name}_dt0", model=spec)
            jobs.append((f"{first.name} (DropToken 0)", dt0, args.configs[0]))
        previous = json.loads(results_path.read_text()) if results_path.is_file() else {}
        results: dict[str, Any] = {"rows": []}
        console = Console()
        labels = {label for label, _, _ in jobs}
        for label, cfg, source in jobs:
            job = {"job": label, "config_file": str(source), "set": list(args.set_)}
            kept = [r for r in previous.get("rows", []) if {k: r.get(k) for k in job} == job]
            if kept:  # this job finished in an earlier call with the same config and overrides: keep its rows
                console.print(f"[bold]{label}[/bold]: done before, kept from {results_path}")
                results["rows"] += kept
                continue
            rows = _bench_job(label, cfg, out, args, console, job)
            if rows is None:
                print(f"avformer vatt-bench: {label}: stopped; the same command resumes it", file=sys.stderr)
                return 1
            results["rows"] += rows
            _store(results_path, results, labels)
        if args.bench_steps > 0:
            console.print(f"DropToken step-time benchmark on {cfgs[0].name}")
            results["droptoken"] = {"config": cfgs[0].name, **droptoken_benchmark(cfgs[0], steps=args.bench_steps)}
        results["meta"] = {
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load": round(os.getloadavg()[0], 2),
        }
        merged = _store(results_path, results, labels)
    except (UsageError, ConfigError, ManifestError, FileNotFoundError) as e:
        return report("avformer vatt-bench", e)
    (out / "table.md").write_text(render_table(merged))
    print((out / "table.md").read_text(), end="")
    return 0
