"""tools/av_digits_lso.py: leave-speaker-out folds of AV-Digits (on a fake folder, and on the real meta files when
they are there), the per-fold ``avformer compare`` commands, and mean ± std over the folds."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from avformer.config import apply_overrides, load
from avformer.data.manifest import read_manifest
from tests._paths import shared_path
from tests.tools._load import load_tool

ROOT = Path(__file__).resolve().parents[2]
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


def _tool() -> ModuleType:
    return load_tool("av_digits_lso")


lso = _tool()


@pytest.fixture
def fake_data(tmp_path: Path) -> Path:
    """An AV-Digits-shaped folder: 6 speakers, 3 train and 1 val clip each (empty files), meta and manifests."""
    data = tmp_path / "av-digits"
    for split, per_speaker in (("train", 3), ("val", 1)):
        (data / split).mkdir(parents=True)
        rows = []
        for i in range(per_speaker * len(SPEAKERS)):
            speaker = SPEAKERS[(i * 5) % len(SPEAKERS)]  # speakers interleaved, as the shuffled ids are
            path = f"{split}/{i:05d}.mp4"
            (data / path).touch()
            rows.append([path, str(i % 10), "clean", f"fsdd:{speaker}:{i}", "3"])
        with (data / f"{split}_meta.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "condition", "audio_source", "image_rank"])
            w.writerows(rows)
        with (data / f"{split}.csv").open("w", newline="") as f:
            csv.writer(f).writerows([["path", "label"], *[r[:2] for r in rows]])
    return data


def _speaker_of(data: Path) -> dict[str, str]:
    out = {}
    for split in ("train", "val"):
        with (data / f"{split}_meta.csv").open(newline="") as f:
            out |= {str((data / r["path"]).resolve()): r["audio_source"].split(":")[1] for r in csv.DictReader(f)}
    return out


def test_folds_hold_out_every_speaker_once_and_never_train_on_them(fake_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "lso"
    assert lso.main(["folds", str(fake_data), "--out", str(out)]) == 0
    info = json.loads((out / "folds.json").read_text())
    speaker_of = _speaker_of(fake_data)
    held = [s for f in info["folds"] for s in f["holdout"]]
    assert len(info["folds"]) == 3 and all(len(f["holdout"]) == 2 for f in info["folds"])
    assert sorted(held) == SPEAKERS  # a partition: every speaker held out exactly once
    for fold in info["folds"]:
        d = out / f"fold{fold['fold']}"
        train, val = read_manifest(d / "train.csv"), read_manifest(d / "val.csv")
        train_speakers = {speaker_of[str(Path(r.path).resolve())] for r in train}  # paths resolve to the data
        val_speakers = {speaker_of[str(Path(r.path).resolve())] for r in val}
        assert train_speakers.isdisjoint(fold["holdout"])  # the protocol's point
        assert val_speakers == set(fold["holdout"]) and train_speakers == set(fold["train_speakers"])
        assert len(train) + len(val) == len(speaker_of) == 24  # both official splits are the pool
        assert (len(train), len(val)) == (fold["train"], fold["val"]) == (16, 8)
        assert all(Path(r.path).is_file() for r in [*train, *val])
        assert {r.id for r in val} <= {f"{s}/{i:05d}.mp4" for s in ("train", "val") for i in range(18)}
        assert all(r.labels == (str(int(r.id[-9:-4]) % 10),) for r in [*train, *val])  # labels kept
        with (d / "val_meta.csv").open(newline="") as f:
            meta = list(csv.DictReader(f))
        assert [m["id"] for m in meta] == [r.id for r in val] and {m["speaker"] for m in meta} == set(fold["holdout"])


def test_folds_options(fake_data: Path, tmp_path: Path) -> None:
    info = lso.write_folds(fake_data, tmp_path / "a", splits=("train",))
    assert [(f["train"], f["val"]) for f in info["folds"]] == [(12, 6)] * 3  # official train only
    info = lso.write_folds(fake_data, tmp_path / "b", holdout=1, folds=2, seed=3)
    assert len(info["folds"]) == 2 and len({s for f in info["folds"] for s in f["holdout"]}) == 2
    assert (
        lso.write_folds(fake_data, tmp_path / "c", seed=3)["folds"]
        != lso.write_folds(fake_data, tmp_path / "d")["folds"]
    )
    assert lso.main(["folds", str(fake_data), "--out", str(tmp_path / "e"), "--holdout", "6"]) == 2
    (fake_data / "val_meta.csv").write_text("path,label,audio_source\nval/00000.mp4,1,librispeech:x\n")
    assert lso.main(["folds", str(fake_data), "--out", str(tmp_path / "f")]) == 2


def test_real_av_digits_folds(tmp_path: Path) -> None:
    data = shared_path("av-digits")
    info = lso.write_folds(data, tmp_path)
    assert info["speakers"] == SPEAKERS
    assert [(f["train"], f["val"]) for f in info["folds"]] == [(2000, 1000)] * 3


def _fake_results(path: Path, rows: list[dict[str, Any]], command: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"configs": rows, "command": command}))


def test_run_calls_compare_per_fold_and_aggregates(
    fake_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "lso"
    lso.write_folds(fake_data, out)
    config = "configs/experiment/av_digits_mmt_tiny.yaml"
    calls: list[list[str]] = []
    fused = {0: 0.90, 1: 0.80, 2: 0.85}

    def fake_run(argv: list[str], check: bool) -> Any:
        calls.append(argv)
        run_out = Path(argv[argv.index("--out") + 1])
        k = int(run_out.parent.name.removeprefix("fold"))
        held = json.loads((out / "folds.json").read_text())["folds"][k]["holdout"]
        groups = {s: {"n": 4.0, "fused": fused[k], "audio": 0.5} for s in held}
        row = {"config": "mmt", "metric": "val_top1", "mean": fused[k], "std": 0.01, "audio": [0.5 + k / 10, 0.0]}
        _fake_results(run_out / "results.json", [row | {"video": [0.7, 0.0], "groups": groups}])
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(lso.subprocess, "run", fake_run)
    assert (
        lso.main(["run", "--out", str(out), "--configs", config, "--seeds", "0", "1", "--set", "train.epochs=1"]) == 0
    )
    assert len(calls) == 3
    for k, argv in enumerate(calls):
        assert argv[1:4] == ["-m", "avformer", "compare"] and argv[argv.index("--seeds") + 1 : argv.index("--out")] == [
            "0",
            "1",
        ]
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        d = out / f"fold{k}"
        assert sets == ["train.epochs=1", f"train_manifest={d / 'train.csv'}", f"val_manifest={d / 'val.csv'}"]
        assert argv[argv.index("--by") + 1] == f"{d / 'val_meta.csv'}:speaker" and "--probe" not in argv
        assert argv[argv.index("--out") + 1] == str(d / "av_digits_mmt_tiny")  # one folder per config
        cfg = apply_overrides(load(ROOT / config), sets)  # compare accepts these overrides
        assert cfg.train_manifest == str(d / "train.csv") and cfg.val_manifest == str(d / "val.csv")
    result = json.loads((out / "lso.json").read_text())
    values = result["configs"]["mmt"]["values"]
    assert values["val_top1"]["mean"] == pytest.approx(0.85) and values["val_top1"]["n"] == 3
    assert values["val_top1"]["std"] == pytest.approx(statistics.stdev([0.9, 0.8, 0.85]))
    assert values["audio_top1"]["folds"] == pytest.approx([0.5, 0.6, 0.7]) and values["video_top1"]["std"] == 0
    assert sorted(result["configs"]["mmt"]["speakers"]) == SPEAKERS
    assert result["configs"]["mmt"]["speakers"]["george"]["n"] == 4
    table = (out / "lso.md").read_text()
    assert "| mmt | 0.600 ± 0.100 [3] | 0.850 ± 0.050 [3] | 0.700 ± 0.000 [3] |" in table


def test_table_reports_missing_folds_and_probes(fake_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "lso"
    lso.write_folds(fake_data, out)
    for k, v in ((0, 0.6), (2, 0.4)):
        probe = {"audio": [v, 0.02], "video": [0.8, 0.0], "audio_random": [0.3, 0.0]}
        _fake_results(
            out / f"fold{k}" / "vatt" / "results.json",
            [
                {"config": "vatt", "metric": "val_loss"}
                | {
                    "mean": None,
                    "probe": probe,
                }
            ],
        )
    assert lso.main(["table", "--out", str(out)]) == 1  # fold 1 has no results
    result = json.loads((out / "lso.json").read_text())
    assert result["missing_folds"] == [1]
    values = result["configs"]["vatt"]["values"]
    assert values["probe_audio"]["mean"] == pytest.approx(0.5) and values["probe_audio"]["n"] == 2
    assert "val_loss" not in values
    cmds = lso.fold_commands(out, ["vatt.yaml"], seeds=[0], probe=True, folds=[1])
    assert len(cmds) == 1 and cmds[0][cmds[0].index("--probe") + 1 :][:2] == [
        str(out / "fold1" / "train.csv"),
        str(out / "fold1" / "val.csv"),
    ]


def test_two_configs_get_their_own_folders_and_one_table(fake_data: Path, tmp_path: Path) -> None:
    """compare rewrites its results.json: each config has its own folder per fold (two `run` calls may go side by
    side), and the table reads them all."""
    out = tmp_path / "lso"
    lso.write_folds(fake_data, out)
    cmds = lso.fold_commands(out, ["a/base.yaml", "a/aug.yaml"], seeds=[0], folds=[0, 2])
    outs = [argv[argv.index("--out") + 1] for argv in cmds]
    assert outs == [str(out / f"fold{k}" / name) for k in (0, 2) for name in ("base", "aug")]
    assert all(
        argv[argv.index("--configs") + 1 : argv.index("--seeds")] == [c]
        for argv, c in zip(cmds, ["a/base.yaml", "a/aug.yaml"] * 2, strict=True)
    )
    for k in range(3):
        for name, v in (("base", 0.6), ("aug", 0.8)):
            row = {"config": name, "metric": "val_top1", "mean": v + k / 100, "std": 0.0}
            sets = "--set train.epochs=23 " if name == "aug" else ""
            command = f"avformer compare --configs {name}.yaml {sets}--set train_manifest=f/train.csv"
            _fake_results(out / f"fold{k}" / name / "results.json", [row], command)
    assert lso.main(["table", "--out", str(out)]) == 0
    values = json.loads((out / "lso.json").read_text())["configs"]
    # the runs' own overrides are named (the fold manifests are every config's): the table says how each ran
    assert values["aug"]["overrides"] == ["train.epochs=23"] and values["base"]["overrides"] == ["none"]
    assert "- aug: `--set` train.epochs=23" in (out / "lso.md").read_text()
    assert values["base"]["values"]["val_top1"]["folds"] == pytest.approx([0.6, 0.61, 0.62])
    assert values["aug"]["values"]["val_top1"]["folds"] == pytest.approx([0.8, 0.81, 0.82])


def test_linear_baseline_trains_on_the_folds_speakers_and_evaluates_clean_held_out_clips(
    fake_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each clip's features carry (index, copy): the fitted rows are the fold's training speakers with every
    augmented copy, the evaluated ones its held-out clips, clean (copy 0); a perfect model scores 1."""
    import sklearn.pipeline

    out = tmp_path / "lso"
    lso.write_folds(fake_data, out)
    rows = [r for split in ("train", "val") for r in lso.read_speakers(fake_data, split)]
    seen: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = []

    def features(path: Path, copies: int, augment: Any, seed: int, index: int) -> list[list[float]]:
        assert (copies == 2) == (augment is not None) and path == fake_data / rows[index]["path"]
        return [[float(index), float(c)] for c in range(copies + 1)]

    class Model:  # records what it is fitted on and evaluated on, and predicts each clip's own label
        def fit(self, x: Any, y: Any) -> None:
            assert [int(rows[int(i)]["label"]) for i, _ in x] == list(y)
            seen.append(([(int(i), int(c)) for i, c in x], []))

        def predict(self, x: Any) -> list[int]:
            seen[-1][1].extend((int(i), int(c)) for i, c in x)
            return [int(rows[int(i)]["label"]) for i, _ in x]

    monkeypatch.setattr(lso, "_clip_features", features)
    monkeypatch.setattr(sklearn.pipeline, "make_pipeline", lambda *steps: Model())
    config = str(ROOT / "configs/experiment/av_digits_mmt_tiny_aug.yaml")
    result = lso.linear_baseline(fake_data, out, config=config, copies=2)
    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert len(seen) == 4 and next(iter(result["protocols"])) == "in-speaker"
    everything = set(range(len(rows)))
    official = {i for i, r in enumerate(rows) if r["split"] == "train"}
    splits = [(official, everything - official)]
    for f in folds:
        held = {i for i, r in enumerate(rows) if r["speaker"] in f["holdout"]}
        splits.append((everything - held, held))
    for (fit, evaluated), (train, val) in zip(seen, splits, strict=True):
        assert sorted(fit) == sorted((i, c) for i in train for c in range(3))  # every copy, no held-out clip
        assert sorted(evaluated) == [(i, 0) for i in sorted(val)]  # the clean clip only
    assert all(p["top1"] == 1.0 for p in result["protocols"].values()) and result["lso"]["n"] == 3
    assert "2 augmented copies" in (out / "baseline_av_digits_mmt_tiny_aug_x2.md").read_text()
    assert lso.main(["baseline", str(fake_data), "--out", str(out), "--copies", "1"]) == 2  # copies need a config


