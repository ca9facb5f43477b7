"""The one line and exit status of each kind of failure (avformer.utils.errors.describe) and --debug."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from avformer.cli.main import main as cli
from avformer.config import ConfigError
from avformer.utils.checkpoint import CheckpointError
from avformer.utils.errors import EnvironmentFailure, TrainingDiverged, UsageError, describe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "status", "text"),
    [
        (UsageError("bad value"), 2, "bad value"),
        (ConfigError("x.yaml: train.epochs: expected int"), 2, "expected int"),
        (CheckpointError("last.pt: truncated"), 2, "truncated"),
        (EnvironmentFailure("no CUDA GPU"), 1, "no CUDA GPU"),
        (TrainingDiverged("loss is nan"), 1, "loss is nan"),
        (OSError(errno.ENOSPC, "No space left on device", "/tmp/x/last.pt"), 1, "/tmp/x/last.pt: no space left"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/run"), 1, "/ro/run: read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 1, "/root/x: permission denied"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), 1, "out of memory"),
        (MemoryError(), 1, "lower train.batch_size"),
        (RuntimeError("DataLoader timed out after 4000 seconds"), 1, "a loader worker produced no batch in time"),
        (RuntimeError("Caught ValueError in DataLoader worker process 0.\nTraceback ...\nValueError: bad"), 1, "bad"),
        (KeyError("oops"), 1, "internal error: KeyError: 'oops'"),
    ],
)
def test_describe_gives_one_line_and_a_status(error: BaseException, status: int, text: str) -> None:
    got, message = describe(error)
    assert got == status and text in message and "\n" not in message


def test_debug_lets_the_traceback_through_even_for_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {name: mmt_tiny}\ntrain: {epochs: abc}\n")
    assert cli(["train", "--config", str(bad)]) == 2
    with pytest.raises(ConfigError, match="epochs"):
        cli(["--debug", "train", "--config", str(bad)])
    assert cli(["train", "--config", str(bad)]) == 2  # --debug lasted one command


def test_a_broken_torch_is_still_one_line() -> None:
    """describe() itself imports torch-dependent modules: when torch is what fails, the message is still one line."""
    code = "import sys; sys.modules['torch'] = None; from avformer.cli.main import main; "
    code += "sys.exit(main(['train', '--config', 'x.yaml']))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("avformer train: error: internal error: ModuleNotFoundError"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1
