"""Atomic checkpoint writes: a failed save never damages the previous file; corrupt files fail clearly."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from avformer.utils import checkpoint
from avformer.utils.checkpoint import (
    CheckpointError,
    load_checkpoint,
    remove_stale_temps,
    save_checkpoint,
    versions,
)


def _state(value: float) -> dict[str, Any]:
    return {"model": {"w": torch.full((64, 64), value)}, "step": int(value), "versions": versions()}


def test_round_trip(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "sub" / "last.pt", _state(3.0))
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.full((64, 64), 3.0))
    assert state["step"] == 3 and state["versions"]["torch"] == torch.__version__
    assert list(path.parent.iterdir()) == [path]  # no temp file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))
    before = path.read_bytes()
    real_save = torch.save

    def partial_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a zip archive")  # some bytes reach the disk, then the disk is full
        raise exc

    monkeypatch.setattr(checkpoint.torch, "save", partial_save)
    with pytest.raises(type(exc)):
        save_checkpoint(path, _state(2.0))
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temp file was removed


def test_a_full_disk_mid_write_is_reported_as_enospc_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's zip writer turns a failed write into ``RuntimeError: ... unexpected pos``; the real cause (the
    OSError of the write) comes out instead, with the checkpoint's path (tests/test_reliability.py does the same on
    a real 3 MB tmpfs where user namespaces allow it)."""
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))
    written = [0]
    recording = checkpoint._RecordingWriter

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self.inner = recording(f)
            self.error: OSError | None = None

        def write(self, data: Any) -> int:
            written[0] += len(data)
            if written[0] > 4000:  # after the zip's first records: torch is mid-archive
                self.inner.error = self.error = OSError(errno.ENOSPC, "No space left on device")
                raise self.error
            return self.inner.write(data)

        def flush(self) -> None:
            self.inner.flush()

    monkeypatch.setattr(checkpoint, "_RecordingWriter", FullDisk)
    with pytest.raises(OSError) as e:
        save_checkpoint(path, _state(2.0))
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_failed_fsync_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, _state(2.0))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_corrupt_or_missing_file_raises_clear_error(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: cannot read checkpoint"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"garbage\.pt"):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"version": torch.__version__}, tmp_path / "objects.pt")  # a TorchVersion object, not a str
    with pytest.raises(CheckpointError, match=r"weights_only loading refuses \(WeightsUnpickler error: .*TorchVersion"):
        load_checkpoint(tmp_path / "objects.pt")
    assert load_checkpoint(tmp_path / "objects.pt", weights_only=False)["version"] == torch.__version__
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pt")


def test_remove_stale_temps(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "last.pt", _state(1.0))
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"left by a SIGKILL mid-save")
    (tmp_path / "notes.tmp").write_text("not ours: no leading dot")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "notes.tmp"]
