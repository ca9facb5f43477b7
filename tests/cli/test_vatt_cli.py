"""VATT commands end to end on a tiny synthetic captioned set: pretrain, probe-linear, embed, retrieve, vatt-bench."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from avformer.cli import embed, pretrain, probe_linear, retrieve
from avformer.cli import eval as eval_cli
from avformer.cli import train as train_cli
from avformer.data.manifest import Manifest
from avformer.data.synth import SynthConfig, write_dataset
from avformer.models.loading import load_run, load_vatt_run
from avformer.models.registry import create_model
from avformer.models.vatt_classifier import VATTClassifier

MODEL = {
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
        "drop_token_rate": 0.5,
    },
}


def _captioned_set(root: Path) -> Path:
    """12 synthetic 1-s clips; train rows alternate caption / no caption, one clip's text comes from a sidecar .srt."""
    write_dataset(root, SynthConfig(num_clips=12, seconds=1.0, size=32, fps=8), workers=1)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    for split, part in (("train", rows[:8]), ("val", rows[8:])):
        with (root / f"{split}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["path", "label", "text"])
            w.writeheader()
            for i, r in enumerate(part):
                text = f"a {r['label']} clip | the sound of {r['label']}" if i % 2 == 0 else ""
                w.writerow({"path": r["path"], "label": r["label"], "text": text})
    first_uncaptioned = list(csv.DictReader((root / "train.csv").open()))[1]["path"]
    (root / first_uncaptioned).with_suffix(".srt").write_text(
        "1\n00:00:00,000 --> 00:00:00,500\n<i>hello</i> there\n\n2\n00:00:05,000 --> 00:00:06,000\nlater\n"
    )
    return root


def _config(tmp: Path, data: Path) -> Path:
    cfg = {
        "name": "tiny_vatt",
        "train_manifest": str(data / "train.csv"),
        "val_manifest": str(data / "val.csv"),
        "model": MODEL,
        "data": {
            "clip_seconds": 1.0,
            "video": {"num_frames": 4, "fps": 4.0, "size": 32, "short_side": 32},
            "audio": {"kind": "waveform", "num_samples": 16000},
        },
        "loss": {"learnable_temperature": True},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "best_metric": "a2v_mAP", "tensorboard": False, "log_every": 1},
    }
    path = tmp / "vatt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("vatt")
    data = _captioned_set(tmp / "data")
    run = tmp / "run"
    assert pretrain.main(["--config", str(_config(tmp, data)), "--out", str(run)]) == 0
    return data, run


def test_pretrain_writes_a_run_with_finite_losses(pretrained: tuple[Path, Path]) -> None:
    _, run = pretrained
    assert (run / "last.pt").is_file() and (run / "config.yaml").is_file()
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 2
    for r in rows:
        assert math.isfinite(float(r["train_loss"])) and math.isfinite(float(r["train_mil_nce"]))
        assert float(r["train_mil_nce"]) > 0  # captioned clips did train the text path
        assert 0 < float(r["train_text_clips"]) < 1  # some clips had text, some not
        assert "val_a2v_mAP" in r and "val_a2v_R@1" in r
    # a pretraining run gets a report like a train run: curves, the retrieval metrics, each term against chance
    report = (run / "report.md").read_text()
    assert "## Final metrics row" in report and "| a2v_mAP |" in report
    assert "## Loss terms against chance" in report
    last = rows[-1]
    assert f"| nce | {float(last['train_nce']):.4f} | {math.log(4):.4f} |" in report  # chance: ln(batch 4)
    assert "labels unused (self-supervised)" in report and "training_curves.png" in report


def test_pretrain_never_reads_labels(tmp_path: Path) -> None:
    data = _captioned_set(tmp_path / "data")
    seen: list[object] = []
    from avformer.tasks import vatt_pretrain as task_mod

    orig = task_mod.VATTPretrainTask.training_step

    def spy(self: task_mod.VATTPretrainTask, batch: dict[str, object]) -> object:
        seen.append(batch["label"])
        return orig(self, batch)

    task_mod.VATTPretrainTask.training_step = spy  # type: ignore[method-assign]
    try:
        cfg = _config(tmp_path, data)
        assert pretrain.main(["--config", str(cfg), "--out", str(tmp_path / "r"), "train.epochs=1"]) == 0
    finally:
        task_mod.VATTPretrainTask.training_step = orig  # type: ignore[method-assign]
    assert seen and all(bool((lab == -1).all()) for lab in seen)  # type: ignore[union-attr]


