"""The class list of a run folder: ``classes.txt``, one class name a line, in logit order."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CLASSES_FILE", "read_classes", "write_classes"]

CLASSES_FILE = "classes.txt"


def write_classes(out_dir: str | Path, classes: list[str]) -> Path:
    """Write ``classes.txt`` into ``out_dir`` (created when missing)."""
    path = Path(out_dir) / CLASSES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if any("\n" in c for c in classes):
        raise ValueError("class names cannot contain newlines")
    path.write_text("".join(f"{c}\n" for c in classes))
    return path


def read_classes(run_dir: str | Path) -> list[str]:
    """The class names of a run folder (FileNotFoundError naming the file when it is missing)."""
    path = Path(run_dir) / CLASSES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a run folder written by `avformer train` holds its class names")
    return path.read_text().splitlines()
