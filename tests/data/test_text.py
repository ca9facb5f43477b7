"""Text sources of a clip: manifest column, sidecar .srt / .txt, container subtitle stream."""

from __future__ import annotations

from pathlib import Path

from avformer.data.manifest import Manifest, ManifestRow
from avformer.data.text import parse_srt, resolve_text, subtitle_stream_text, with_resolved_text
from tests._paths import shared_path

SRT = (
    "1\n00:00:00,000 --> 00:00:01,500\n<i>first</i>\ncue\n\n2\n00:00:02,000 --> 00:00:03,000\nsecond\n\nbroken block\n"
)


def test_parse_srt_window_and_tags() -> None:
    assert parse_srt(SRT) == ["first cue", "second"]
    assert parse_srt(SRT, start=1.6, end=2.5) == ["second"]
    assert parse_srt(SRT, start=0.0, end=1.0) == ["first cue"]
    assert parse_srt("\ufeff" + SRT.replace("\n", "\r\n")) == ["first cue", "second"]


def test_resolve_order(tmp_path: Path) -> None:
    media = tmp_path / "clip.mp4"
    media.write_bytes(b"")  # never opened: a sidecar wins before the subtitle stream
    row = ManifestRow(path=str(media))
    assert resolve_text(row) is None
    (tmp_path / "clip.txt").write_text("line one\n\nline two\n")
    assert resolve_text(row) == "line one\nline two"
    (tmp_path / "clip.srt").write_text(SRT)
    assert resolve_text(row) == "first cue\nsecond"
    assert resolve_text(ManifestRow(path=str(media), text="given")) == "given"
    assert resolve_text(row, sidecar=False) is None  # an empty file has no subtitle stream
    man = with_resolved_text(Manifest([row, ManifestRow(path=str(tmp_path / "none.mp4"))]))
    assert [r.text for r in man] == ["first cue\nsecond", None]


def test_subtitle_stream_of_real_files() -> None:
    nasa = shared_path("media/labeled/torchcodec__nasa_13013.mp4")
    segs = subtitle_stream_text(str(nasa))
    assert len(segs) >= 3 and segs[0].startswith("NAR: This is the optical")
    assert len(subtitle_stream_text(str(nasa), 0.0, 1.0)) < len(segs)
    mkv = shared_path("media/robust/androidx-media__mkv__sample_with_srt.mkv")
    assert subtitle_stream_text(str(mkv))[0] == "This is the first subtitle."
    assert subtitle_stream_text(str(shared_path("media/labeled/grid__swwp2s.align"))) == []
