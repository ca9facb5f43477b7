"""``avformer cluster``: k-means clusters of a manifest's clips in a run's video and audio feature spaces, as a CSV.

    avformer cluster RUN MANIFEST --k K [--out clusters.csv] [--modality video audio] [--whiten-dim 0] [--seed 0]
        [--by CSV:COLUMN ...]

Embeds every clip of ``MANIFEST`` with the run's encoders (``RUN``: a run folder or checkpoint of ``avformer
pretrain`` or ``avformer train``; the pooled features of one centre window per clip, as ``probe-linear`` reads them),
centres and L2-normalises each modality's features (``--whiten-dim D``: PCA-whiten to D dimensions first, as
DeepCluster), and runs k-means (k-means++ seeding, ``--n-init`` restarts, seeded) per modality. The CSV has one row
per embedded clip: ``row,id,path,label,cluster_video,cluster_audio`` (empty where a clip lacks that stream). When
the manifest has labels, the NMI of each modality's clusters against them is printed (and of the video clusters
against the audio clusters): the diagnosis XDC's training logs per round. ``--by CSV:COLUMN`` (repeatable) adds the
NMI against any other column of a CSV keyed by ``id`` or ``path`` (e.g. how AV-Digits clips were made,
``../shared/data/av-digits/val_meta.csv:snr_db``; a numeric column is cut into 10 quantile bins): what the clusters
group by when it is not the class. ``--random-init``: the same with freshly initialised weights, the baseline.

Exit status: 0 done; 2 a bad run folder, manifest or argument.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import torch

from avformer.cli._help import plain
from avformer.data.manifest import ManifestError, read_manifest
from avformer.eval.report import read_groups
from avformer.eval.representations import extract_embeddings, represented_modalities
from avformer.metrics.clustering import fit_whitening, kmeans, normalized_mutual_info
from avformer.models.loading import load_run
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.errors import report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer cluster", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", help="run folder or checkpoint")
    p.add_argument("manifest", help="clips to cluster (labels optional: NMI when present)")
    p.add_argument("--k", type=int, required=True, help="clusters per modality")
    p.add_argument("--out", default="clusters.csv", help="output CSV (default clusters.csv)")
    p.add_argument("--modality", nargs="+", choices=("video", "audio"), default=None, help="default: the run's")
    p.add_argument("--whiten-dim", type=int, default=0, help="PCA-whiten to this many dimensions first (0: no)")
    p.add_argument("--n-init", type=int, default=3, help="k-means++ restarts (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--random-init", action="store_true", help="the run's architecture with fresh weights (seed --seed): a baseline"
    )
    p.add_argument("--by", action="append", default=[], metavar="CSV:COLUMN", help="also NMI against this column")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    return p


def _factor(values: list[str | None]) -> torch.Tensor:
    """Integer codes of a column's values (-1: missing); numeric values cut into 10 quantile bins."""
    try:
        nums = torch.tensor([math.nan if v in (None, "") else float(v) for v in values], dtype=torch.float64)
    except ValueError:  # categorical
        names = sorted({v for v in values if v})
        return torch.tensor([names.index(v) if v else -1 for v in values])
    known = ~nums.isnan()
    if not known.any():
        return torch.full((len(values),), -1)
    edges = torch.quantile(nums[known], torch.linspace(0, 1, 11, dtype=torch.float64)[1:-1])
    return torch.where(known, torch.bucketize(nums, edges), -1)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.k < 2 or args.whiten_dim < 0 or args.n_init < 1:
        print("avformer cluster: error: --k must be >= 2, --whiten-dim >= 0, --n-init >= 1", file=sys.stderr)
        return 2
    try:
        run = load_run(args.run, require_classes=False)
        if args.random_init:
            torch.manual_seed(args.seed)
        model = run.fresh_model() if args.random_init else run.model
        have = represented_modalities(model)
        modalities = tuple(args.modality or have)
        missing = [m for m in modalities if m not in have]
        if missing:
            raise ValueError(f"model {run.cfg.model.name!r} has no {' or '.join(missing)} encoder (--modality)")
        manifest = read_manifest(args.manifest, run.cfg.root)
        factors = dict(map(read_groups, args.by))
        emb = extract_embeddings(model, manifest, run.cfg.data, batch_size=args.batch_size, workers=args.workers)
        clusters: dict[str, torch.Tensor] = {}
        for m in modalities:
            feats, present = getattr(emb, f"{m}_pooled"), getattr(emb, f"has_{m}").bool()
            if int(present.sum()) < args.k:
                raise ValueError(f"{int(present.sum())} clips with {m}: fewer than --k {args.k}")
            x = fit_whitening(feats[present], args.whiten_dim)(feats[present])
            labels = torch.full((len(emb.ids),), -1, dtype=torch.long)
            labels[present] = kmeans(x, args.k, n_init=args.n_init, seed=args.seed).labels
            clusters[m] = labels
    except (FileNotFoundError, ManifestError, CheckpointError, TypeError, ValueError) as e:
        return report("avformer cluster", e)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "id", "path", "label", "cluster_video", "cluster_audio"])
        for i in range(len(emb.ids)):
            lab = int(emb.labels[i])
            cells = [
                int(clusters[m][i]) if m in clusters and int(clusters[m][i]) >= 0 else "" for m in ("video", "audio")
            ]
            w.writerow([int(emb.index[i]), emb.ids[i], emb.paths[i], emb.classes[lab] if lab >= 0 else "", *cells])
    print(f"{len(emb.ids)}/{len(manifest)} clips, k = {args.k} -> {out}")
    labeled = emb.labels >= 0
    for m, c in clusters.items():
        ok = labeled & (c >= 0)
        if ok.any():
            print(f"  NMI {m} clusters vs labels: {normalized_mutual_info(c[ok], emb.labels[ok]):.4f}")
    for column, groups in factors.items():
        codes = _factor([groups.get(i) for i in emb.ids])
        for m, c in clusters.items():
            ok = (codes >= 0) & (c >= 0)
            if ok.any():
                print(f"  NMI {m} clusters vs {column}: {normalized_mutual_info(c[ok], codes[ok]):.4f}")
    if len(clusters) == 2:
        both = (clusters["video"] >= 0) & (clusters["audio"] >= 0)
        if both.any():
            nmi = normalized_mutual_info(clusters["video"][both], clusters["audio"][both])
            print(f"  NMI video clusters vs audio clusters: {nmi:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
