"""avformer eval: metrics side by side, eval.json / predictions.csv / PNGs, skipped files, multi-clip, errors."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from avformer.cli.eval import main
from avformer.data.synth import CLASS_NAMES
from tests.cli._tiny_run import VIDEO, make_run, make_synth, write_video_only


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def av_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run_av"), "av")


def _rows(manifest: Path) -> list[dict[str, str]]:
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_manifest(path: Path, rows: list[tuple[str, str]], column: str = "label") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", column])
        w.writerows(rows)
    return path


def _predictions(out: Path) -> list[dict[str, str]]:
    with (out / "predictions.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_eval_writes_report_with_side_by_side_metrics(
    av_run: Path, synth: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(av_run), "--data", str(synth), "--batch-size", "5"]) == 0
    text = capsys.readouterr().out
    assert "fused" in text and "audio" in text and "video" in text and "top-1" in text
    assert "12/12 files evaluated, none skipped" in text
    out = av_run / "eval_manifest"  # default: <run>/eval_<manifest stem>
    report = json.loads((out / "eval.json").read_text())
    assert report["num_rows"] == report["num_loaded"] == 12 and report["num_skipped"] == 0
    assert set(report["metrics"]) == {"fused", "audio", "video"}
    for view in ("fused", "audio", "video"):
        m = report["metrics"][view]
        assert m["num_samples"] == 12
        assert 0 <= m["top1"] <= m["top5"] <= 1
    assert report["classes"] == list(CLASS_NAMES) and report["epoch"] == 3
    assert len(report["confusion"]["fused"]) == len(CLASS_NAMES)
    assert sum(map(sum, report["confusion"]["fused"])) == 12
    for png in ("confusion_matrix.png", "per_class_accuracy.png", "modality_comparison.png"):
        assert (out / png).stat().st_size > 1000
    preds = _predictions(out)
    assert len(preds) == 12
    # the table's top-1 is what predictions.csv says, row by row
    for view in ("fused", "audio", "video"):
        hits = sum(r[f"{view}_pred"] == r["label"] for r in preds)
        assert report["metrics"][view]["top1"] == pytest.approx(hits / 12)
    assert "wrote eval.json, predictions.csv, confusion_matrix.png, per_class_accuracy.png, " in text
    assert "report.md" not in text  # eval names what it wrote, never a report it did not write


def test_eval_png_puts_the_plots_in_their_own_folder(
    av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, pngs = tmp_path / "numbers", tmp_path / "pngs"
    assert main([str(av_run), "--data", str(synth), "--out", str(out), "--png", str(pngs)]) == 0
    assert (out / "eval.json").is_file() and not list(out.glob("*.png"))
    assert sorted(p.name for p in pngs.glob("*.png")) == [
        "confusion_matrix.png",
        "modality_comparison.png",
        "per_class_accuracy.png",
    ]
    assert f"into {pngs}" in capsys.readouterr().out


def test_by_groups_rows_from_a_metadata_csv(
    av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--by CSV:COLUMN: top-1 per group and view equals the row-by-row count in predictions.csv; ids missing from
    the CSV fall in '?'; a malformed spec or an absent column is exit 2."""
    out = tmp_path / "by"
    assert main([str(av_run), "--data", str(synth), "--out", str(out), "--json"]) == 0
    ids = [r["id"] for r in _predictions(out)]
    meta = tmp_path / "meta.csv"
    with meta.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "condition"])
        w.writerows((i, "even" if k % 2 == 0 else "odd") for k, i in enumerate(ids[:-1]))  # the last id: absent
    capsys.readouterr()
    assert main([str(av_run), "--data", str(synth), "--out", str(out), "--by", f"{meta}:condition"]) == 0
    text = capsys.readouterr().out
    assert "top-1 by condition" in text
    groups = json.loads((out / "eval.json").read_text())["groups"]
    assert groups["column"] == "condition" and set(groups["top1"]) == {"even", "odd", "?"}
    preds = _predictions(out)
    for name, members in (("even", preds[0:-1:2]), ("odd", preds[1:-1:2]), ("?", preds[-1:])):
        cell = groups["top1"][name]
        assert cell["n"] == len(members)
        for view in ("fused", "audio", "video"):
            assert cell[view] == pytest.approx(sum(r[f"{view}_pred"] == r["label"] for r in members) / len(members))
    assert main([str(av_run), "--data", str(synth), "--out", str(out), "--by", str(meta)]) == 2
    assert main([str(av_run), "--data", str(synth), "--out", str(out), "--by", f"{meta}:nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


def test_skipped_files_are_counted_and_listed(
    av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = synth.parent
    good = [(str(clips / r["path"]), r["label"]) for r in _rows(synth)[:4]]
    (tmp_path / "garbage.mp4").write_bytes(b"\x00not a video" * 100)
    rows = [*good, (str(tmp_path / "garbage.mp4"), "circle_hum"), (str(tmp_path / "missing.mp4"), "circle_hum")]
    manifest = _write_manifest(tmp_path / "mixed.csv", rows)
    out = tmp_path / "report"
    assert main([str(av_run), "--data", str(manifest), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4/6 files evaluated, 2 skipped" in text
    report = json.loads((out / "eval.json").read_text())
    assert report["num_loaded"] == 4 and report["num_skipped"] == 2
    reasons = {Path(s["id"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"garbage.mp4", "missing.mp4"}
    assert "not found" in reasons["missing.mp4"]
    assert report["metrics"]["fused"]["num_samples"] == 4


def test_audio_only_column_counts_samples_with_audio(
    av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = synth.parent
    rows = [(str(clips / r["path"]), r["label"]) for r in _rows(synth)[:3]]
    rows.append((str(write_video_only(tmp_path / "silent.mp4")), CLASS_NAMES[0]))
    manifest = _write_manifest(tmp_path / "m.csv", rows)
    assert main([str(av_run), "--data", str(manifest), "--out", str(tmp_path / "r"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["fused"]["num_samples"] == 4
    assert report["metrics"]["video"]["num_samples"] == 4
    assert report["metrics"]["audio"]["num_samples"] == 3  # the silent file has no audio to score
    silent = next(r for r in _predictions(tmp_path / "r") if r["id"].endswith("silent.mp4"))
    assert silent["has_audio"] == "False" and silent["audio_pred"] == "" and silent["video_pred"]


def test_multi_clip(av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one, three = tmp_path / "one", tmp_path / "three"
    assert main([str(av_run), "--data", str(synth), "--out", str(one), "--clips", "1"]) == 0
    assert main([str(av_run), "--data", str(synth), "--out", str(three), "--clips", "3"]) == 0
    capsys.readouterr()
    r1, r3 = (json.loads((d / "eval.json").read_text()) for d in (one, three))
    assert r1["num_test_clips"] == 1 and r3["num_test_clips"] == 3
    assert r3["num_loaded"] == 12 and r3["metrics"]["fused"]["num_samples"] == 12
    # 1.5-s files, 1-s windows: three windows are not the centre one, so the pooled scores differ
    p1 = [float(r["fused_prob"]) for r in _predictions(one)]
    p3 = [float(r["fused_prob"]) for r in _predictions(three)]
    assert p1 != p3


def test_multi_crop(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the run resizes the 32-px synthetic frames to 40 px and crops 32: left / centre / right crops differ
    run = make_run(tmp_path / "run", "av", video=replace(VIDEO, short_side=40))
    base, crops = tmp_path / "base", tmp_path / "crops"
    assert main([str(run), "--data", str(synth), "--out", str(base), "--clips", "2"]) == 0
    assert main([str(run), "--data", str(synth), "--out", str(crops), "--clips", "2", "--crops", "3"]) == 0
    assert "2 clip(s) of 1 s x 3 crops per file" in capsys.readouterr().out
    report = json.loads((crops / "eval.json").read_text())
    assert report["num_test_crops"] == 3 and report["metrics"]["fused"]["num_samples"] == 12
    p1 = [float(r["fused_prob"]) for r in _predictions(base)]
    p3 = [float(r["fused_prob"]) for r in _predictions(crops)]
    assert p1 != pytest.approx(p3, abs=1e-6)


def test_checkpoint_file_and_single_modality_model(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = make_run(tmp_path / "audio_run", "audio")
    assert main([str(run / "best.pt"), "--data", str(synth)]) == 0
    text = capsys.readouterr().out
    out = run / "eval_manifest"  # a checkpoint file: the report goes beside it
    report = json.loads((out / "eval.json").read_text())
    assert set(report["metrics"]) == {"audio"}
    assert report["metrics"]["audio"]["num_samples"] == 12
    assert (out / "confusion_matrix.png").exists() and not (out / "modality_comparison.png").exists()
    assert "audio" in text and "fused" not in text


def test_multilabel_manifest(av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = synth.parent
    rows = [
        (str(clips / r["path"]), f"{r['label']};{CLASS_NAMES[(i + 1) % len(CLASS_NAMES)]}")
        for i, r in enumerate(_rows(synth)[:6])
    ]
    manifest = _write_manifest(tmp_path / "ml.csv", rows, column="labels")
    out = tmp_path / "r"
    assert main([str(av_run), "--data", str(manifest), "--out", str(out)]) == 0
    assert "mAP" in capsys.readouterr().out
    report = json.loads((out / "eval.json").read_text())
    assert report["multilabel"] is True
    assert {"mAP", "AUC", "d_prime"} <= set(report["metrics"]["fused"])
    assert (out / "per_class_ap.png").exists() and (out / "modality_comparison.png").exists()


def test_unknown_label_is_a_clear_error(
    av_run: Path, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = synth.parent / _rows(synth)[0]["path"]
    manifest = _write_manifest(tmp_path / "m.csv", [(str(clip), "circle_hum"), (str(clip), "elephant")])
    assert main([str(av_run), "--data", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "'elephant'" in err and "does not know" in err and "classes.txt" in err


def test_bad_run_and_missing_manifest(av_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--data", str(tmp_path / "m.csv")]) == 2
    assert "no best.pt or last.pt" in capsys.readouterr().err
    assert main([str(av_run), "--data", str(tmp_path / "nope.csv")]) == 2
    assert "manifest not found" in capsys.readouterr().err
