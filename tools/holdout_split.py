"""Hold out part of a training manifest as a development set, to choose a schedule without looking at val.

    .venv/bin/python tools/holdout_split.py ../shared/data/av-digits/train.csv --dev 0.1 --seed 0 --out runs/holdout

writes ``OUT/fit.csv`` and ``OUT/dev.csv`` (``id,path,label``; the paths relative to ``OUT``, the ids the rows'
paths as the source manifest wrote them). The split is stratified: every class gives ``round(dev * n_class)`` of
its rows (at least one) to ``dev``, picked at random with ``--seed``; the rest are ``fit``. Train a candidate recipe
on ``fit`` and evaluate it on ``dev``::

    avformer train --config RECIPE.yaml --set train_manifest=runs/holdout/fit.csv \\
        --set val_manifest=runs/holdout/dev.csv --set train.out_dir=runs/holdout/candidate

then train the chosen recipe on the whole training set and read the validation set once. The source manifest is a
CSV with ``path`` and ``label`` columns (as ``avformer`` reads it); multi-label rows are grouped by their label
string. Exit status: 0 written; 2 bad arguments or manifest.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["main", "split_rows"]


def split_rows(rows: list[dict[str, str]], dev: float, seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``(fit, dev)`` rows: a stratified random ``dev`` fraction of each label's rows, in the source order."""
    if not 0.0 < dev < 1.0:
        raise ValueError(f"--dev must be in (0, 1), got {dev}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_label[row["label"]].append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label]
        if len(idx) < 2:
            raise ValueError(f"label {label!r} has {len(idx)} row: cannot keep one for fit and one for dev")
        k = min(max(1, round(dev * len(idx))), len(idx) - 1)
        held.update(rng.sample(idx, k))
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no {' or '.join(sorted(missing))} column")
        return list(reader)


def _write(path: Path, rows: list[dict[str, str]], source_dir: Path) -> None:
    rel = Path(os.path.relpath(source_dir.resolve(), path.parent.resolve()))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path", "label"])
        for r in rows:
            p = Path(r["path"])
            w.writerow([r.get("id") or r["path"], str(p if p.is_absolute() else rel / p), r["label"]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", type=Path, help="training manifest (CSV with path and label)")
    p.add_argument("--dev", type=float, default=0.1, help="fraction of each class held out (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="folder for fit.csv and dev.csv")
    args = p.parse_args(argv)
    try:
        if not args.manifest.is_file():
            raise ValueError(f"{args.manifest}: no such file")
        fit, dev = split_rows(_read(args.manifest), args.dev, args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        for name, rows in (("fit", fit), ("dev", dev)):
            _write(args.out / f"{name}.csv", rows, args.manifest.parent)
    except (ValueError, OSError) as e:
        print(f"holdout_split: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}/fit.csv: {len(fit)} rows; {args.out}/dev.csv: {len(dev)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