def test_pretrain_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _captioned_set(tmp_path / "data")
    cfg = _config(tmp_path, data)
    assert pretrain.main(["--config", str(cfg), "model.name=mat_tiny"]) == 2
    assert "unknown override" in capsys.readouterr().err
    assert pretrain.main(["--config", str(cfg), "data.modalities=[audio]"]) == 2


def test_probe_linear_reports_pretrained_and_random(
    pretrained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = pretrained
    out = tmp_path / "probe.json"
    args = [str(run), "--train", str(data / "train.csv"), "--val", str(data / "val.csv"), "--json", str(out)]
    assert probe_linear.main(args) == 0
    printed = capsys.readouterr().out
    assert "| video |" in printed and "zero-shot retrieval on val (pretrained): a2v_R@1" in printed
    res = json.loads(out.read_text())
    assert "a2v_mAP" in res["pretrained"]["retrieval"] and "t2v_R@1" in res["pretrained"]["retrieval"]
    for name in ("pretrained", "random_init"):
        for mod in ("video", "audio"):
            assert 0.0 <= res[name][mod]["top1"] <= 1.0
    assert res["params"] > 0


def test_embed_and_retrieve(pretrained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = pretrained
    idx = tmp_path / "index"
    assert embed.main([str(run), str(data / "train.csv"), "--out", str(idx)]) == 0
    emb = torch.load(idx / "embeddings.pt", weights_only=True)
    rows = list(csv.DictReader((idx / "index.csv").open()))
    assert len(rows) == len(emb["ids"]) == emb["video_va"].shape[0]
    assert emb["has_text"].sum() >= 2  # captions + the sidecar .srt
    assert any(r["text"] == "hello there\nlater" for r in rows)  # the sidecar .srt's cues, tags removed
    metrics = json.loads((idx / "retrieval.json").read_text())
    assert {"a2v_R@1", "a2v_mAP", "t2v_R@1"} <= set(metrics)

    capsys.readouterr()
    assert retrieve.main([str(idx), "--text", rows[0]["text"].split(" | ")[0], "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    query = str(Path(rows[0]["path"]))
    assert retrieve.main([str(idx), "--file", query, "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and all(-1.0 <= h["score"] <= 1.0 for h in hits)


def test_retrieve_needs_a_query(pretrained: tuple[Path, Path]) -> None:
    with pytest.raises(SystemExit):
        retrieve.main(["somewhere"])


def test_vatt_bench_writes_the_table(tmp_path: Path) -> None:
    from avformer.cli import vatt_bench

    data = _captioned_set(tmp_path / "data")
    cfg = _config(tmp_path, data)
    ma = tmp_path / "ma.yaml"
    ma.write_text(f"inherit: {cfg.name}\nname: tiny_vatt_ma\nmodel: {{name: vatt_ma_tiny}}\n")
    out = tmp_path / "bench"
    args = ["--configs", str(cfg), str(ma), "--droptoken-ablation", "--out", str(out), "--bench-steps", "2"]
    assert vatt_bench.main([*args, "--set", "train.epochs=1"]) == 0
    table = (out / "table.md").read_text()
    assert "tiny_vatt (DropToken 0)" in table and "tiny_vatt_ma" in table and "ratio" in table
    res = json.loads((out / "results.json").read_text())
    assert len(res["rows"]) == 3 and res["droptoken"]["ratio"] > 0
    assert res["rows"][1]["params"] < res["rows"][0]["params"]  # one shared trunk instead of three
    assert vatt_bench.main(["--configs", str(cfg), "--out", str(out), "--table-only"]) == 0


def test_probe_linear_keeps_train_class_indices_when_val_lacks_classes(
    pretrained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a val set without some train classes was read with its own (shorter) class list, so its label
    indices no longer matched the classifier's and the probe's top-1 was silently wrong."""
    data, run = pretrained
    rows = list(csv.DictReader((data / "val.csv").open()))
    keep = [r for r in rows if r["label"] in ("circle_hum", "circle_rattle")]  # not circle_chirp, sorted before
    assert len(keep) == 2
    val = tmp_path / "val_subset.csv"
    with val.open("w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label"])
        w.writeheader()
        w.writerows({"path": str(data / r["path"]), "label": r["label"]} for r in keep)
    seen: dict[str, Manifest] = {}
    real = probe_linear.read_manifest

    def spy(path: object, *args: object, **kwargs: object) -> Manifest:
        man = real(path, *args, **kwargs)  # type: ignore[arg-type]
        seen[Path(str(path)).name] = man
        return man

    monkeypatch.setattr(probe_linear, "read_manifest", spy)
    args = [str(run), "--train", str(data / "train.csv"), "--val", str(val), "--no-baseline"]
    assert probe_linear.main(args) == 0
    train_classes = seen["train.csv"].classes
    assert seen["val_subset.csv"].classes == train_classes
    assert sorted(r.labels[0] for r in seen["val_subset.csv"].rows) == ["circle_hum", "circle_rattle"]


def test_pretrain_refuses_too_few_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _captioned_set(tmp_path / "data")
    cfg = _config(tmp_path, data)
    assert pretrain.main(["--config", str(cfg), "--out", str(tmp_path / "r"), "train.batch_size=16"]) == 2
    assert "fewer than one batch" in capsys.readouterr().err


def test_text_embeddings_are_taken_in_eval_mode(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    """Regression: the text tower ran after the model was put back in training mode (drop-path active)."""
    from avformer.config import load
    from avformer.data.manifest import read_manifest
    from avformer.eval.representations import extract_embeddings
    from avformer.models.registry import create_model

    data, _ = pretrained
    cfg = load(_config(tmp_path, data))
    torch.manual_seed(0)
    model = create_model(MODEL["name"], **{**MODEL["overrides"], "depth": 3}, drop_path_rate=0.9)
    model.train()
    man = read_manifest(data / "train.csv")
    a = extract_embeddings(model, man, cfg.data, batch_size=4)
    b = extract_embeddings(model, man, cfg.data, batch_size=4)
    assert a.text_vt is not None and b.text_vt is not None and bool(a.has_text.any())  # type: ignore[union-attr]
    assert torch.equal(a.text_vt, b.text_vt)
    assert model.training  # restored


def test_classifier_from_a_pretrained_run(pretrained: tuple[Path, Path]) -> None:
    _, run = pretrained
    _, vatt, _ = load_vatt_run(run)
    clf = create_model("vatt_classifier", init_from=str(run), modality="video", num_classes=3)
    assert isinstance(clf, VATTClassifier) and clf.input_kind == "video" and clf.vatt.drop_token_rate == 0.0
    names = {n for n, _ in clf.named_parameters()}
    assert not any(".audio" in n or ".text" in n or "head_" in n or "logit_scale" in n for n in names)
    for n, p in vatt.trunk_of("video").named_parameters():  # the pretrained video trunk, weight for weight
        assert torch.equal(clf.vatt.trunk_of("video").get_parameter(n), p), n
    clf.eval()
    x = torch.randn(2, 3, 4, 32, 32)
    assert clf(x).shape == (2, 3)
    with torch.no_grad():  # the encoder computes what the pretrained VATT's video tower computes
        torch.testing.assert_close(clf.forward_features(x).pooled, vatt.encode("video", x).pooled)
    audio = create_model("vatt_classifier", init_from=str(run), modality="audio", num_classes=3)
    assert audio.input_kind == "waveform" and audio(torch.randn(2, 1, 16000)).shape == (2, 3)
    with pytest.raises(ValueError, match="no such run"):
        create_model("vatt_classifier", init_from=str(run / "nope"), num_classes=3)
    with pytest.raises(ValueError, match="change the pretrained architecture"):
        create_model("vatt_classifier", init_from=str(run), num_classes=3, embed_dim=48, num_heads=2)


def test_finetune_with_avformer_train_then_eval(pretrained: tuple[Path, Path], tmp_path: Path) -> None:
    data, original = pretrained
    run = tmp_path / "pretrain"  # a copy, removed after fine-tuning: the fine-tuned run must not need it
    shutil.copytree(original, run)
    cfg = {
        "name": "tiny_vatt_ft",
        "train_manifest": str(data / "train.csv"),
        "val_manifest": str(data / "val.csv"),
        "classes": str(data / "classes.txt"),
        "model": {"name": "vatt_classifier", "overrides": {"init_from": str(run), "modality": "video"}},
        "data": {
            "modalities": ["video"],
            "clip_seconds": 1.0,
            "video": {"num_frames": 4, "fps": 4.0, "size": 32, "short_side": 32},
        },
        "train": {"epochs": 2, "batch_size": 4, "tensorboard": False, "out_dir": str(tmp_path / "ft")},
    }
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_cli.main(["--config", str(path)]) == 0
    rows = list(csv.DictReader((tmp_path / "ft" / "metrics.csv").open()))
    assert len(rows) == 2 and all(math.isfinite(float(r["train_loss"])) for r in rows)
    with_pretrain = load_run(tmp_path / "ft")
    shutil.rmtree(run)
    loaded = load_run(tmp_path / "ft")
    assert isinstance(loaded.model, VATTClassifier)
    x = torch.randn(2, *loaded.model.default_input)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), with_pretrain.model(x))
    assert eval_cli.main([str(tmp_path / "ft"), "--data", str(data / "val.csv")]) == 0