def test_conditions_evaluates_finished_supervised_runs_once_and_averages_folds(
    fake_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "lso"
    lso.write_folds(fake_data, out)
    calls: list[list[str]] = []

    def fake_eval(argv: list[str], check: bool, env: dict[str, str], stdout: Any) -> Any:
        calls.append(argv)
        run = Path(argv[argv.index("eval") + 1])
        k = int(run.parents[2].name.removeprefix("fold"))
        assert argv[argv.index("--by") + 1] == f"{out / f'fold{k}' / 'val_meta.csv'}:condition"
        top1 = {"clean": {"n": 5, "fused": 0.9, "audio": 0.7 + k / 10, "video": 0.8}}
        report = Path(argv[argv.index("--out") + 1]) / "eval.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps({"groups": {"column": "condition", "top1": top1}}))
        return type("Done", (), {"returncode": 0})()

    def run_folder(k: int, config: str, *, classes: bool = True, finished: bool = True) -> Path:
        run = out / f"fold{k}" / config / config / "seed0"
        run.mkdir(parents=True)
        (run / "last.pt").touch()
        if classes:
            (run / "classes.txt").touch()
        if finished:
            (run.parents[1] / "results.json").touch()
        return run

    for k in range(3):
        run_folder(k, "mmt")
    run_folder(0, "vatt", classes=False)  # self-supervised: no classifier to evaluate
    run_folder(1, "aug", finished=False)  # compare has not finished it
    monkeypatch.setattr(lso.subprocess, "run", fake_eval)
    result = lso.conditions(out)
    assert len(calls) == 3 and set(result) == {"mmt"}
    assert result["mmt"]["clean audio"]["folds"] == pytest.approx([0.7, 0.8, 0.9])
    assert (
        "| mmt | clean | 0.900 ± 0.000 [3] | 0.800 ± 0.100 [3] | 0.800 ± 0.000 [3] |"
        in (out / "conditions.md").read_text()
    )
    lso.conditions(out)  # the reports are kept: nothing is evaluated twice
    assert len(calls) == 3
