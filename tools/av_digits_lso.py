"""Leave-speaker-out folds for AV-Digits, and mean ± std over the folds of ``avformer compare`` runs.

AV-Digits' train and val share its six FSDD speakers, so val measures how well a model knows *these* voices. Here
each fold trains on the clips of some speakers and evaluates on the clips of the others; the speaker of a clip comes
from ``audio_source`` (``fsdd:<speaker>:<take>``) of ``train_meta.csv`` / ``val_meta.csv``, for the split only (it is
never a model input)::

    .venv/bin/python tools/av_digits_lso.py folds ../shared/data/av-digits --out runs/lso
    .venv/bin/python tools/av_digits_lso.py run --out runs/lso --seeds 0 \\
        --configs configs/experiment/av_digits_mmt_tiny.yaml configs/experiment/av_digits_mmt_tiny_aug.yaml
    .venv/bin/python tools/av_digits_lso.py table --out runs/lso      # only re-reads the runs, rewrites the table

``folds`` writes ``OUT/fold<k>/train.csv`` and ``val.csv`` (manifests: ``id,path,label``, the paths relative to
the fold folder, the ids the clips' paths in the data folder, e.g. ``train/00042.mp4``), ``OUT/fold<k>/val_meta.csv``
(``id,speaker,split,condition``, for ``--by``) and ``OUT/folds.json`` (which speakers each fold holds out, and the
counts). The speakers, sorted (or shuffled by ``--seed``), are cut into ``--folds`` groups of ``--holdout``; the
default is 3 folds of 2, so every speaker is held out exactly once and every clip is evaluated once.

Which clips: by default both official splits are the pool (``--splits train val``). A fold trains on every clip of
its other speakers (train and val: 4 x 500 = 2000) and evaluates on every clip of its held-out ones (2 x 500 =
1000). Evaluating on the held-out speakers' val clips alone would leave 100 clips a fold (a standard error of about
4 points at 80 % accuracy, against 1.3 with 1000). ``--splits train`` keeps to the official train split (1800 /
900). Either way no held-out speaker is in a fold's train manifest (checked while writing), and no image is in both
(each clip has its own MNIST image). Note the confound when comparing with the in-speaker val figure: a fold trains
on 2000 clips, not 2700, and ``train.epochs`` epochs are then fewer steps. That matters where learning is a
matter of steps: the VATT recipe's NCE sits on a plateau for about 200 steps, and 16 epochs of 15 steps left it
there (``docs/numbers/lso.md``), so its folds run ``--set train.epochs=23`` (345 steps; in-speaker 16 x 21 = 336).

``run`` runs ``avformer compare`` once per fold and config (``--out OUT/fold<k>/<config file stem>``, so that two
``run`` calls with different ``--configs`` may go side by side, one thread each) with the fold's manifests as
``--set train_manifest=... --set val_manifest=...`` (after the ``--set`` overrides given here, so they win), the
per-speaker top-1 of each fold's val (``--by OUT/fold<k>/val_meta.csv:speaker``) and, for self-supervised configs
with ``--probe``, the linear probe on the fold's manifests; running it again resumes, as ``compare`` does. Then, as
``table`` alone does, it reads every ``OUT/fold<k>/*/results.json`` and writes ``OUT/lso.md`` and ``OUT/lso.json``:
for each config, the fold's value (``compare``'s mean over its seeds) of the headline metric, the audio-only and
video-only top-1 and the probes, then their mean ± std (sample std) over the folds, the top-1 of every held-out
speaker, and the ``--set`` overrides each config ran with (read from its ``compare`` command).

``baseline`` is the data README's audio baseline under the same folds: each clip's 64-band Kaldi log-mel of its
first second, mean and std over time (128 values), then StandardScaler and multinomial logistic regression (C = 3,
scikit-learn, a dev dependency), trained on the official train split and evaluated on val (in-speaker), then on
each fold; top-1 overall and by the clip's ``condition``. ``--config FILE --copies N`` adds N copies of every
training clip through that config's ``data.wave_augment`` (drawn per clip and copy from ``--seed``): what the
augmentations buy a model that cannot learn anything else. Writes ``OUT/baseline.json`` and ``.md`` (with copies:
``OUT/baseline_<config stem>_x<N>.json`` and ``.md``)::

    .venv/bin/python tools/av_digits_lso.py baseline ../shared/data/av-digits --out runs/lso \
        --config configs/experiment/av_digits_mmt_tiny_aug.yaml --copies 4

``conditions`` evaluates every finished supervised run of the folds (its ``last.pt``) with ``avformer eval --by
OUT/fold<k>/val_meta.csv:condition`` (into ``<run folder>/eval_condition``; done once) and writes
``OUT/conditions.md`` / ``.json``: per config, condition and view (fused, audio-only, video-only) the mean ± std
over the folds of the fold's top-1 (mean over its seeds). A quarter of AV-Digits clips bury the speech in noise
(``audio_degraded``), so an audio-only figure over all clips mixes two very different problems.

Exit status: 0 done; 1 a fold's ``compare`` failed or a run is missing (the table is still written from the others);
2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

__all__ = ["aggregate", "conditions", "fold_commands", "linear_baseline", "main", "read_speakers", "write_folds"]


def read_speakers(data: Path, split: str) -> list[dict[str, str]]:
    """The rows of ``<split>_meta.csv`` with ``speaker`` (from ``audio_source`` = ``fsdd:<speaker>:<take>``)."""
    path = data / f"{split}_meta.csv"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (an AV-Digits folder has train_meta.csv and val_meta.csv)")
    rows = []
    with path.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            parts = (row.get("audio_source") or "").split(":")
            if len(parts) != 3 or parts[0] != "fsdd" or not parts[1]:
                raise ValueError(f"{path}: row {i + 1} has audio_source {row.get('audio_source')!r}, not fsdd:S:T")
            if not row.get("path") or row.get("label") in (None, ""):
                raise ValueError(f"{path}: row {i + 1} has no path or label")
            rows.append({**row, "speaker": parts[1], "split": split})
    return rows


def write_folds(
    data: Path,
    out: Path,
    *,
    splits: tuple[str, ...] = ("train", "val"),
    holdout: int = 2,
    folds: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Write the fold manifests and ``folds.json`` (see the module docstring); returns what ``folds.json`` holds."""
    rows = [r for split in splits for r in read_speakers(data, split)]
    speakers = sorted({r["speaker"] for r in rows})
    if seed is not None:
        random.Random(seed).shuffle(speakers)
    folds = len(speakers) // holdout if folds is None else folds
    if holdout < 1 or folds < 1 or folds * holdout > len(speakers) or holdout >= len(speakers):
        raise ValueError(f"{folds} folds of {holdout} held-out speakers need more than that many of {len(speakers)}")
    info: dict[str, Any] = {
        "data": str(data.resolve()),
        "splits": list(splits),
        "speakers": sorted(speakers),
        "seed": seed,
        "folds": [],
    }
    for k in range(folds):
        held = sorted(speakers[k * holdout : (k + 1) * holdout])
        fold_dir = out / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        rel = Path(os.path.relpath(data.resolve(), fold_dir.resolve()))
        train = [r for r in rows if r["speaker"] not in held]
        val = [r for r in rows if r["speaker"] in held]
        if {r["speaker"] for r in train} & set(held):  # the point of the protocol: never a held-out voice in train
            raise AssertionError(f"fold {k}: a held-out speaker is in train")
        for name, part in (("train", train), ("val", val)):
            with (fold_dir / f"{name}.csv").open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["id", "path", "label"])
                for r in part:
                    w.writerow([r["path"], (rel / r["path"]).as_posix(), r["label"]])
        with (fold_dir / "val_meta.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "speaker", "split", "condition"])
            for r in val:
                w.writerow([r["path"], r["speaker"], r["split"], r.get("condition", "")])
        info["folds"].append(
            {
                "fold": k,
                "holdout": held,
                "train_speakers": sorted({r["speaker"] for r in train}),
                "train": len(train),
                "val": len(val),
            }
        )
    (out / "folds.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def fold_commands(
    out: Path,
    configs: list[str],
    *,
    seeds: list[int],
    jobs: int = 1,
    threads: int = 1,
    overrides: list[str] | None = None,
    probe: bool = False,
    folds: list[int] | None = None,
) -> list[list[str]]:
    """The ``avformer compare`` command of each fold (of ``folds.json``, or the ``folds`` listed) and config: one
    output folder per config (``OUT/fold<k>/<file stem>``), since ``compare`` rewrites its ``results.json``."""
    info = json.loads((out / "folds.json").read_text())
    cmds = []
    for fold in info["folds"]:
        k = fold["fold"]
        if folds is not None and k not in folds:
            continue
        d = out / f"fold{k}"
        for config in configs:
            argv = [sys.executable, "-m", "avformer", "compare", "--configs", config, "--seeds", *map(str, seeds)]
            argv += ["--out", str(d / Path(config).stem), "--jobs", str(jobs), "--threads", str(threads)]
            for item in [*(overrides or []), f"train_manifest={d / 'train.csv'}", f"val_manifest={d / 'val.csv'}"]:
                argv += ["--set", item]
            argv += ["--by", f"{d / 'val_meta.csv'}:speaker"]
            if probe:
                argv += ["--probe", str(d / "train.csv"), str(d / "val.csv")]
            cmds.append(argv)
    return cmds


def _pair(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "folds": values}


def aggregate(out: Path) -> dict[str, Any]:
    """Mean ± std over the folds of each config's per-fold values (``OUT/fold<k>/*/results.json``)."""
    info = json.loads((out / "folds.json").read_text())
    per: dict[str, dict[str, Any]] = {}  # config -> what we collect
    missing = []
    for fold in info["folds"]:
        k = fold["fold"]
        paths = sorted((out / f"fold{k}").glob("*/results.json"))
        if not paths:
            missing.append(k)
        for path in paths:
            saved = json.loads(path.read_text())
            for s in saved["configs"]:
                _collect(per, s, fold, _overrides(saved.get("command", "")))
    configs = {
        name: {
            "metric": c["metric"],
            "values": {m: _pair(v) for m, v in c["values"].items()},
            "speakers": dict(sorted(c["speakers"].items())),
            "overrides": sorted(c["overrides"]),
        }
        for name, c in per.items()
    }
    result = {"folds": info["folds"], "splits": info["splits"], "missing_folds": missing, "configs": configs}
    (out / "lso.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "lso.md").write_text(format_table(result))
    return result


def _overrides(command: str) -> list[str]:
    """The ``--set`` items of a ``compare`` command line, less the fold's manifests (the same for every config)."""
    argv = shlex.split(command)
    items = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]
    return [x for x in items if not x.startswith(("train_manifest=", "val_manifest="))]


def _collect(per: dict[str, dict[str, Any]], s: dict[str, Any], fold: dict[str, Any], overrides: list[str]) -> None:
    """Add one fold's ``compare`` row ``s`` to the values of its config in ``per``."""
    c = per.setdefault(s["config"], {"metric": s["metric"], "values": {}, "speakers": {}, "overrides": set()})
    c["overrides"].add(" ".join(overrides) or "none")  # more than one: the folds did not run alike
    vals = c["values"]
    if s.get("mean") is not None:
        vals.setdefault(s["metric"], []).append(s["mean"])
    for view in ("audio", "video"):
        if s.get(view) is not None:
            vals.setdefault(f"{view}_top1", []).append(s[view][0])
    for name, pair in (s.get("probe") or {}).items():
        vals.setdefault(f"probe_{name}", []).append(pair[0])
    for speaker, cells in (s.get("groups") or {}).items():
        if speaker in fold["holdout"]:
            n = cells.get("n")  # compare averages it over seeds: the same clip count each time
            c["speakers"][speaker] = {v: x for v, x in cells.items() if v != "n"} | {
                "n": None if n is None else round(n)
            }


def _cell(p: dict[str, Any] | None) -> str:
    """A table cell of a :func:`_pair`: ``mean ± std [folds]``, or ``-``."""
    return "-" if p is None else f"{p['mean']:.3f} ± {p['std']:.3f} [{p['n']}]"


def format_table(result: dict[str, Any]) -> str:
    """Markdown: one row per config, one column per measure (mean ± std over folds, n folds)."""
    measures = sorted({m for c in result["configs"].values() for m in c["values"]})
    holdouts = ", ".join("+".join(f["holdout"]) for f in result["folds"])
    lines = [
        "# AV-Digits leave-speaker-out",
        "",
        f"{len(result['folds'])} folds (held out: {holdouts}); pool: {' + '.join(result['splits'])}. "
        "Each cell: mean ± std over the folds of the fold's value (mean over its seeds), [folds].",
        "",
    ]
    if measures:
        lines += ["| config | " + " | ".join(measures) + " |", "|---|" + "---|" * len(measures)]
    else:
        lines.append("No results yet.")
    for name, c in result["configs"].items():
        cells = [_cell(c["values"].get(m)) for m in measures]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    overridden = {
        name: c["overrides"] for name, c in result["configs"].items() if c.get("overrides", ["none"]) != ["none"]
    }
    if overridden:
        lines += [""] + [f"- {name}: `--set` {' / '.join(sets)}" for name, sets in overridden.items()]
    if result["missing_folds"]:
        lines += ["", f"Missing folds (no results.json): {result['missing_folds']}."]
    speakers = {name: c["speakers"] for name, c in result["configs"].items() if c["speakers"]}
    if speakers:
        views = sorted({v for sp in speakers.values() for cells in sp.values() for v in cells if v != "n"})
        lines += ["", "Top-1 of each held-out speaker:", "", "| config | speaker | n | " + " | ".join(views) + " |"]
        lines.append("|---|---|---|" + "---|" * len(views))
        for name, sp in speakers.items():
            for speaker, cells in sp.items():
                vals = [f"{cells[v]:.3f}" if isinstance(cells.get(v), float) else "-" for v in views]
                lines.append(f"| {name} | {speaker} | {cells.get('n')} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def conditions(out: Path, *, threads: int = 1) -> dict[str, Any]:
    """Top-1 by ``condition`` of every finished supervised fold run (see the module docstring)."""
    info = json.loads((out / "folds.json").read_text())
    per: dict[str, dict[str, dict[str, list[float]]]] = {}  # config -> "condition view" -> fold values
    for fold in info["folds"]:
        d = out / f"fold{fold['fold']}"
        by_config: dict[str, list[dict[str, Any]]] = {}
        for run in sorted(d.glob("*/*/seed*")):
            done = run.parents[1] / "results.json"  # compare writes it once its runs are over
            if not (run / "classes.txt").is_file() or not (run / "last.pt").is_file() or not done.is_file():
                continue  # self-supervised (no classifier), or not finished
            if done.stat().st_mtime < (run / "last.pt").stat().st_mtime:
                continue  # training again (a resumed or extended run)
            report = run / "eval_condition" / "eval.json"
            if not report.is_file() or report.stat().st_mtime < (run / "last.pt").stat().st_mtime:
                argv = [sys.executable, "-m", "avformer", "eval", str(run), "--checkpoint", "last", "--json"]
                argv += ["--data", str(d / "val.csv"), "--by", f"{d / 'val_meta.csv'}:condition"]
                argv += ["--batch-size", "32", "--out", str(report.parent)]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                print("+ " + " ".join(argv), flush=True)
                if subprocess.run(argv, check=False, env=env, stdout=subprocess.DEVNULL).returncode != 0:
                    print(f"av_digits_lso.py: {run}: eval failed", file=sys.stderr)
                    continue
            by_config.setdefault(run.parent.name, []).append(json.loads(report.read_text())["groups"]["top1"])
        for name, seeds in by_config.items():  # the fold's value: the mean over its seeds
            cells = per.setdefault(name, {})
            for cond in seeds[0]:
                for view in ("fused", "audio", "video"):
                    vals = [s[cond][view] for s in seeds if s.get(cond, {}).get(view) is not None]
                    if vals:
                        cells.setdefault(f"{cond} {view}", []).append(statistics.fmean(vals))
    result = {name: {k: _pair(v) for k, v in sorted(cells.items())} for name, cells in per.items()}
    (out / "conditions.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# AV-Digits leave-speaker-out, top-1 by condition (mean ± std over the folds, [folds])", ""]
    lines += ["| config | condition | fused | audio-only | video-only |", "|---|---|---|---|---|"]
    for name, cells in result.items():
        for cond in sorted({k.split(" ")[0] for k in cells}):
            text = [_cell(cells.get(f"{cond} {v}")) for v in ("fused", "audio", "video")]
            lines.append(f"| {name} | {cond} | " + " | ".join(text) + " |")
    (out / "conditions.md").write_text("\n".join(lines) + "\n")
    return result


def _clip_features(path: Path, copies: int, augment: Any, seed: int, index: int) -> list[list[float]]:
    """Log-mel mean and std over time of the clip's first second: the clean clip, then ``copies`` augmented ones."""
    import torch

    from avformer.data.audio import AudioFeatureConfig, AudioFeatures
    from avformer.data.media import decode_clip

    clip = decode_clip(path, 0.0, 1.0, video=False, sample_rate=16000)
    wav = torch.zeros(16000)
    a = torch.from_numpy(clip.audio[:16000].copy()) if clip.audio is not None else torch.zeros(0)
    wav[: len(a)] = a
    feats = AudioFeatures(AudioFeatureConfig(num_mel_bins=64, num_frames=None, mean=None, std=None))
    waves = [wav]
    for c in range(copies):
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{c}:{index}".encode()))
        waves.append(augment(wav, gen))
    out = []
    for w in waves:
        spec = feats.spectrogram(w)  # (T, F)
        out.append(torch.cat([spec.mean(0), spec.std(0)]).tolist())
    return out


def linear_baseline(
    data: Path, out: Path, *, config: str | None = None, copies: int = 0, seed: int = 0, c: float = 3.0
) -> dict[str, Any]:
    """The audio baseline in-speaker and on every fold of ``OUT/folds.json`` (see the module docstring)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    augment = None
    if copies > 0:
        from avformer.config import load
        from avformer.data.wave_augment import WaveAugment

        if config is None:
            raise ValueError("--copies needs --config (whose data.wave_augment makes the copies)")
        wave_cfg = load(config).data.wave_augment
        if not wave_cfg.enabled:
            raise ValueError(f"{config}: data.wave_augment is off (every probability 0)")
        augment = WaveAugment(wave_cfg, 16000)
    rows = [r for split in ("train", "val") for r in read_speakers(data, split)]
    feats = [_clip_features(data / r["path"], copies, augment, seed, i) for i, r in enumerate(rows)]
    info = json.loads((out / "folds.json").read_text())
    protocols = [("in-speaker", [r["split"] == "train" for r in rows], [r["split"] == "val" for r in rows])]
    for fold in info["folds"]:
        held = set(fold["holdout"])
        name = f"fold{fold['fold']} ({'+'.join(fold['holdout'])})"
        protocols.append((name, [r["speaker"] not in held for r in rows], [r["speaker"] in held for r in rows]))
    result: dict[str, Any] = {"config": config, "copies": copies, "seed": seed, "C": c, "protocols": {}}
    for name, train, val in protocols:
        x = np.array([v for fs, t in zip(feats, train, strict=True) if t for v in fs])
        y = np.array([int(r["label"]) for r, t in zip(rows, train, strict=True) if t for _ in range(copies + 1)])
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        model.fit(x, y)
        vrows = [(r, fs[0]) for r, fs, v in zip(rows, feats, val, strict=True) if v]  # evaluation: the clean clip
        pred = model.predict(np.array([f for _, f in vrows]))
        hit = [int(p) == int(r["label"]) for p, (r, _) in zip(pred, vrows, strict=True)]
        by: dict[str, list[bool]] = {}
        for h, (r, _) in zip(hit, vrows, strict=True):
            by.setdefault(r.get("condition", ""), []).append(h)
        result["protocols"][name] = {
            "n_train": len(x),
            "n_val": len(hit),
            "top1": sum(hit) / len(hit),
            "by_condition": {k: {"n": len(v), "top1": sum(v) / len(v)} for k, v in sorted(by.items())},
        }
    lso = [p["top1"] for n, p in result["protocols"].items() if n != "in-speaker"]
    result["lso"] = _pair(lso)
    stem = f"baseline_{Path(config).stem}_x{copies}" if copies else "baseline"  # one file per setting
    result["files"] = [str(out / f"{stem}.json"), str(out / f"{stem}.md")]
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    conds = sorted({k for p in result["protocols"].values() for k in p["by_condition"]})
    how = f"+ {copies} augmented copies of each training clip ({config})" if copies else "no augmentation"
    lines = [
        f"# Audio linear baseline (log-mel mean + std, logistic regression C = {c}; {how})",
        "",
        "| protocol | train clips | val clips | top-1 | " + " | ".join(conds) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(conds),
    ]
    for name, p in result["protocols"].items():
        cells = [f"{p['by_condition'][k]['top1']:.3f}" if k in p["by_condition"] else "-" for k in conds]
        lines.append(f"| {name} | {p['n_train']} | {p['n_val']} | {p['top1']:.3f} | " + " | ".join(cells) + " |")
    if result["lso"]:
        lines += ["", f"Leave-speaker-out: {result['lso']['mean']:.3f} ± {result['lso']['std']:.3f} over the folds."]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return result


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="av_digits_lso.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("folds", help="write the fold manifests and folds.json")
    f.add_argument("data", help="the AV-Digits folder (train_meta.csv, val_meta.csv)")
    f.add_argument("--out", required=True, help="output folder")
    f.add_argument("--splits", nargs="+", default=["train", "val"], help="official splits in the pool (train val)")
    f.add_argument("--holdout", type=int, default=2, help="speakers held out per fold (2)")
    f.add_argument("--folds", type=int, default=None, help="number of folds (default: speakers // holdout)")
    f.add_argument("--seed", type=int, default=None, help="shuffle the speakers before grouping (default: sorted)")
    r = sub.add_parser("run", help="avformer compare on every fold, then the table")
    r.add_argument("--out", required=True, help="the folder `folds` wrote")
    r.add_argument("--configs", nargs="+", required=True, metavar="YAML")
    r.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="S", help="train.seed values (0)")
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--set", dest="set_", action="append", default=[], metavar="key=value", help="override, all runs")
    r.add_argument("--probe", action="store_true", help="self-supervised configs: linear-probe on the fold manifests")
    r.add_argument("--folds", nargs="+", type=int, default=None, metavar="K", help="only these folds")
    t = sub.add_parser("table", help="only re-read the fold runs and write lso.md / lso.json")
    t.add_argument("--out", required=True)
    c = sub.add_parser("conditions", help="top-1 by condition of the finished supervised fold runs")
    c.add_argument("--out", required=True)
    c.add_argument("--threads", type=int, default=1)
    b = sub.add_parser("baseline", help="the audio linear baseline in-speaker and on every fold")
    b.add_argument("data", help="the AV-Digits folder")
    b.add_argument("--out", required=True, help="the folder `folds` wrote")
    b.add_argument("--config", default=None, help="a config whose data.wave_augment makes the --copies")
    b.add_argument("--copies", type=int, default=0, help="augmented copies of each training clip (0)")
    b.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if args.command == "folds":
        try:
            info = write_folds(
                Path(args.data), out, splits=tuple(args.splits), holdout=args.holdout, folds=args.folds, seed=args.seed
            )
        except ValueError as e:
            print(f"av_digits_lso.py: error: {e}", file=sys.stderr)
            return 2
        for fold in info["folds"]:
            print(
                f"fold{fold['fold']}: hold out {', '.join(fold['holdout'])}: {fold['train']} train, {fold['val']} val"
            )
        print(f"wrote {out / 'folds.json'}")
        return 0
    if not (out / "folds.json").is_file():
        print(f"av_digits_lso.py: error: {out / 'folds.json'} not found: run `folds` first", file=sys.stderr)
        return 2
    if args.command == "baseline":
        try:
            done = linear_baseline(Path(args.data), out, config=args.config, copies=args.copies, seed=args.seed)
        except (OSError, ValueError) as e:
            print(f"av_digits_lso.py: error: {e}", file=sys.stderr)
            return 2
        print(Path(done["files"][1]).read_text() + f"wrote {' and '.join(done['files'])}")
        return 0
    if args.command == "conditions":
        conditions(out, threads=args.threads)
        print((out / "conditions.md").read_text() + f"wrote {out / 'conditions.md'} and {out / 'conditions.json'}")
        return 0
    failed = False
    if args.command == "run":
        cmds = fold_commands(
            out,
            args.configs,
            seeds=args.seeds,
            jobs=args.jobs,
            threads=args.threads,
            overrides=args.set_,
            probe=args.probe,
            folds=args.folds,
        )
        for argv_k in cmds:
            print("+ " + " ".join(argv_k), flush=True)
            rc = subprocess.run(argv_k, check=False).returncode
            if rc == 2:  # bad arguments or a config that does not load: the other folds would fail the same way
                return 2
            failed |= rc != 0
    result = aggregate(out)
    print((out / "lso.md").read_text())
    print(f"wrote {out / 'lso.md'} and {out / 'lso.json'}")
    return 1 if failed or result["missing_folds"] else 0


if __name__ == "__main__":
    sys.exit(main())
