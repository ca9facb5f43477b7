"""XDC and CrissCross through `avformer pretrain`, `probe-linear`, `cluster` and `compare`, on tiny synthetic clips."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from avformer.cli import cluster, pretrain, probe_linear
from avformer.data.synth import SynthConfig, write_dataset
from avformer.models.loading import load_run
from avformer.models.task_heads import TASK_HEADS
from avformer.train.compare import RunResult, Summary, format_pretrain_table, read_probe
from avformer.utils.checkpoint import load_checkpoint

MODEL = {
    "name": "vatt_tiny",
    "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_frames": 4, "img_size": 32,
                  "tubelet_size": [2, 16, 16], "num_samples": 16000, "audio_patch_size": 400, "vocab_size": 97,
                  "text_word_dim": 8, "va_dim": 16, "vt_dim": 8},
}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 synthetic clips of 2 s: train.csv (12, labeled), val.csv (4), and train_shuffled.csv (labels permuted)."""
    root = tmp_path_factory.mktemp("ssl")
    write_dataset(root, SynthConfig(num_clips=16, seconds=2.0, size=32, fps=8), workers=1)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    labels = [r["label"] for r in rows[:12]]
    random.Random(0).shuffle(labels)
    for name, part in (("train", rows[:12]), ("val", rows[12:]), ("train_shuffled", rows[:12])):
        with (root / f"{name}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["path", "label"])
            w.writeheader()
            for i, r in enumerate(part):
                w.writerow({"path": r["path"], "label": labels[i] if name == "train_shuffled" else r["label"]})
    return root


def _config(tmp: Path, root: Path, task: dict[str, Any], **over: Any) -> Path:
    cfg: dict[str, Any] = {
        "name": f"tiny_{task['name']}",
        "train_manifest": str(root / "train.csv"),
        "val_manifest": str(root / "val.csv"),
        "model": MODEL,
        "data": {
            "clip_seconds": 1.0,
            "video": {"num_frames": 4, "fps": 4.0, "size": 32, "short_side": 32},
            "audio": {"kind": "waveform", "num_samples": 16000},
        },
        "task": task,
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "best_metric": "nmi_video", "tensorboard": False, "workers": 0},
    }
    for key, value in over.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    path = tmp / f"{task['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


XDC = {"name": "xdc", "options": {"variant": "xdc", "num_clusters": 2, "kmeans_init": 1}}


def test_xdc_never_reads_a_label_and_reclusters_after_a_resume(data: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path, data, XDC)
    assert pretrain.main(["--config", str(cfg), "--out", str(tmp_path / "a")]) == 0
    shuffled = ["--config", str(cfg), "--out", str(tmp_path / "b"), f"train_manifest={data / 'train_shuffled.csv'}"]
    assert pretrain.main(shuffled) == 0
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # bit-identical training
    assert all(torch.equal(a["task"]["labels"][m], b["task"]["labels"][m]) for m in ("audio", "video"))
    assert a["task"]["round"] == 1  # clustered at the start of epochs 0 and 1
    assert any(k.startswith(f"{TASK_HEADS}.") for k in a["model"])  # the heads train with the model ...
    run = load_run(tmp_path / "a", require_classes=False)
    assert not hasattr(run.model, TASK_HEADS)  # ... and stay out of the model a user loads
    rows = list(csv.DictReader((tmp_path / "a" / "metrics.csv").open()))
    assert all(math.isfinite(float(r["train_loss"])) and 0 <= float(r["val_nmi_video"]) <= 1 for r in rows)
    assert (tmp_path / "a" / "training_curves.png").is_file()
    # resume the finished 2-epoch run for a third epoch: the hook clusters again at its start
    assert pretrain.main(["--config", str(cfg), "--out", str(tmp_path / "a"), "train.epochs=3"]) == 0
    assert load_checkpoint(tmp_path / "a" / "last.pt")["task"]["round"] == 2


