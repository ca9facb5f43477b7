"""``avformer localize``: pictures of files, evaluation on a manifest, one-line errors with exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avformer.cli.localize import main
from tests._paths import shared_path
from tests.eval._avc_run import make_avc_run, make_events_data


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_avc_run(tmp_path_factory.mktemp("avc") / "run")


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_events_data(tmp_path_factory.mktemp("events"))


def _one_line_error(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all("error:" in ln for ln in lines), err
    assert "Traceback" not in err


def test_pictures_and_mp4(run: Path, events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = events / "clips" / "000002.mp4"
    rc = main([str(clip), "--run", str(run), "--out", str(tmp_path), "--mp4", "--heatmap", "gradient"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "000002.mp4.png").stat().st_size > 1000 and (tmp_path / "000002.mp4.mp4").is_file()
    assert "p(match)" in out and "peak (" in out


def test_eval_json(run: Path, events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--run", str(run), "--eval", str(events / "val.csv"), "--mosaic", "--json", "--batch-size", "4"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0
    n_val = len((events / "val.csv").read_text().splitlines()) - 1
    assert n_val >= 4 and res["clips"] == n_val and res["skipped"] == 0
    assert {"avol_acc", "pointing", "pointing_gradient", "pointing_chance"} <= set(res)
    assert res["mosaic_trials"] == 4 * (n_val // 4)  # each audio of each full group of four


def test_user_mistakes_exit_2_with_one_line(
    run: Path, events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = str(events / "clips" / "000002.mp4")
    cases = [
        ["--run", str(run)],  # neither files nor --eval
        [clip, "--run", str(run), "--eval", str(events / "val.csv")],  # both
        [clip, "--run", str(run), "--mosaic"],
        [clip, "--run", str(tmp_path / "no_run")],
        ["--run", str(run), "--eval", str(tmp_path / "missing.csv")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        _one_line_error(capsys.readouterr().err)


def test_a_bad_file_is_one_line_and_the_others_still_run(
    run: Path, events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    good = events / "clips" / "000003.mp4"
    rc = main([str(tmp_path / "absent.mp4"), str(bad), str(good), "--run", str(run), "--out", str(tmp_path / "png")])
    cap = capsys.readouterr()
    assert rc == 1
    _one_line_error(cap.err)
    assert len(cap.err.strip().splitlines()) == 2
    assert "3 files: 1 localised, 2 failed" in cap.out


def test_real_media_give_a_result_or_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_path("media", "labeled")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".mp4", ".avi", ".mkv", ".gif", ".mpg"})[:4]
    rc = main([*map(str, files), "--run", str(run), "--out", str(tmp_path)])
    cap = capsys.readouterr()
    assert rc in (0, 1)
    assert "Traceback" not in cap.err
    results = [ln for ln in cap.out.splitlines() if "p(match)" in ln]
    errors = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(results) + len(errors) == len(files)
    assert all(": error: " in ln for ln in errors)
