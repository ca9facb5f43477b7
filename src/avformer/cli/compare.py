"""``avformer compare``: train several configs with several seeds each, then write one comparison table.

    avformer compare --configs configs/experiment/speech_commands_mat_tiny.yaml \\
        configs/experiment/speech_commands_ast_tiny.yaml --seeds 0 1 2 --out runs/sc_compare --jobs 2 --threads 1

Each (config, seed) is one ``avformer train`` process (``OMP_NUM_THREADS=--threads``) writing the run folder
``OUT/<config name>/seed<S>``, with ``train.seed=S`` and the ``--set`` overrides; ``--jobs`` processes run at a time,
seeds interleaved across configs (with two configs and ``--jobs 2`` each pair of concurrent runs is one run of each
config, so both see the same machine load). The console output of a run goes to ``<run folder>/train.out``.

Then, in this process, each config's model is measured once (:mod:`avformer.train.compare`: parameters, FLOPs per
clip, peak training memory at the training batch size) and ``OUT/table.md`` and ``OUT/results.json`` are written:
the last-epoch validation metric (mean ± std over seeds), the costs, the training clips/s the runs achieved, the
wall time and the machine's load average while training (other people's jobs slow a shared machine down).

A self-supervised config (its task is not supervised, e.g. ``vatt_pretrain``, ``xdc``, ``crisscross``) runs
``avformer pretrain`` instead and, with ``--probe TRAIN VAL``, then ``avformer probe-linear`` on the run's
``last.pt`` (``<run folder>/probe.json``); its table lists the video and audio linear-probe top-1 (pretrained /
random init), the last epoch's val ``a2v_mAP`` and the val metrics named by ``--columns`` (e.g. ``nmi_video``).

Running the same command again resumes unfinished runs (``train.resume: auto``) and leaves finished ones (all
epochs in ``metrics.csv``) as they are, so adding a seed trains only that seed;
``--table-only`` only re-reads the run folders and rewrites the table.

Exit status: 0 every run finished; 1 a run failed (the table is still written from the others); 2 bad arguments or a
config that does not load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avformer.cli._help import plain

__all__ = ["main"]


_PROBE_FILE = "probe.json"


@dataclass
class _Job:
    name: str  # config display name
    path: str  # config file
    seed: int
    out_dir: Path
    epochs: int  # train.epochs of the config (with the --set overrides)
    pretrain: bool = False  # a self-supervised task: `avformer pretrain`, then the probe
    probe: tuple[str, str] | None = None  # (train, val) manifests of the linear probe

    def trained(self) -> bool:
        """All epochs are in ``metrics.csv`` and ``last.pt`` exists: nothing left to train."""
        metrics = self.out_dir / "metrics.csv"
        if not (metrics.is_file() and (self.out_dir / "last.pt").is_file()):
            return False
        with metrics.open(newline="") as f:
            return sum(1 for _ in f) - 1 >= self.epochs  # rows after the header

    def probed(self) -> bool:
        """No probe asked, or ``probe.json`` is newer than ``last.pt``."""
        if not (self.pretrain and self.probe):
            return True
        out, ckpt = self.out_dir / _PROBE_FILE, self.out_dir / "last.pt"
        return out.is_file() and ckpt.is_file() and out.stat().st_mtime_ns >= ckpt.stat().st_mtime_ns

    def finished(self) -> bool:
        return self.trained() and self.probed()

    def commands(self, overrides: list[str]) -> list[tuple[str, list[str]]]:
        """``(kind, argv)`` of what is left to run: training (``train`` / ``pretrain``), then the probe."""
        cmds: list[tuple[str, list[str]]] = []
        if not self.trained():
            command = "pretrain" if self.pretrain else "train"
            argv = [sys.executable, "-m", "avformer", command, "--config", self.path, "--out", str(self.out_dir)]
            cmds.append(("train", [*argv, f"train.seed={self.seed}", *overrides]))
        if self.pretrain and self.probe and (cmds or not self.probed()):
            argv = [sys.executable, "-m", "avformer", "probe-linear", str(self.out_dir / "last.pt")]
            argv += ["--train", self.probe[0], "--val", self.probe[1], "--json", str(self.out_dir / _PROBE_FILE)]
            cmds.append(("probe", argv))
        return cmds


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer compare", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", nargs="+", required=True, metavar="YAML", help="experiment configs to compare")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S", help="train.seed values (0 1 2)")
    p.add_argument("--out", required=True, help="output folder: run folders, table.md, results.json")
    p.add_argument("--jobs", type=int, default=1, help="training processes at a time (default 1)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS / torch threads per process (default 1)")
    p.add_argument("--set", dest="set_", action="append", default=[], metavar="key=value", help="override, all runs")
    p.add_argument("--table-only", action="store_true", help="do not train: read the run folders, write the table")
    p.add_argument(
        "--probe",
        nargs=2,
        default=None,
        metavar=("TRAIN", "VAL"),
        help="self-supervised configs: linear-probe each run's last.pt on these labeled manifests (probe-linear)",
    )
    p.add_argument(
        "--columns",
        nargs="+",
        default=[],
        metavar="METRIC",
        help="self-supervised configs: also these val metrics of the last epoch (e.g. nmi_video embed_std_video)",
    )
    p.add_argument(
        "--by",
        default=None,
        metavar="CSV:COLUMN",
        help="audio-visual runs: also top-1 per group of COLUMN of a CSV keyed by the val manifest's path/id "
        "(e.g. ../shared/data/av-digits/val_meta.csv:condition), a second table",
    )
    return p


def _names(paths: list[str], cfgs: list[Any]) -> list[str]:
    """Display names: each config's ``name``; the file stem where two configs share a name."""
    names = [c.name for c in cfgs]
    if len(set(names)) < len(names):
        names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{n}_{i}" for i, n in enumerate(names)]
    return names


