"""Tests for ``avformer probe`` (in-process ``main``): one line per file, summary line, exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avformer.cli.probe import main
from tests._paths import shared_path

OK_FILES = ["androidx-media__mp4__sample_fragmented.mp4", "androidx-media__wav__sample_8bit.wav"]
PARTIAL = "decord__corrupted.mp4"


def _robust(name: str) -> str:
    return str(shared_path("media", "robust", name))


@pytest.fixture
def garbage(tmp_path: Path) -> str:
    p = tmp_path / "garbage.mp4"
    p.write_bytes(b"\x00\x01not a media file\n" * 500)
    return str(p)


def test_all_ok_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    files = [_robust(f) for f in OK_FILES]
    assert main(files) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("ok ") and files[0] in lines[0]
    assert "mov" in lines[0] and "v:h264 1080x720" in lines[0] and "a:aac 44100Hz 1ch" in lines[0]
    assert lines[1].startswith("ok-audio-only") and "a:pcm_u8 44100Hz 1ch" in lines[1]
    assert lines[2] == "2 files: 2 ok, 0 partial (usable), 0 unusable"


def test_unusable_file_exits_one(capsys: pytest.CaptureFixture[str], garbage: str) -> None:
    files = [_robust(OK_FILES[0]), _robust(PARTIAL), garbage]
    assert main(files) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4  # one line per file, however long the reason
    assert lines[1].startswith("partial") and "after 28 frames" in lines[1]
    assert lines[2].startswith("error") and garbage in lines[2] and "| cannot open" in lines[2]
    assert lines[3] == "3 files: 1 ok, 1 partial (usable), 1 unusable"


def test_partial_alone_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([_robust(PARTIAL)]) == 0  # partial files are usable
    assert "1 partial (usable)" in capsys.readouterr().out


def test_json_lines(capsys: pytest.CaptureFixture[str], garbage: str) -> None:
    assert main(["--json", _robust(OK_FILES[0]), garbage]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r.get("status") for r in records[:2]] == ["ok", "error"]
    assert records[0]["container"] == "mov" and [s["kind"] for s in records[0]["streams"]] == ["video", "audio"]
    assert records[0]["usable"] and not records[1]["usable"] and records[1]["reason"]
    assert records[2] == {"summary": {"files": 2, "ok": 1, "partial": 0, "unusable": 1}}


def test_missing_file_is_an_error_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([str(tmp_path / "missing.mkv")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("error") and "file not found" in out


def test_a_manifest_is_probed_row_by_row(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    clip = shared_path("media", "labeled", "grid__bbaf2n.mpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{clip},a\n{clip},a\n{tmp_path / 'gone.mp4'},b\n")
    assert main([str(manifest)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("ok") and str(clip) in out[0]  # one line per distinct file
    assert out[-1] == "2 files: 1 ok, 0 partial (usable), 1 unusable"
    not_a_manifest = tmp_path / "notes.csv"
    not_a_manifest.write_text("just,some\ntext,here\n")
    assert main([str(not_a_manifest)]) == 1  # probed as a file: it says what it is
    assert "notes.csv" in capsys.readouterr().out
