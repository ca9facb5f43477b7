"""``avformer train``: train any registered task (a classifier, or a self-supervised task) from an experiment config.

    avformer train --config configs/experiment/av_digits_mmt_tiny.yaml [key=value ...] [--set key=value ...]

Loads the YAML config (``inherit:`` followed), applies the overrides in order (``train.epochs=3``, ``optim.lr=3e-4``,
``model.overrides.fusion=late``) and hands it to :func:`avformer.train.experiment.run_experiment`, which builds the
data, the model and the task named in ``task:`` (``classification``, ``av_classification``, ``vatt_pretrain``...)
and trains it. The run folder (``train.out_dir``, or ``--out``) then holds ``config.yaml``, ``classes.txt``,
``last.pt`` / ``best.pt``, ``metrics.csv``, ``train_log.csv``, the PNG plots and ``report.md``.

Running the same command again resumes from ``last.pt`` (``train.resume: auto``), exactly: a run killed at any point
ends with the same weights and metrics as one that never stopped. Relative paths in the config (manifests,
``classes``, ``root``) are relative to the working directory.

Shards: with ``train_shards: DIR`` (a folder written by ``avformer prepare``, its ``index.json``, or a URL of one) the
training set is streamed from the shards instead of decoding the manifest's files (``train_manifest`` is then not
needed); ``val_shards`` likewise for validation, else ``val_manifest``. The classes come from ``classes`` or the
shard index. A mid-epoch resume skips the trained batches without reading them.

Several processes: ``torchrun --nproc_per_node N -m avformer train --config ...`` (or ``--nnodes M --node_rank i
--rdzv_endpoint HOST:PORT`` for several machines) starts one training process per GPU (or per CPU slot with gloo);
this command sets up the process group (NCCL on GPU, gloo on CPU) from torchrun's environment.
``train.batch_size`` is per process: the global batch is ``batch_size × processes × optim.accum_steps``. Only rank
0 writes the run folder; see :mod:`avformer.train.trainer` for what is synchronised.

Exit status: 0 done; 2 a bad config, override or manifest (one line on stderr); 128 + N when signal N (SIGTERM,
SIGINT) stopped training after saving ``last.pt``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from avformer.cli._help import plain
from avformer.cli.common import add_config_args, config_from_args, run_and_report
from avformer.config import ConfigError
from avformer.train.experiment import RunResult
from avformer.utils.errors import UsageError, report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer train", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(p, "configs/experiment/..., configs/smoke/...")
    return p


def _headline(result: RunResult) -> str:
    s = result.summary
    parts = [f"done in {result.seconds / 60:.1f} min; run folder {result.out_dir}"]
    for key, name in (("val_top1", "val top-1"), ("val_mAP", "val mAP"), ("val_a2v_mAP", "val a2v mAP")):
        if key in s:
            parts.append(f"{name} {s[key]:.4f}")
    for key in ("val_audio_top1", "val_video_top1", "val_audio_mAP", "val_video_mAP"):
        if key in s:
            parts.append(f"{key.removeprefix('val_').replace('_', '-only ', 1)} {s[key]:.4f}")
    if result.report is not None:
        parts.append(f"report {result.report}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        command = shlex.join(["avformer", "train", *(sys.argv[2:] if argv is None else argv)])
    except (UsageError, ConfigError) as e:
        return report("avformer train", e)

    return run_and_report("avformer train", cfg, _headline, out_dir=args.out, command=command)
