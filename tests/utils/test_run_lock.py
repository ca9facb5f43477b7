"""The run-folder lock: one holder at a time, stale locks taken over, and temp clean-up that spares live writers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avformer.utils.checkpoint import remove_stale_temps
from avformer.utils.errors import UsageError
from avformer.utils.run_lock import LOCK_NAME, RunFolderBusy, RunLock

_HOLDER = """
import sys, time
from avformer.utils.run_lock import RunLock
with RunLock(sys.argv[1], command="holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def _hold_in_other_process(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_owner_named(tmp_path: Path) -> None:
    proc = _hold_in_other_process(tmp_path / "run")
    try:
        with pytest.raises(RunFolderBusy, match=rf"in use by pid {proc.pid} on "), RunLock(tmp_path / "run"):
            pass
    finally:
        proc.kill()
        proc.wait()
    # the holder died without releasing (SIGKILL): the kernel dropped the flock, the file still names it
    owner = json.loads((tmp_path / "run" / LOCK_NAME).read_text())
    assert owner["pid"] == proc.pid


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "run"
    proc = _hold_in_other_process(folder)
    proc.kill()
    proc.wait()
    with caplog.at_level(logging.WARNING), RunLock(folder) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert f"took over the lock of pid {proc.pid}" in caplog.text
    assert (folder / LOCK_NAME).read_text() == ""  # released: emptied, so the next run sees no stale owner
    caplog.clear()
    with caplog.at_level(logging.WARNING), RunLock(folder):
        pass
    assert "took over" not in caplog.text


def test_the_same_process_cannot_take_one_folder_twice(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(RunFolderBusy), RunLock(tmp_path):
        pass
    with RunLock(tmp_path):  # released on exit
        pass


def test_a_folder_path_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        RunLock(tmp_path / "f").acquire()
    with pytest.raises(UsageError, match="is a file"):
        RunLock(tmp_path / "f" / "run").acquire()


def test_stale_temp_clean_up_spares_files_of_live_processes(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_tmp = tmp_path / f".last.pt.{sleeper.pid}.abc123.tmp"
        dead_tmp = tmp_path / f".last.pt.{dead.pid}.def456.tmp"
        old_tmp = tmp_path / ".best.pt.xyz.tmp"  # the form written before temp names carried a pid
        for p in (live_tmp, dead_tmp, old_tmp):
            p.write_bytes(b"partial")
        removed = remove_stale_temps(tmp_path)
        assert sorted(removed) == sorted([dead_tmp, old_tmp])
        assert live_tmp.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.05)
    assert remove_stale_temps(tmp_path) == [live_tmp]  # its writer is gone now


_FORKER = """
import os, sys, time
from avformer.utils.run_lock import RunLock
lock = RunLock(sys.argv[1]).acquire()
if os.fork() == 0:  # a loader worker that outlives its trainer for a while (the fork hooks have run)
    print("child", flush=True)
    time.sleep(10)
    os._exit(0)
print("parent", flush=True)
os._exit(0)  # the trainer dies without releasing
"""


def test_a_forked_child_does_not_keep_the_folder_locked(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _FORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert {proc.stdout.readline().strip(), proc.stdout.readline().strip()} == {"child", "parent"}
    proc.wait()
    with RunLock(tmp_path):  # the child still runs, but closed its copy of the lock at the fork
        pass


def test_a_file_system_without_locks_runs_unlocked_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno

    from avformer.utils import run_lock

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(run_lock.fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING), RunLock(tmp_path) as lock:
        assert lock.fd is None
    assert "does not support locks" in caplog.text
