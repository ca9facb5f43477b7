"""Write ESC-50 5-fold cross-validation manifests from the dataset's own ``meta/esc50.csv``.

    python tools/esc50_folds.py /path/to/ESC-50-master data/esc50

ESC-50 (Piczak 2015, https://github.com/karolpiczak/ESC-50) ships ``audio/*.wav`` and ``meta/esc50.csv`` with the
columns ``filename,fold,target,category,esc10,src_file,take``. For each fold k in 1..5 this writes
``OUT/fold{k}_train.csv`` (the other four folds) and ``OUT/fold{k}_val.csv`` (fold k), in avformer's manifest
format ``path,label`` (absolute paths, the ``category`` name as label), as ``configs/experiment/esc50_fold{k}.yaml``
expect. ``--esc10`` keeps only the ESC-10 subset.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_meta(root: Path, esc10: bool = False) -> list[dict[str, str]]:
    """Rows of ``meta/esc50.csv`` with ``path`` (absolute), ``label`` and ``fold``."""
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta}: not found (expected the ESC-50 layout: audio/, meta/esc50.csv)")
    with meta.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"filename", "fold", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{meta}: missing columns {sorted(missing)}")
        rows = [r for r in reader if not esc10 or r.get("esc10", "").strip().lower() == "true"]
    return [
        {"path": str((root / "audio" / r["filename"]).resolve()), "label": r["category"], "fold": r["fold"].strip()}
        for r in rows
    ]


def write_folds(rows: list[dict[str, str]], out: Path) -> list[Path]:
    """``fold{k}_train.csv`` / ``fold{k}_val.csv`` for every fold present in ``rows``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fold in sorted({r["fold"] for r in rows}, key=int):
        for split, keep in (("train", lambda r, k=fold: r["fold"] != k), ("val", lambda r, k=fold: r["fold"] == k)):
            path = out / f"fold{fold}_{split}.csv"
            with path.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["path", "label"])
                w.writerows([r["path"], r["label"]] for r in rows if keep(r))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, help="the ESC-50 folder (holding audio/ and meta/esc50.csv)")
    p.add_argument("out", type=Path, help="output folder for fold{k}_{train,val}.csv")
    p.add_argument("--esc10", action="store_true", help="only the ESC-10 subset")
    args = p.parse_args(argv)
    try:
        rows = read_meta(args.root, args.esc10)
    except (OSError, ValueError) as e:
        print(f"esc50_folds: {e}", file=sys.stderr)
        return 2
    paths = write_folds(rows, args.out)
    print(f"{len(rows)} clips, {len(paths) // 2} folds -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
