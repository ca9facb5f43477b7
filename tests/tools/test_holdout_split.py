"""tools/holdout_split.py: a stratified development split of a training manifest that avformer reads back."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from avformer.data.manifest import read_manifest
from tests.tools._load import load_tool

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    return load_tool("holdout_split")


def _manifest(tmp_path: Path, counts: dict[str, int]) -> Path:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    rows = []
    for label, n in counts.items():
        for i in range(n):
            path = f"train/{label}_{i:03d}.mp4"
            (data / path).write_bytes(b"")
            rows.append((path, label))
    src = data / "train.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return src


def test_the_split_is_stratified_disjoint_complete_and_readable_from_its_folder(tmp_path: Path) -> None:
    tool = _tool()
    src = _manifest(tmp_path, {"a": 30, "b": 10, "c": 5})
    out = tmp_path / "runs" / "holdout"
    assert tool.main([str(src), "--dev", "0.2", "--seed", "3", "--out", str(out)]) == 0
    fit, dev = read_manifest(out / "fit.csv"), read_manifest(out / "dev.csv")
    assert Counter(r.label for r in dev.rows) == Counter({"a": 6, "b": 2, "c": 1})
    fit_paths, dev_paths = {r.path for r in fit.rows}, {r.path for r in dev.rows}
    assert not fit_paths & dev_paths
    everything = {str((src.parent / p).resolve()) for p in (f"train/{x}" for x in _names(src))}
    assert {str(Path(p).resolve()) for p in fit_paths | dev_paths} == everything
    assert all(Path(p).is_file() for p in fit_paths | dev_paths)  # paths resolve from the output folder
    again = tmp_path / "again"
    assert tool.main([str(src), "--dev", "0.2", "--seed", "3", "--out", str(again)]) == 0
    assert _ids(again / "dev.csv") == _ids(out / "dev.csv")
    assert tool.main([str(src), "--dev", "0.2", "--seed", "4", "--out", str(again)]) == 0
    assert _ids(again / "dev.csv") != _ids(out / "dev.csv")


def _ids(path: Path) -> list[str]:
    with path.open() as f:
        return [r["id"] for r in csv.DictReader(f)]


def _names(src: Path) -> list[str]:
    with src.open() as f:
        return [Path(r["path"]).name for r in csv.DictReader(f)]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--dev", "1.5"], "--dev must be in (0, 1)"), (["--dev", "0.1"], "has 1 row")],
)
def test_bad_arguments_get_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    src = _manifest(tmp_path, {"a": 10, "b": 1})
    assert _tool().main([str(src), *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert _tool().main([str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 2