class _LoadSampler:
    """Samples the 1-minute load average every ``every`` seconds in a background thread."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(OSError):  # not available on every platform
            self.samples.append(os.getloadavg()[0])

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> _LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        return {
            "mean": sum(self.samples) / len(self.samples),
            "max": max(self.samples),
            "samples": len(self.samples),
        }


_WALL_FILE = "wall_s.txt"  # the wall time of a run's last `avformer train` process, for --table-only


def _recorded_wall(run_dir: Path) -> float | None:
    try:
        return float((run_dir / _WALL_FILE).read_text())
    except (OSError, ValueError):
        return None


def _stop_on_sigterm() -> None:
    """SIGTERM ends ``compare`` like Ctrl-C: its running children are stopped (they save and resume), not orphaned."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def _run_jobs(jobs: list[_Job], overrides: list[str], n_parallel: int, threads: int) -> dict[tuple[str, int], Any]:
    """Run what each job still needs (training, then its probe), ``n_parallel`` jobs at a time; returns
    ``{(name, seed): (rc, training wall_s)}`` for the jobs that trained here."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    pending = [j for j in jobs if not j.finished()]
    for job in jobs:
        if job not in pending:
            print(f"done   {job.name} seed {job.seed} (already finished in {job.out_dir})", flush=True)
    queues = {id(j): j.commands(overrides) for j in pending}
    running: list[tuple[_Job, str, subprocess.Popen[bytes], float, Any]] = []
    done: dict[tuple[str, int], Any] = {}

    def start(job: _Job) -> None:
        kind, cmd = queues[id(job)].pop(0)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        log = (job.out_dir / "train.out").open("ab")
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        print(f"start  {job.name} seed {job.seed} {kind} -> {job.out_dir}", flush=True)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        running.append((job, kind, proc, time.perf_counter(), log))

    try:
        while pending or running:
            while pending and len(running) < n_parallel:
                start(pending.pop(0))
            time.sleep(0.2)
            for item in list(running):
                job, kind, proc, t0, log = item
                rc = proc.poll()
                if rc is None:
                    continue
                wall = time.perf_counter() - t0
                log.close()
                running.remove(item)
                if kind == "train":
                    done[(job.name, job.seed)] = (rc, wall)
                    if rc == 0:
                        (job.out_dir / _WALL_FILE).write_text(f"{wall:.1f}\n")
                elif rc != 0:  # a failed probe fails the job
                    done[(job.name, job.seed)] = (rc, done.get((job.name, job.seed), (0, None))[1])
                status = "done" if rc == 0 else f"FAILED (exit {rc}; see {job.out_dir / 'train.out'})"
                print(f"{status:6s} {job.name} seed {job.seed} {kind} in {wall / 60:.1f} min", flush=True)
                if rc == 0 and queues[id(job)]:
                    start(job)  # the probe, in the slot the training freed
    finally:  # interrupted: stop the children (they save last.pt on SIGTERM and resume next time)
        for _, _, proc, _, _log in running:
            proc.terminate()
        for _, _, proc, _, log in running:
            proc.wait()
            log.close()
    return done


def _self_supervised(cfg: Any) -> bool:
    """Whether ``cfg``'s task is self-supervised (``avformer pretrain`` runs it); a config without ``task:`` (the
    old form) is trained as ``avformer train`` would."""
    from avformer.tasks.registry import get_task

    return cfg.task is not None and not get_task(cfg.task.name).supervised


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        print("avformer compare: error: --jobs and --threads must be >= 1", file=sys.stderr)
        return 2
    if len(set(args.seeds)) != len(args.seeds):
        print("avformer compare: error: --seeds must be distinct", file=sys.stderr)
        return 2
    for item in args.set_:
        if "=" not in item:
            print(f"avformer compare: error: --set {item!r} is not key=value", file=sys.stderr)
            return 2

    from avformer.config import ConfigError, apply_overrides, load

    cfgs = []
    for path in args.configs:
        try:
            if not Path(path).is_file():
                raise ConfigError(f"no such file: {path}")
            cfgs.append(apply_overrides(load(path), args.set_))
        except ConfigError as e:
            print(f"avformer compare: error: {e}", file=sys.stderr)
            return 2
    names = _names(args.configs, cfgs)
    out = Path(args.out)
    try:
        pretrain = [_self_supervised(cfg) for cfg in cfgs]
    except ConfigError as e:
        print(f"avformer compare: error: {e}", file=sys.stderr)
        return 2
    if any(pretrain) and not all(pretrain):
        print("avformer compare: error: compare supervised or self-supervised configs, not both", file=sys.stderr)
        return 2
    probe = tuple(args.probe) if args.probe else None
    jobs = [
        _Job(name, path, seed, out / name / f"seed{seed}", cfg.train.epochs, ssl, probe)
        for seed in args.seeds
        for name, path, cfg, ssl in zip(names, args.configs, cfgs, pretrain, strict=True)
    ]
    command = shlex.join(["avformer", "compare", *(sys.argv[2:] if argv is None else argv)])

    import torch

    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    finished: dict[tuple[str, int], Any] = {}
    load_summary = None
    if not args.table_only:
        _stop_on_sigterm()
        try:
            with _LoadSampler() as sampler:
                finished = _run_jobs(jobs, args.set_, args.jobs, args.threads)
        except KeyboardInterrupt:
            print("avformer compare: interrupted; the running runs were stopped (run the same command to resume)")
            return 130
        load_summary = sampler.summary()
    train_wall = time.perf_counter() - t0

    from avformer.train.compare import evaluate_views, format_pretrain_table, format_table, read_run, summarize

    summaries = []
    extras = ["a2v_mAP", *args.columns] if all(pretrain) else []
    for name, path, cfg in zip(names, args.configs, cfgs, strict=True):
        runs = []
        for seed in args.seeds:
            run_dir = out / name / f"seed{seed}"
            metric = f"val_{cfg.train.best_metric}"
            r = read_run(run_dir, config=name, seed=seed, metric=metric, epochs=cfg.train.epochs, extras=extras)
            if (name, seed) in finished:
                r.returncode, r.wall_s = finished[(name, seed)]
            else:
                r.wall_s = _recorded_wall(run_dir)
            if r.value is not None and r.audio_value is not None:  # a finished audio-visual run
                try:
                    views = evaluate_views(run_dir, cfg, args.by)
                except (OSError, ValueError) as e:
                    print(f"avformer compare: {run_dir}: no modality confusion ({e})", file=sys.stderr)
                else:
                    r.confusion, r.groups = views["confusion"], views.get("groups")
            runs.append(r)
        if all(pretrain):  # the probe is the measure; VATT's three towers have no one-input cost profile
            summaries.append(summarize(name, path, cfg, runs, cost=False))
            continue
        print(f"measuring {name} ({cfg.model.name})", flush=True)
        try:
            summaries.append(summarize(name, path, cfg, runs))
        except FileNotFoundError:  # no run got as far as classes.txt: no class count to build the model with
            summaries.append(summarize(name, path, cfg, runs, cost=False))

    notes = [
        f"{len(jobs)} runs ({len(cfgs)} configs × {len(args.seeds)} seeds), {args.jobs} at a time, "
        f"{args.threads} thread(s) each, on {os.cpu_count()} CPU(s) ({platform.machine()}); torch {torch.__version__}."
    ]
    if not args.table_only:
        notes.append(f"Wall time of all training{' and probes' if probe else ''}: {train_wall / 60:.1f} min.")
        if load_summary is not None:
            notes.append(
                f"1-min load average while training: mean {load_summary['mean']:.1f}, max {load_summary['max']:.1f} "
                f"(this comparison alone adds about {args.jobs * args.threads})."
            )
    if all(pretrain):
        table = format_pretrain_table(summaries, columns=args.columns, command=command, notes=notes)
    else:
        table = format_table(summaries, command=command, notes=notes, by=args.by)
    (out / "table.md").write_text(table)
    results = {
        "command": command,
        "configs": [s.to_dict() for s in summaries],
        "jobs": args.jobs,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "train_wall_s": None if args.table_only else train_wall,
        "load_average": load_summary,
        "torch": torch.__version__,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table)
    print(f"wrote {out / 'table.md'} and {out / 'results.json'}")
    failed = [k for k, (rc, _) in finished.items() if rc != 0]
    missing = [r for s in summaries for r in s.runs if r.value is None]
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
