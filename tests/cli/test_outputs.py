"""Output names of the per-file commands (predict, sync, localize): two inputs of one name never share a file."""

from __future__ import annotations

from pathlib import Path

from avformer.cli.outputs import unique_output


def test_same_names_get_numbered(tmp_path: Path) -> None:
    used: set[Path] = set()
    names = [unique_output(tmp_path, p, ".png", used) for p in ("a/clip.mp4", "b/clip.mp4", "clip.mp4", "x.wav")]
    assert [n.name for n in names] == ["clip.mp4.png", "clip.mp4-2.png", "clip.mp4-3.png", "x.wav.png"]
    assert unique_output(tmp_path, "a/clip.mp4", ".mp4", used).name == "clip.mp4.mp4"  # another suffix: free
    assert unique_output(tmp_path, "", ".png", used).name == "input.png"
