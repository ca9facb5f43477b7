"""The reliability table: every case of the audit, as a user or an attacker meets it, with its expected outcome.

Each test is one row: what is done (as the README's commands do it), and what must happen: exit 0, or exit 2 (the
user's input) / exit 1 (the environment) with one ``avformer <command>: error: ...`` line and no traceback, and
nothing lost (no half-written or untrained checkpoint, counts of skipped clips where they can be read). Commands
run as a user runs them: ``python -m avformer ...`` in a subprocess where a signal, a lock or a hang is involved,
in-process through :func:`avformer.cli.main.main` (the same top-level error handling) otherwise.

Rows that live elsewhere, because they are unit tests of one part (named so they can be found):

- shard sandboxing, npy size budgets, truncated tars, non-finite samples: tests/data/test_shards_untrusted.py;
- FIFOs, devices and folders as media, bounded opens, implausible durations: tests/data/test_media_untrusted.py;
- SIGKILL at random moments and exact resume: tests/cli/test_train.py, tests/train/test_trainer.py; a failed save
  (an exception at any point of the write): tests/utils/test_checkpoint.py;
- the lock itself (stale takeover, temp clean-up): tests/utils/test_run_lock.py;
- 55 damaged / odd / hostile media files with expected outcomes: tests/data/test_media.py.
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from avformer.cli.main import main as cli
from avformer.data.synth import SynthConfig, write_dataset

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke" / "tiny_av.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


# ---- helpers ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """27 one-second clips of 32x32 at 8 fps: 18 train, 9 val (one per class)."""
    out = tmp_path_factory.mktemp("synth")
    write_dataset(out, SynthConfig(num_clips=27, seconds=1.0, size=32, fps=8), workers=1)
    return out


def _train_args(synth: Path, out: Path, *sets: str, epochs: int = 1) -> list[str]:
    args = ["train", "--config", str(SMOKE), "--out", str(out)]
    args += [f"train_manifest={synth / 'train.csv'}", f"val_manifest={synth / 'val.csv'}"]
    args += [f"classes={synth / 'classes.txt'}", f"train.epochs={epochs}", "train.batch_size=6", *sets]
    return args


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _run(args: list[str], timeout: float = 180, **kw: object) -> subprocess.CompletedProcess[str]:
    """``python -m avformer ARGS`` in a subprocess, bounded in time (a hang fails the test, never the suite)."""
    cmd = [sys.executable, "-m", "avformer", *args]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload,no-any-return]


def _error_line(err: str, command: str) -> str:
    """The one error line of a failed command's stderr (other lines may be warnings), and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"avformer {command}: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _fails(capsys: pytest.CaptureFixture[str], args: list[str], status: int, message: str) -> str:
    """Run ``avformer ARGS`` in-process: exit ``status`` with one error line holding ``message``."""
    code = cli(args)
    err = capsys.readouterr().err
    line = _error_line(err, args[0])
    assert code == status, err
    assert message in line, line
    return line


def _write_manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


# ---- one run per folder ---------------------------------------------------------------------------------------


def test_two_trainers_on_one_folder_the_second_is_refused(synth: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "avformer", *_train_args(synth, out, epochs=3)],
        cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ((out / ".avformer.lock").exists() and (out / ".avformer.lock").read_text()):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.02)
        second = _run(_train_args(synth, out, epochs=3))
        line = _error_line(second.stderr, "train")
        assert second.returncode == 2 and f"in use by pid {first.pid}" in line, second.stderr
        assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    finally:
        if first.poll() is None:
            first.kill()
    rows = _rows(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]  # one run's rows, not two interleaved
    assert torch.load(out / "last.pt", weights_only=True)["trainer"]["epoch"] == 3


# ---- no silent success on empty or degenerate data ------------------------------------------------------------


