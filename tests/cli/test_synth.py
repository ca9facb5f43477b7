"""``avformer synth`` in-process."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from avformer.cli.synth import main


def test_synth_cli_writes_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--n", "18"]) == 0
    out = capsys.readouterr().out
    assert "wrote 18 clips" in out and "clips/s" in out
    print(out)
    with (tmp_path / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18
    assert all((tmp_path / r["path"]).is_file() for r in rows)
    for name in ("train.csv", "val.csv", "meta.csv", "classes.txt", "README.txt"):
        assert (tmp_path / name).is_file()


def test_synth_cli_rejects_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--n", "4", "--size", "33"]) == 2
    assert "size" in capsys.readouterr().err
    assert not (tmp_path / "manifest.csv").exists()


def test_synth_via_dispatcher(tmp_path: Path) -> None:
    from avformer.cli.main import main as avformer_main

    assert (
        avformer_main(["synth", str(tmp_path), "--n", "2", "--seconds", "0.5", "--size", "32", "--workers", "1"]) == 0
    )
    assert (tmp_path / "clips" / "000001.mp4").is_file()


def test_synth_cli_unwritable_outdir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert main([str(not_a_dir), "--n", "2", "--seconds", "0.5", "--size", "32", "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"avformer synth: cannot write to {not_a_dir}") and err.count("\n") == 1
