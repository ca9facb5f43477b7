"""``torchrun --nproc_per_node 2`` (gloo, CPU; DDP and FSDP2) follows the loss curve of one process, same global batch.

MMT-Tiny on synthetic clips through ``avformer train``: DDP, the distributed train sampler, AVC / IMC gathered
across ranks with gradients, rank-0 files and the distributed evaluation (7 validation clips: shares of 4 and 3,
no padding) must together give what one process with batch 8 gives. Dropout and drop-path are 0 in this config and
the augmentations are drawn per clip from ``(seed, epoch, index)``, so they do not depend on the number of ranks.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from avformer.data.synth import SynthConfig, write_dataset
from avformer.models.loading import load_run
from avformer.utils.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "smoke" / "tiny_av.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 training clips (4 global batches of 8) and 7 validation clips, 1 s of 32x32 at 8 fps."""
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=39, seconds=1.0, size=32, fps=8), workers=1)
    header, *rows = (out / "manifest.csv").read_text().splitlines()
    (out / "tr.csv").write_text("\n".join([header, *rows[:32]]) + "\n")
    (out / "va.csv").write_text("\n".join([header, *rows[32:]]) + "\n")
    return out


def _avformer(command: str, args: list[str], nproc: int) -> None:
    """``python -m avformer COMMAND ARGS`` in one process, or under ``torchrun`` with ``nproc`` gloo processes."""
    if nproc == 1:
        cmd = [sys.executable, "-m", "avformer", command, *args]
    else:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "avformer", command, *args,
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _train(data: Path, out: Path, nproc: int, batch_size: int, *extra: str) -> None:
    args = [
        "--config",
        str(CONFIG),
        f"train_manifest={data / 'tr.csv'}",
        f"val_manifest={data / 'va.csv'}",
        f"classes={data / 'classes.txt'}",
        f"train.batch_size={batch_size}",
        "train.epochs=5",  # 4 steps an epoch: 20 steps
        "train.device=cpu",
        "train.resume=null",  # (an override later in the list wins)
        "train.log_every=1",
        f"train.out_dir={out}",
        *extra,
    ]
    _avformer("train", args, nproc)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def single(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "one"
    _train(data, out, 1, 8)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gloo_processes_follow_the_single_process_loss_curve(
    data: Path, single: Path, tmp_path: Path, strategy: str
) -> None:
    two_dir = tmp_path / "two"
    _train(data, two_dir, 2, 4, f"train.strategy={strategy}")  # the same global batch: 2 processes x 4
    one, two = _rows(single / "train_log.csv"), _rows(two_dir / "train_log.csv")
    assert len(one) == len(two) == 20
    for a, b in zip(one, two, strict=True):
        assert a["step"] == b["step"] and a["lr"] == b["lr"]
        la, lb = float(a["loss"]), float(b["loss"])
        assert abs(la - lb) <= 1e-3 * abs(la), (a["step"], la, lb)
    # the distributed evaluation saw every validation clip once: the same metrics as one process
    ea, eb = _rows(single / "metrics.csv"), _rows(two_dir / "metrics.csv")
    assert [r["val_top1"] for r in ea] == [r["val_top1"] for r in eb]
    for a, b in zip(ea, eb, strict=True):
        assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), rel=1e-3)
        assert float(a["train_avc"]) == pytest.approx(float(b["train_avc"]), rel=1e-3)
    # rank 0 alone wrote the run folder: full (unsharded) weights, loadable by eval / predict
    assert sorted(p.name for p in two_dir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert not list(two_dir.glob(".*.tmp"))
    run = load_run(two_dir, prefer="last")
    assert run.epoch == 5 and run.classes == load_run(single, prefer="last").classes
    # each process drew from its own RNG stream (seed + rank), and the checkpoint keeps both for the resume
    ranks = load_checkpoint(two_dir / "last.pt")["rng_ranks"]
    assert len(ranks) == 2
    assert not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])
    # every rank reads the checkpoint back on resume (FSDP: full state -> shards); a finished run trains nothing
    _train(data, two_dir, 2, 4, f"train.strategy={strategy}", "train.resume=auto")
    assert len(_rows(two_dir / "train_log.csv")) == 20


@pytest.mark.slow
def test_ce_only_recipe_trains_under_ddp(data: Path, tmp_path: Path) -> None:
    """Regression: with AVC and IMC off the projection heads get no gradient, and DDP without
    find_unused_parameters stopped at the second step ("Expected to have finished reduction ...")."""
    out = tmp_path / "ce"
    _train(data, out, 2, 4, "loss.avc_weight=0", "loss.imc_weight=0", "train.epochs=1")
    assert len(_rows(out / "train_log.csv")) == 4


def _pretrain(data: Path, out: Path, nproc: int, batch_size: int, *extra: str) -> None:
    """``avformer pretrain`` of a 1-block VATT on the synthetic clips (no text: NCE only), 5 epochs of 4 steps."""
    cfg = {
        "name": "ddp_vatt",
        "train_manifest": str(data / "tr.csv"),
        "val_manifest": str(data / "va.csv"),
        "model": {
            "name": "vatt_tiny",
            "overrides": {
                "embed_dim": 32,
                "depth": 1,
                "num_heads": 2,
                "num_frames": 4,
                "img_size": 32,
                "tubelet_size": [2, 16, 16],
                "num_samples": 16000,
                "audio_patch_size": 400,
                "vocab_size": 257,
                "text_word_dim": 8,
                "va_dim": 16,
                "vt_dim": 8,
                # no randomness that depends on the process count: no DropToken (global RNG), and no BatchNorm in
                # the heads (its statistics are per process, so 2 x 4 clips would not normalise like 8)
                "drop_token_rate": 0.0,
                "head_batch_norm": False,
            },
        },
        "data": {
            "clip_seconds": 1.0,
            "video": {"num_frames": 4, "fps": 4.0, "size": 32, "short_side": 32},
            "audio": {"kind": "waveform", "num_samples": 16000},
        },
        "optim": {"lr": 1e-3},
        "train": {
            "epochs": 5,
            "batch_size": batch_size,
            "device": "cpu",
            "tensorboard": False,
            "log_every": 1,
            "best_metric": "a2v_mAP",
            "out_dir": str(out),
        },
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    args = ["--config", str(path), *extra]
    _avformer("pretrain", args, nproc)


@pytest.mark.slow
def test_vatt_pretraining_under_torchrun_follows_one_process(data: Path, tmp_path: Path) -> None:
    """NCE negatives gathered from both processes: 2 x 4 clips train like 8 in one process (loss curve, retrieval)."""
    one, two = tmp_path / "one", tmp_path / "two"
    _pretrain(data, one, 1, 8)
    _pretrain(data, two, 2, 4)
    a, b = _rows(one / "train_log.csv"), _rows(two / "train_log.csv")
    assert len(a) == len(b) == 20
    for ra, rb in zip(a, b, strict=True):
        assert ra["step"] == rb["step"]
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), rel=1e-3), ra["step"]
    ea, eb = _rows(one / "metrics.csv"), _rows(two / "metrics.csv")
    for ra, rb in zip(ea, eb, strict=True):  # every val clip embedded once across the two processes
        assert float(ra["val_a2v_mAP"]) == pytest.approx(float(rb["val_a2v_mAP"]), abs=1e-6)
    assert sorted(p.name for p in two.glob("*.pt")) == ["best.pt", "last.pt"]