def test_crisscross_pretrains_on_two_views_and_probes_and_clusters(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = {"name": "crisscross", "options": {"proj_dim": 16}}
    views = {"views": {"num_views": 2, "view_gap": "adjacent"}}  # 2-s clips: two adjacent 1-s windows
    cfg = _config(
        tmp_path, data, task, data={**yaml.safe_load(_config(tmp_path, data, task).read_text())["data"], **views}
    )
    run = tmp_path / "cc"
    assert pretrain.main(["--config", str(cfg), "--out", str(run), "train.best_metric=a2v_mAP"]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {"train_loss_intra", "train_loss_sync", "train_loss_async", "val_embed_std_video"} <= rows[-1].keys()
    assert all(-1.0 <= float(r["train_loss"]) <= 1.0 for r in rows)  # a mean of negative cosines
    out = tmp_path / "probe.json"
    argv = [str(run / "last.pt"), "--train", str(data / "train.csv"), "--val", str(data / "val.csv")]
    assert probe_linear.main([*argv, "--json", str(out)]) == 0
    probe = read_probe(tmp_path)
    assert {"video", "audio", "video_random", "audio_random"} <= probe.keys()
    csv_out = tmp_path / "clusters.csv"
    meta = tmp_path / "meta.csv"  # another column per clip, as AV-Digits' *_meta.csv: NMI against it too
    val_rows = list(csv.DictReader((data / "val.csv").open()))
    meta.write_text(
        "path,kind,loudness\n" + "".join(f"{r['path']},{'ab'[i % 2]},{i * 1.5}\n" for i, r in enumerate(val_rows))
    )
    argv = [str(run), str(data / "val.csv"), "--k", "2", "--out", str(csv_out)]
    assert cluster.main([*argv, "--by", f"{meta}:kind", "--by", f"{meta}:loudness"]) == 0
    got = list(csv.DictReader(csv_out.open()))
    assert len(got) == 4 and {r["cluster_video"] for r in got} <= {"0", "1"} and all(r["cluster_audio"] for r in got)
    printed = capsys.readouterr().out
    assert "NMI video clusters vs kind:" in printed and "NMI audio clusters vs loudness:" in printed
    trained = [r["cluster_video"] for r in got]
    assert cluster.main([*argv, "--random-init", "--modality", "video", "--k", "3"]) == 0  # the baseline
    fresh = list(csv.DictReader(csv_out.open()))
    assert all(r["cluster_audio"] == "" for r in fresh) and len(fresh) == len(trained)


def test_cluster_errors_are_one_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.main([str(tmp_path / "nothing"), str(data / "val.csv"), "--k", "2"]) == 2
    assert cluster.main([str(tmp_path / "nothing"), str(data / "val.csv"), "--k", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("avformer cluster: error:") for line in err)


def test_pretrain_table_lists_probes_retrieval_and_asked_columns(tmp_path: Path) -> None:
    def run(seed: int, video: float, extras: dict[str, float]) -> RunResult:
        r = RunResult("xdc", seed, str(tmp_path), "val_nmi_video", 0.5, 0.5, 2, 10.0, wall_s=60.0)
        r.probe = {"video": video, "video_random": 0.3, "audio": 0.5, "audio_random": 0.25}
        r.extras = extras
        return r

    runs = [run(0, 0.70, {"nmi_video": 0.4}), run(1, 0.80, {"nmi_video": 0.6, "a2v_mAP": 0.5})]
    s = Summary("xdc", "x.yaml", "vatt_tiny", runs, None, "val_nmi_video", task="xdc")
    s.probe = {"video": (0.75, 0.0707), "video_random": (0.3, 0.0), "audio": (0.5, 0.0), "audio_random": (0.25, 0.0)}
    s.extras = {"nmi_video": (0.5, 0.1414), "a2v_mAP": (0.5, 0.0)}
    table = format_pretrain_table([s], columns=["nmi_video", "embed_std_video"], command="avformer compare ...")
    assert (
        "| xdc | xdc | 75.0 ± 7.1 | 30.0 ± 0.0 | 50.0 ± 0.0 | 25.0 ± 0.0 | 0.500 ± 0.000 | 0.500 ± 0.141 | n/a |"
        in table
    )
    assert "0: video 70.0 / audio 50.0, 1: video 80.0 / audio 50.0" in table
    (tmp_path / "probe.json").write_text(json.dumps({"pretrained": {"video": {"top1": 0.5}}, "random_init": {}}))
    assert read_probe(tmp_path) == {"video": 0.5}


@pytest.mark.slow
def test_compare_pretrains_probes_and_tabulates_self_supervised_configs(data: Path, tmp_path: Path) -> None:
    from avformer.cli import compare

    cfg = _config(tmp_path, data, XDC, train={"epochs": 1})
    out = tmp_path / "cmp"
    argv = ["--configs", str(cfg), "--seeds", "0", "--out", str(out), "--columns", "nmi_video"]
    argv += ["--probe", str(data / "train.csv"), str(data / "val.csv")]
    assert compare.main(argv) == 0
    run = out / "tiny_xdc" / "seed0"
    assert (run / "probe.json").is_file() and "probe-linear" in (run / "train.out").read_text()
    table = (out / "table.md").read_text()
    assert "| config | task | video probe |" in table and "| tiny_xdc | xdc |" in table
    # a second call trains nothing and probes nothing: both are up to date
    assert compare.main(argv) == 0
    assert (run / "train.out").read_text().count("$ ") == 2