def test_a_manifest_of_missing_files_is_refused(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write_manifest(tmp_path / "m.csv", [(str(tmp_path / f"gone{i}.mp4"), "circle_hum") for i in range(6)])
    _fails(capsys, _train_args(synth, tmp_path / "run", f"train_manifest={bad}"), 2, "none of its 6 files exists")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_header_only_manifest_is_refused(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = _write_manifest(tmp_path / "m.csv", [])
    _fails(capsys, _train_args(synth, tmp_path / "run", f"train_manifest={empty}"), 2, "no rows")


def test_a_manifest_of_corrupt_files_stops_before_any_checkpoint(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = []
    for i in range(6):
        p = tmp_path / f"bad{i}.mp4"
        p.write_bytes(os.urandom(2000))
        rows.append((str(p), "circle_hum"))
    bad = _write_manifest(tmp_path / "m.csv", rows)
    line = _fails(capsys, _train_args(synth, tmp_path / "run", f"train_manifest={bad}"), 2, "no usable training clip")
    assert "0/6 clips loaded" in line and "/bad" in line and ".mp4 (cannot open" in line
    assert not (tmp_path / "run" / "last.pt").exists() and not (tmp_path / "run" / "best.pt").exists()


def test_a_val_set_with_no_usable_clip_is_refused(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "bad.mp4"
    p.write_bytes(b"\x00" * 5000)
    bad = _write_manifest(tmp_path / "val.csv", [(str(p), "circle_hum")])
    _fails(capsys, _train_args(synth, tmp_path / "run", f"val_manifest={bad}"), 2, "validation set has no usable clip")
    assert not (tmp_path / "run" / "best.pt").exists()


def test_one_class_is_refused(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.DictReader((synth / "train.csv").open()))[:3]
    one = _write_manifest(tmp_path / "m.csv", [(str(synth / r["path"]), "only") for r in rows])
    args = _train_args(synth, tmp_path / "run", f"train_manifest={one}", "classes=null", "val_manifest=null")
    _fails(capsys, args, 2, "a classifier needs at least 2")


def test_skipped_clips_are_counted_in_the_logs_and_the_report(synth: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(os.urandom(3000))
    rows = [(str(synth / r["path"]), r["label"]) for r in csv.DictReader((synth / "train.csv").open())]
    manifest = _write_manifest(tmp_path / "m.csv", [*rows, (str(bad), rows[0][1])])
    out = tmp_path / "run"
    assert cli(_train_args(synth, out, f"train_manifest={manifest}", epochs=2)) == 0
    metrics = _rows(out / "metrics.csv")
    assert [r["skipped_train"] for r in metrics] == ["1", "1"] and metrics[-1]["skipped_val"] == "0"
    skipped = _rows(out / "skipped.csv")
    assert [(r["epoch"], r["split"]) for r in skipped] == [("1", "train"), ("2", "train")]
    assert "broken.mp4" in skipped[0]["id"] or "broken" in skipped[0]["reason"] or skipped[0]["reason"]
    report = (out / "report.md").read_text()
    assert "## Skipped clips" in report and "train: 1 clips skipped in epoch 2" in report


# ---- media that is not a regular file, media that lies -------------------------------------------------------


def test_a_fifo_as_media_never_blocks(synth: Path, tmp_path: Path) -> None:
    """``mkfifo f.mp4``: probe and predict answer at once (bounded here by the subprocess timeout), a training row
    that names it is skipped and counted."""
    fifo = tmp_path / "f.mp4"
    os.mkfifo(fifo)
    probe = _run(["probe", str(fifo)], timeout=60)
    assert probe.returncode == 1 and "not a regular file (a FIFO)" in probe.stdout, probe.stdout + probe.stderr
    from tests.cli._tiny_run import make_run

    run = make_run(tmp_path / "tiny")
    predict = _run(["predict", str(run), str(fifo)], timeout=120)
    assert "Traceback" not in predict.stderr and "a FIFO" in predict.stdout + predict.stderr
    rows = [(str(synth / r["path"]), r["label"]) for r in csv.DictReader((synth / "train.csv").open())]
    manifest = _write_manifest(tmp_path / "m.csv", [*rows, (str(fifo), rows[0][1])])
    train = _run(_train_args(synth, tmp_path / "run", f"train_manifest={manifest}"), timeout=300)
    assert train.returncode == 0, train.stderr
    skipped = _rows(tmp_path / "run" / "skipped.csv")
    assert len(skipped) == 1 and "FIFO" in skipped[0]["reason"]


def test_probe_flags_a_declared_duration_far_beyond_the_content(tmp_path: Path) -> None:
    from tests.data.test_media_untrusted import _declare_duration, _write_mkv

    lying = _declare_duration(_write_mkv(tmp_path / "ok.mkv"), tmp_path / "lying.mkv", 1e9)
    probe = _run(["probe", str(lying)], timeout=120)
    assert probe.returncode == 0 and probe.stdout.startswith("partial"), probe.stdout
    assert "declared duration 1000000000.0 s but decodable content ends at" in probe.stdout


# ---- shard indexes and shards are untrusted input ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shards(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synth train rows plus one missing file, prepared into shards of 6 (float16 audio, gzip frames)."""
    from avformer.data.manifest import read_manifest
    from avformer.data.shards import PrepareConfig, write_shards

    rows = [(str(synth / r["path"]), r["label"]) for r in csv.DictReader((synth / "train.csv").open())]
    folder = tmp_path_factory.mktemp("shards")
    manifest = _write_manifest(folder / "m.csv", [*rows, (str(folder / "vanished.mp4"), rows[0][1])])
    out = folder / "train"
    m = read_manifest(manifest, classes=synth / "classes.txt")
    write_shards(m, out, PrepareConfig(fps=4.0, size=32, sample_rate=16000, shard_size=6), workers=1)
    return out


def _shard_copy(shards: Path, tmp_path: Path) -> Path:
    out = tmp_path / "shards"
    shutil.copytree(shards, out)
    return out


def _edit_index(folder: Path, **first_shard: object) -> None:
    import json

    index = json.loads((folder / "index.json").read_text())
    index["shards"][0].update(first_shard)
    (folder / "index.json").write_text(json.dumps(index))


def _shard_args(synth: Path, tmp_path: Path, folder: Path, *sets: str) -> list[str]:
    return _train_args(synth, tmp_path / "run", f"train_shards={folder}", "train.batch_size=6", *sets)


@pytest.mark.parametrize("url", ["../../../../etc/passwd", "/etc/passwd", "file:///etc/passwd"])
def test_shard_index_naming_files_outside_its_folder_is_refused(
    synth: Path, shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    folder = _shard_copy(shards, tmp_path)
    _edit_index(folder, url=url)
    _fails(capsys, _shard_args(synth, tmp_path, folder), 2, "refused")


def test_shard_index_naming_a_url_is_refused_without_the_flag(
    synth: Path, shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _shard_copy(shards, tmp_path)
    _edit_index(folder, url="http://127.0.0.1:9/x.tar")
    t0 = time.monotonic()
    line = _fails(capsys, _shard_args(synth, tmp_path, folder), 2, "refused")
    assert "allow" in line and time.monotonic() - t0 < 60  # no connection tried (3 retries would be slower)


def _rewrite_member(shard: Path, name: str, edit: object) -> None:
    """Rewrite one member of a tar shard with ``edit(bytes) -> bytes``."""
    import io
    import tarfile

    members = []
    with tarfile.open(shard) as tf:
        for ti in tf.getmembers():
            data = tf.extractfile(ti).read()  # type: ignore[union-attr]
            if ti.name == name:
                data = edit(data)  # type: ignore[operator]
                ti.size = len(data)
            members.append((ti, data))
    with tarfile.open(shard, "w") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data))


def _first_key(shard: Path, ext: str) -> str:
    import tarfile

    with tarfile.open(shard) as tf:
        return next(n for n in tf.getnames() if n.endswith(ext))


def test_bad_shard_samples_are_skipped_counted_and_named(synth: Path, shards: Path, tmp_path: Path) -> None:
    """A huge npy header (44.7 GiB declared in a 1 KB member), random bytes in an audio member, and a truncated
    shard: the run finishes, each bad sample is a skipped row naming its shard (and key), nothing is allocated."""
    import gzip

    import numpy as np

    folder = _shard_copy(shards, tmp_path)
    tars = sorted(folder.glob("*.tar"))
    video = _first_key(tars[0], ".video.npy.gz")
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 1, 3), np.uint8))
    header["shape"] = (4000, 2000, 2000, 3)
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    _rewrite_member(tars[0], video, lambda _: gzip.compress(buf.getvalue() + b"\0" * 1000))
    audio = _first_key(tars[1], ".audio.npy")
    _rewrite_member(tars[1], audio, lambda d: d[:200] + b"\xff" * 2000 + d[2200:])  # 0xFFFF: NaN in float16
    tars[2].write_bytes(tars[2].read_bytes()[: tars[2].stat().st_size // 2])
    out = tmp_path / "run"
    assert cli(_shard_args(synth, tmp_path, folder, "train.epochs=1", "train.shuffle_buffer=1")) == 0
    skipped = _rows(out / "skipped.csv")
    reasons = " | ".join(r["reason"] for r in skipped)
    assert f"shard {tars[0].name} key {video.split('.')[0]}" in reasons, reasons
    assert f"{tars[1].name} key {audio.split('.')[0]}" in reasons and "non-finite" in reasons, reasons
    assert f"shard {tars[2].name}: truncated" in reasons, reasons
    assert int(_rows(out / "metrics.csv")[-1]["skipped_train"]) == len(skipped) >= 3


def test_prepare_failures_are_reported_by_train(
    synth: Path, shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(_shard_args(synth, tmp_path, shards)) == 0
    out = capsys.readouterr().out
    assert "1 source rows failed in `avformer prepare`" in out and "vanished.mp4" in out
    assert "vanished.mp4" in (tmp_path / "run" / "report.md").read_text()


# ---- user mistakes and environment failures: one line, exit 2 or 1 ----------------------------------------------


def test_nan_loss_is_one_line_exit_1(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(capsys, _train_args(synth, tmp_path / "run", "optim.lr=1e30", "optim.warmup_steps=0"), 1, "diverged")


def test_non_utf8_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"name: \xff\xfe caf\xe9\n")
    _fails(capsys, ["train", "--config", str(cfg)], 2, "not UTF-8 text")


@pytest.mark.parametrize(("device", "status", "message"), [("tpu", 2, "device must be"), ("cuda:7", 1, "CUDA")])
def test_bad_or_missing_device(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], device: str, status: int, message: str
) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    _fails(capsys, _train_args(synth, tmp_path / "run", f"train.device={device}"), status, message)


def test_out_dir_that_is_a_file(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    _fails(capsys, _train_args(synth, tmp_path / "f"), 2, "is a file, not a folder")


def test_model_override_of_the_wrong_type(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(capsys, _train_args(synth, tmp_path / "run", "model.overrides.proj_dim=abc"), 2, "expected int, got str")


def _payload(path: Path, marker: Path) -> Path:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path.write_bytes(pickle.dumps({"model": Evil()}))
    return path


def test_pickle_payloads_are_refused_as_one_line(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    index = tmp_path / "index"
    index.mkdir()
    _payload(index / "embeddings.pt", marker)
    _fails(capsys, ["retrieve", str(index), "--text", "hello"], 2, "embeddings.pt")
    run = tmp_path / "pre"
    run.mkdir()
    _payload(run / "last.pt", marker)
    args = ["pretrain", "--config", str(ROOT / "configs" / "smoke" / "tiny_av.yaml"), "--out", str(run)]
    args += [f"train_manifest={synth / 'train.csv'}", "model.name=vatt_tiny", "model.overrides={}", "task=null"]
    code = cli(args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert not marker.exists()


def test_truncated_embeddings_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index = tmp_path / "index"
    index.mkdir()
    torch.save({"x": torch.zeros(10)}, index / "embeddings.pt")
    data = (index / "embeddings.pt").read_bytes()
    (index / "embeddings.pt").write_bytes(data[: len(data) // 2])
    _fails(capsys, ["retrieve", str(index), "--text", "hello"], 2, "embeddings.pt")


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (any other exception) is one line naming its type, exit 1; ``--debug`` lets the traceback through."""
    import avformer.cli.models

    def boom(argv: list[str] | None = None) -> int:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(avformer.cli.models, "main", boom)
    _fails(capsys, ["models"], 1, "internal error: RuntimeError: boom (set AVFORMER_DEBUG=1 for the traceback)")
    with pytest.raises(RuntimeError, match="boom"):
        cli(["--debug", "models"])
    monkeypatch.setenv("AVFORMER_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli(["models"])
    missing = _run(["stats", str(tmp_path / "nope.csv")], timeout=120)  # and a real user mistake, end to end
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr


@pytest.mark.parametrize("command", ["models", "probe --json {clips}", "predict {run} --json {clips}"])
def test_closed_pipe_ends_quietly(synth: Path, tmp_path: Path, command: str) -> None:
    """``... | head``: the reader leaves; no traceback, no error line (``predict --json`` of 2 files once printed
    ``error: [Errno 32] Broken pipe``: the failed write left nothing to flush)."""
    from tests.cli._tiny_run import make_run

    clips = " ".join(str(p) for p in sorted(synth.glob("**/*.mp4"))[:2])
    run = make_run(tmp_path / "run") if "{run}" in command else None
    line = command.format(clips=clips, run=run)
    proc = subprocess.Popen(
        f"{sys.executable} -m avformer {line} | head -c 10", shell=True, cwd=ROOT, env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipe" not in err, err


# ---- disk full, read-only folder (needs a private tmpfs: `unshare -rm`) ---------------------------------------


def _unshare_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"], capture_output=True
    )
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(not _unshare_ok(), reason="needs `unshare -rm` and tmpfs mounts (user namespaces)")


def _in_private_tmpfs(script: str, size: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) with a fresh ``size`` tmpfs at /mnt, in a private mount namespace."""
    full = f"mount -t tmpfs -o size={size} tmpfs /mnt && {script}"
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", full], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )


@needs_tmpfs
def test_disk_full_during_a_checkpoint_says_so(synth: Path) -> None:
    """3 MB of disk: ``last.pt`` of MMT-Tiny (~40 MB with the optimizer state) cannot be written; exit 1, one line
    that says the disk is full and names the file; no temp file left behind."""
    args = " ".join(_train_args(synth, Path("/mnt/run")))
    proc = _in_private_tmpfs(f"{sys.executable} -m avformer {args}; echo rc=$?; ls -a /mnt/run", "3m")
    line = _error_line(proc.stderr, "train")
    assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    assert "no space left on the device" in line and "/mnt/run/" in line
    assert ".tmp" not in proc.stdout.split("rc=1")[-1]


@needs_tmpfs
def test_read_only_out_dir(synth: Path) -> None:
    args = " ".join(_train_args(synth, Path("/mnt/run")))
    proc = _in_private_tmpfs(f"mount -o remount,ro /mnt && {sys.executable} -m avformer {args}; echo rc=$?", "1m")
    line = _error_line(proc.stderr, "train")
    assert "rc=1" in proc.stdout and "read-only file system" in line, proc.stdout + proc.stderr


# ---- signals -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "delay"),
    [
        (signal.SIGTERM, 0.0),
        (signal.SIGTERM, 0.6),
        (signal.SIGINT, 0.3),
    ],
)
def test_a_signal_to_the_process_group_with_workers_saves_and_exits(
    synth: Path, tmp_path: Path, sig: signal.Signals, delay: float
) -> None:
    """How Slurm and ``timeout`` stop a job: SIGTERM to every process, DataLoader workers included (right after
    the first checkpoint, and a little later, when the validation workers may be starting); Ctrl-C (SIGINT to the
    terminal's process group) likewise."""
    out = tmp_path / "run"
    args = _train_args(synth, out, "train.workers=2", "train.checkpoint_every=1", "train.log_every=1", epochs=50)
    proc = subprocess.Popen(
        [sys.executable, "-m", "avformer", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (out / "last.pt").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
        time.sleep(delay)
        os.killpg(proc.pid, sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr and "killed by signal" not in stderr, stderr
    assert f"stopped by {sig.name}" in stdout
    step = torch.load(out / "last.pt", weights_only=True)["trainer"]["step"]
    assert step >= 1


_EXITS_WITH_LIVE_WORKERS = """
import sys
from avformer.data.dataset import make_loader
from tests.train._toy import Blobs
loader = make_loader(Blobs(32), batch_size=4, shuffle=True, num_workers=2)  # persistent workers
it = iter(loader)
next(it)
KEEP = (loader, it)  # alive at exit, as a demo's finished runs keep theirs: multiprocessing stops the workers
print("exiting", flush=True)
"""


def test_a_process_with_live_loader_workers_exits(tmp_path: Path) -> None:
    """At exit multiprocessing terminates live workers (SIGTERM from their parent) and joins them: the workers'
    SIGTERM guard must let that one through (it once ignored every SIGTERM and `make demo` hung after its table)."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", _EXITS_WITH_LIVE_WORKERS], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "exiting", proc.stderr
    assert time.monotonic() - t0 < 60


_SAVER = """
import sys, torch
from avformer.utils.checkpoint import save_checkpoint
i = 0
while True:
    save_checkpoint(sys.argv[1], {"i": torch.tensor(i), "w": torch.full((3_000_000,), float(i))})
    print(i, flush=True)
    i += 1
"""


def test_sigkill_during_a_save_never_damages_the_checkpoint(tmp_path: Path) -> None:
    """A process saving 12 MB checkpoints in a loop is SIGKILLed at random moments (mostly mid-write): the file
    always loads, and holds one complete save."""
    from avformer.utils.checkpoint import load_checkpoint

    path = tmp_path / "last.pt"
    rng = __import__("random").Random(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline()  # one save done
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait()
        state = load_checkpoint(path)
        assert torch.equal(state["w"], torch.full((3_000_000,), float(state["i"])))
