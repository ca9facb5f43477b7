"""``avformer pretrain``: a self-supervised task from unlabeled videos (VATT: NCE video-audio, MIL-NCE video-text).

    avformer pretrain --config configs/experiment/av_digits_vatt_tiny.yaml [key=value ...] [--out DIR]

Runs any registered self-supervised task (``task: {name: vatt_pretrain, options: {...}}``; a config without a
``task:`` section means ``vatt_pretrain``) through :func:`avformer.train.experiment.run_experiment`, from manifests
or from shards (``train_shards``). The train labels are dropped before anything reads them (pretraining sees videos
and optional text only).
Text per clip comes from the manifest's ``text`` column, else a sidecar ``.srt`` / ``.txt`` next to the media file,
else the container's subtitle stream (:mod:`avformer.data.text`). When ``val_manifest`` is set, every evaluation
embeds the val clips and logs zero-shot audio↔video retrieval (R@K, median rank and, with labels, class-relevance
mAP ``a2v_mAP``; set ``train.best_metric: a2v_mAP``). The run folder holds ``config.yaml``, ``last.pt`` / ``best.pt``,
``metrics.csv`` and ``train_log.csv``; ``avformer probe-linear``, ``avformer embed`` and a fine-tuning ``init_from``
read it. Running the same command again resumes from ``last.pt``.

Several processes: ``torchrun --nproc_per_node N -m avformer pretrain --config ...``. ``train.batch_size`` is per
process; NCE and MIL-NCE take their negatives from every process's batch (a global batch of N × batch_size clips),
validation embeds each val clip once across the processes, and rank 0 alone writes the run folder. The heads'
BatchNorm statistics stay per process (a BatchNorm synchronised across processes needs GPUs).

Exit status: 0 done; 2 a bad config, override or manifest; 128 + N when signal N stopped training after saving.
"""

from __future__ import annotations

import argparse

from avformer.cli._help import plain
from avformer.cli.common import add_config_args, config_from_args, run_and_report
from avformer.config import ConfigError
from avformer.train.experiment import RunResult
from avformer.utils.errors import UsageError, report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer pretrain", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_args(p, "e.g. configs/experiment/av_digits_vatt_tiny.yaml")
    p.add_argument("--no-subtitles", action="store_true", help="do not read text from the containers' subtitle streams")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (UsageError, ConfigError) as e:
        return report("avformer pretrain", e)

    return run_and_report(
        "avformer pretrain", cfg, _headline, mode="pretrain", out_dir=args.out, subtitles=not args.no_subtitles
    )


def _headline(result: RunResult) -> str:
    s = result.summary
    parts = [f"done in {result.seconds / 60:.1f} min", f"run folder {result.out_dir}", f"{result.num_params:,} params"]
    if result.experiment.entry.reads_text:
        parts.append(f"{result.text_clips} train clips with text")
    for key in ("val_a2v_mAP", "val_a2v_R@1", "val_a2v_median_rank"):
        if key in s:
            parts.append(f"{key.removeprefix('val_')} {s[key]:.4f}")
    if result.report is not None:
        parts.append(f"report {result.report}")
    return "; ".join(parts)
