"""The training loop on a toy Task: learning, run files, exact resume after a crash / SIGKILL / SIGTERM, accumulation,
EMA, bf16, skipped rows and logging."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import DataLoader

from avformer.config import load
from avformer.data.dataset import collate, make_loader
from avformer.train.ema import ModelEma
from avformer.train.logging import CsvLog, RunLogger
from avformer.train.trainer import _rank_rng, evaluate, fit, set_loader_epoch
from avformer.utils.checkpoint import load_checkpoint
from tests.train._toy import Blobs, ToyTask, make_cfg, run, train_loader, weights

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"clips_per_s"}  # the only fields allowed to differ between two runs

Reference = tuple[dict[str, Tensor], dict[str, Any], list[dict[str, str]], Path]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


def _strip(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in TIMING}


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Reference]:
    """Uninterrupted 4-epoch runs (one per loader kind, made on first use) that resumed runs must reproduce."""
    cache: dict[str, Reference] = {}

    def get(kind: str) -> Reference:
        if kind not in cache:
            out = tmp_path_factory.mktemp(f"reference_{kind}")
            task, summary = run(make_cfg(out), loader=kind)
            cache[kind] = weights(task), summary, _rows(out / "metrics.csv"), out
        return cache[kind]

    return get


@pytest.fixture
def reference(references: Callable[[str], Reference]) -> Reference:
    return references("make_loader")


def _assert_same_run(task: ToyTask, summary: dict[str, Any], out: Path, ref: Reference) -> None:
    ref_w, ref_summary, ref_rows, _ = ref
    w = weights(task)
    assert w.keys() == ref_w.keys()
    for k in w:
        assert torch.equal(w[k], ref_w[k]), f"{k} differs after resume"
    assert _strip(summary) == _strip(ref_summary)
    assert _rows(out / "metrics.csv") == ref_rows  # no duplicated or missing epoch rows either


def test_loss_falls_and_run_files_are_written(reference: Reference) -> None:
    _, summary, rows, out = reference
    losses = [float(r["train_loss"]) for r in rows]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert losses[-1] < 0.3 * losses[0]
    assert losses[1] < losses[0]
    assert summary["val_top1"] > 0.9 and summary["step"] == 48 and summary["stopped"] is None
    assert {"last.pt", "best.pt", "config.yaml", "metrics.csv", "train_log.csv"} <= {p.name for p in out.iterdir()}
    assert load(out / "config.yaml") == make_cfg(out)
    log_rows = _rows(out / "train_log.csv")
    assert [int(r["step"]) for r in log_rows] == list(range(2, 49, 2))  # every log_every=2 steps
    best = load_checkpoint(out / "best.pt")
    last = load_checkpoint(out / "last.pt")
    assert best["trainer"]["epoch"] == summary["best_epoch"] and last["trainer"]["epoch"] == 4
    assert last["versions"]["torch"] == torch.__version__ and last["config"]["name"] == "toy"


LOADERS = ["make_loader", "plain", "generator", "workers"]


@pytest.mark.parametrize("loader", LOADERS)
def test_resume_after_crash_at_epoch_end_is_exact(
    tmp_path: Path, references: Callable[[str], Reference], loader: str
) -> None:
    def crash(row: dict[str, Any]) -> None:
        if row["epoch"] == 2:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run(make_cfg(tmp_path), on_epoch_end=crash, loader=loader)
    task, summary = run(make_cfg(tmp_path), loader=loader)  # resume='auto' picks up last.pt
    assert task.calls == 2 * 12  # only epochs 3 and 4 were trained
    _assert_same_run(task, summary, tmp_path, references(loader))


class _SigtermAt(ToyTask):
    """Sends itself SIGTERM during training step ``at`` (the trainer finishes that step, saves and returns)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def training_step(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        out = super().training_step(batch)
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return out


class _Stalls(Blobs):
    """Blobs whose rows from ``stall_from`` on never arrive (an hour's sleep in the worker); the first such row
    writes ``marker``, so the test knows the main process is waiting for it."""

    def __init__(self, stall_from: int, marker: Path, **kw: Any) -> None:
        super().__init__(**kw)
        self.stall_from, self.marker = stall_from, marker

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i >= self.stall_from:
            self.marker.touch()
            time.sleep(3600)
        return super().__getitem__(i)


@pytest.mark.parametrize("where", ["train", "val"])
def test_a_stop_signal_while_waiting_for_a_batch_stops_at_once(tmp_path: Path, where: str) -> None:
    """Regression: a group SIGTERM that came while the main process waited for a batch (the validation workers
    starting) hung the run for the loader's timeout (26 min in the reliability test): the dead workers' results
    never come, and torch looks for dead workers only when the timeout runs out. The wait must end at the signal.
    Here the worker stays alive but never delivers, with a 30-s loader timeout: before the fix the run stopped only
    when that timeout fired."""
    marker = tmp_path / "stalled"
    stalls = _Stalls(16 if where == "train" else 0, marker, n=96 if where == "train" else 48, noise=0.0)
    train_ds = stalls if where == "train" else Blobs()
    loaders = [
        DataLoader(ds, batch_size=8, shuffle=False, collate_fn=collate, num_workers=1 if ds is stalls else 0,
                   timeout=30.0 if ds is stalls else 0)
        for ds in (train_ds, stalls if where == "val" else Blobs(48, noise=0.0))
    ]  # fmt: skip

    def stop_when_stalled() -> None:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the main process is in the wait by now
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_stalled, daemon=True).start()
    torch.manual_seed(0)
    t0 = time.monotonic()
    summary = fit(ToyTask(), loaders[0], loaders[1], make_cfg(tmp_path / "run"), console=Console(file=io.StringIO()))
    assert summary["stopped"] == "SIGTERM"
    assert time.monotonic() - t0 < 15  # not the 30-s loader timeout
    state = load_checkpoint(tmp_path / "run" / "last.pt")["trainer"]
    # train: batches 0 and 1 trained, batch 2 never came; val: epoch 1 trained and saved complete, without validation
    assert (state["epoch"], state["batches_done"]) == ((0, 2) if where == "train" else (1, 0))
    if where == "val":
        assert "val_top1" not in state["last_row"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("loader", LOADERS)
def test_sigterm_mid_epoch_saves_and_resume_is_exact(
    tmp_path: Path, references: Callable[[str], Reference], loader: str
) -> None:
    torch.manual_seed(0)
    task, summary = run(make_cfg(tmp_path), task=_SigtermAt(17), loader=loader)
    assert summary["stopped"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after fit
    state = load_checkpoint(tmp_path / "last.pt")["trainer"]
    assert (state["epoch"], state["batches_done"], state["step"]) == (1, 5, 17)
    task, summary = run(make_cfg(tmp_path), loader=loader)
    assert task.calls == 48 - 17
    _assert_same_run(task, summary, tmp_path, references(loader))


def _child(out: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "tests.train._toy", str(out), "--slow", "0.03", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


def test_sigkill_then_resume_is_exact(tmp_path: Path, reference: Reference) -> None:
    """A real process killed with SIGKILL mid-epoch 2 (between step checkpoints) resumes to the same result."""
    proc = _child(tmp_path, "--checkpoint-every", "5")
    _wait_for(tmp_path / "epoch1.done", proc)
    time.sleep(0.2)  # ~6 steps into epoch 2 (0.03 s per step)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(tmp_path / "last.pt")["trainer"]
    assert 12 <= state["step"] < 48
    task, summary = run(make_cfg(tmp_path, checkpoint_every=5))
    assert task.calls == 48 - state["step"]
    _assert_same_run(task, summary, tmp_path, reference)


def test_sigterm_subprocess_saves_and_exits_cleanly(tmp_path: Path, reference: Reference) -> None:
    proc = _child(tmp_path)
    _wait_for(tmp_path / "epoch1.done", proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped"] == "SIGTERM"
    assert "SIGTERM: saved" in stdout
    state = load_checkpoint(tmp_path / "last.pt")["trainer"]
    assert 12 <= state["step"] < 48
    task, summary = run(make_cfg(tmp_path))
    _assert_same_run(task, summary, tmp_path, reference)


def test_resume_of_a_finished_run_trains_nothing(tmp_path: Path, reference: Reference) -> None:
    shutil.copytree(reference[3], tmp_path, dirs_exist_ok=True)
    task, summary = run(make_cfg(tmp_path))
    assert task.calls == 0
    _assert_same_run(task, summary, tmp_path, reference)  # weights come from last.pt, metrics from its last row


@pytest.mark.parametrize("loader", ["make_loader", "generator"])
def test_set_loader_epoch_makes_the_order_a_function_of_the_epoch(loader: str) -> None:
    dl = train_loader(loader, batch_size=8, seed=3)

    def order(epoch: int) -> list[int]:
        set_loader_epoch(dl, 3, epoch)
        return torch.cat([b["index"] for b in dl]).tolist()

    first, second = order(0), order(1)
    assert sorted(first) == list(range(96)) and first != second
    assert order(0) == first  # the same epoch gives the same order, whatever ran before
    assert int(dl.dataset.epoch) == 0 and order(1) == second and int(dl.dataset.epoch) == 1


def test_grad_accumulation_matches_the_full_batch(tmp_path: Path) -> None:
    def train(name: str, batch_size: int, accum: int) -> dict[str, Tensor]:
        torch.manual_seed(0)
        # fp32: the two splits round differently under bf16 autocast (~1e-3 apart); the 1e-5 check is of the sums
        cfg = make_cfg(tmp_path / name, epochs=2, batch_size=batch_size, optim_accum_steps=accum, precision="fp32")
        task, summary = run(cfg, task=ToyTask(dropout=0.0), dataset=Blobs(noise=0.0))
        assert summary["step"] == 24
        return weights(task)

    full, accumulated = train("full", 8, 1), train("accum", 4, 2)
    for k in full:
        torch.testing.assert_close(accumulated[k], full[k], atol=1e-5, rtol=1e-5)


def test_skipped_rows_and_empty_batches(tmp_path: Path) -> None:
    buf = io.StringIO()
    bad = (*range(8), 20, 33)  # the whole first batch (no shuffle) and two more rows fail to load
    _, summary = run(
        make_cfg(tmp_path, epochs=1),
        dataset=Blobs(bad=bad),
        shuffle=False,
        console=Console(file=buf, width=200),
    )
    assert summary["step"] == 11  # the empty batch is not a step
    assert math.isfinite(summary["train_loss"])
    assert "86/96 clips loaded, 10 skipped (10× MediaError)" in buf.getvalue()


def test_bf16_autocast_trains(tmp_path: Path) -> None:
    _, summary = run(make_cfg(tmp_path, epochs=2, precision="bf16"))
    rows = _rows(tmp_path / "metrics.csv")
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert summary["val_top1"] > 0.8


def test_ema_weights_are_evaluated(tmp_path: Path) -> None:
    task, summary = run(make_cfg(tmp_path, epochs=1, ema_decay=0.9))
    ckpt = load_checkpoint(tmp_path / "last.pt")
    shadow = ckpt["ema"]["shadow"]
    assert ckpt["ema"]["updates"] == 12
    assert not torch.equal(shadow["0.weight"], ckpt["model"]["0.weight"])
    ema_task = ToyTask()
    ema_task.model.load_state_dict(shadow)
    used = json.loads((tmp_path / "precision.json").read_text())["used"]  # what the run's validation ran in
    loader = make_loader(Blobs(48, noise=0.0), batch_size=16, shuffle=False)  # type: ignore[arg-type]
    metrics, _ = evaluate(ema_task, loader, device=torch.device("cpu"), precision=used)
    assert metrics["loss"] == summary["val_loss"]
    assert torch.equal(task.model.state_dict()["0.weight"], ckpt["model"]["0.weight"])  # raw weights restored


def test_ema_update_formula_and_swap() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model(torch.randn(4, 3))  # BatchNorm: running stats move, num_batches_tracked 0 -> 1
    ema.update(model)
    torch.testing.assert_close(ema.shadow["0.weight"], 0.9 * w0 + 0.1 * (w0 + 1.0))
    assert ema.shadow["1.num_batches_tracked"].item() == 1  # integer buffers are copied
    trained = model[0].weight.detach().clone()
    with ema.swap(model):
        assert torch.equal(model[0].weight, ema.shadow["0.weight"])
    assert torch.equal(model[0].weight, trained)
    other = ModelEma(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"]) and other.updates == 1


def test_nonfinite_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    class NanTask(ToyTask):
        def training_step(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
            loss, m = super().training_step(batch)
            return loss * float("nan"), m

    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        run(make_cfg(tmp_path, epochs=1), task=NanTask())


def test_csv_log_widens_and_truncates(tmp_path: Path) -> None:
    log = CsvLog(tmp_path / "m.csv")
    log.write({"epoch": 1, "loss": 0.5})
    log.write({"epoch": 2, "loss": 0.25, "val_top1": 0.75})  # a new column rewrites the header
    log.write({"epoch": 3, "loss": 0.125})
    again = CsvLog(tmp_path / "m.csv")
    assert again.fields == ["epoch", "loss", "val_top1"]
    assert [r["val_top1"] for r in again.rows] == ["", "0.75", ""]
    again.truncate("epoch", 2)
    assert [r["epoch"] for r in CsvLog(tmp_path / "m.csv").rows] == ["1", "2"]
    again.truncate("epoch", 0)
    assert not (tmp_path / "m.csv").exists()


def test_missing_tensorboard_is_one_info_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now raises ImportError
    buf = io.StringIO()
    logger = RunLogger(tmp_path, tensorboard=True, console=Console(file=buf, width=200))
    assert logger.tb is None
    assert buf.getvalue().count("\n") == 1 and "pip install tensorboard" in buf.getvalue()


def test_a_run_writes_tensorboard_events_by_default(tmp_path: Path) -> None:
    """TensorBoard is a dependency: every run folder gets event files with the logged scalars."""
    pytest.importorskip("tensorboard", reason="tensorboard is a dependency of avformer (pip install -e .)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = RunLogger(tmp_path, console=Console(file=io.StringIO()))
    logger.log_step({"step": 1, "epoch": 0.5, "loss": 2.0, "lr": 1e-3})
    logger.log_epoch({"epoch": 1, "step": 2, "train_loss": 1.5, "val_top1": 0.25})
    logger.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "epoch/val_top1"} <= tags, tags


def test_progress_lines_within_the_epoch_off_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a terminal: no control characters, but a progress line (steps done / total, ETA, the trainer's fields)
    within the epoch, and one for validation; the CSV files are as without progress."""
    monkeypatch.setenv("AVFORMER_PROGRESS_INTERVAL", "0")  # a line at every update
    console = Console(file=io.StringIO(), width=200)
    run(make_cfg(tmp_path, epochs=1), console=console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    first = next(line for line in lines if line.startswith("epoch 1/1: "))
    assert first.startswith("epoch 1/1: 1/12 steps (8%)") and "ETA " in first
    assert "loss " in first and "clips/s " in first and "lr " in first
    assert [line for line in lines if line.startswith("epoch 1/1: ")][-1].startswith("epoch 1/1: 12/12 steps (100%)")
    assert any(line.startswith("validation: 3/3 batches (100%)") for line in lines)
    assert len(_rows(tmp_path / "train_log.csv")) == 6 and len(_rows(tmp_path / "metrics.csv")) == 1  # log_every 2


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    _, summary = run(make_cfg(tmp_path, epochs=1), console=console)
    assert math.isfinite(summary["train_loss"])
    assert "epoch 1/1" in console.file.getvalue()  # type: ignore[attr-defined]


def test_under_torchrun_rank_zero_decides_whether_to_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank that decided alone (e.g. a node-local out_dir) could start fresh while rank 0 resumes: a hang."""
    import types

    from avformer.train import checkpointing as ck
    from avformer.train import trainer as tr

    (tmp_path / "last.pt").write_bytes(b"")
    me = types.SimpleNamespace(tcfg=types.SimpleNamespace(resume="auto"), out_dir=tmp_path)
    me._local_resume_path = types.MethodType(tr.Trainer._local_resume_path, me)
    monkeypatch.setattr(ck, "is_dist", lambda: True)  # patched where Trainer._resume_path looks them up
    monkeypatch.setattr(ck, "gather_objects", lambda x: [x, x])
    assert tr.Trainer._resume_path(me) == tmp_path / "last.pt"  # type: ignore[arg-type]
    monkeypatch.setattr(ck, "gather_objects", lambda x: [None, x])  # rank 0 starts fresh: so does everyone
    assert tr.Trainer._resume_path(me) is None  # type: ignore[arg-type]
    monkeypatch.setattr(ck, "gather_objects", lambda x: [x, None])  # rank 1 cannot see rank 0's checkpoint
    with pytest.raises(FileNotFoundError, match=r"rank\(s\) \[1\] do not see it"):
        tr.Trainer._resume_path(me)  # type: ignore[arg-type]


def test_freeze_epochs_holds_matching_parameters_then_releases_them(tmp_path: Path) -> None:
    """``train.freeze_epochs``: the first Linear ("0.") stays exactly at its init for one epoch (no step, no weight
    decay) while the rest trains; it trains from epoch 2; a resume in between applies the same rule."""
    snaps: list[dict[str, Tensor]] = []
    torch.manual_seed(0)
    task = ToyTask()
    init = weights(task)
    cfg = make_cfg(tmp_path / "a", epochs=2, freeze_epochs={r"^0\.": 1})
    _, summary = run(cfg, task=task, on_epoch_end=lambda row: snaps.append(weights(task)))
    assert math.isfinite(summary["train_loss"])
    after1, after2 = snaps
    for k in ("0.weight", "0.bias"):
        assert torch.equal(after1[k], init[k]) and not torch.equal(after2[k], after1[k]), k
    for k in ("1.weight", "4.weight"):
        assert not torch.equal(after1[k], init[k]), k
    assert all(p.requires_grad for p in task.model.parameters())  # released, nothing left frozen

    # resumed at the epoch boundary: the same final weights as the uninterrupted run
    def crash(row: dict[str, Any]) -> None:
        raise RuntimeError("simulated crash")

    cfg_b = make_cfg(tmp_path / "b", epochs=2, freeze_epochs={r"^0\.": 1})
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg_b, on_epoch_end=crash)  # dies after epoch 1 (last.pt written)
    resumed, _ = run(cfg_b)
    for k, v in weights(resumed).items():
        torch.testing.assert_close(v, after2[k], msg=k)
    with pytest.raises(ValueError, match="bad regex"):
        make_cfg(tmp_path / "c", freeze_epochs={"(": 1})


def test_each_rank_resumes_its_own_rng_stream() -> None:
    """A checkpoint of an N-process run holds N RNG states; rank r resumes r's. One process: the plain state. A
    changed process count: None (the trainer then gives every rank rank 0's state)."""
    own = [{"rng": {"id": r}, "epoch_start_rng": {"id": 10 + r}} for r in range(2)]
    ckpt = {"rng": {"id": 0}, "epoch_start_rng": {"id": 10}, "rng_ranks": own}
    assert _rank_rng(ckpt, 1, 2) == ({"id": 1}, {"id": 11})
    assert _rank_rng(ckpt, 0, 2) == ({"id": 0}, {"id": 10})
    assert _rank_rng({"rng": {"id": 0}, "epoch_start_rng": {"id": 10}}, 0, 1) == ({"id": 0}, {"id": 10})
    assert _rank_rng(ckpt, 0, 1) == ({"id": 0}, {"id": 10})
    assert _rank_rng(ckpt, 2, 4) is None


def test_a_val_set_that_drops_out_mid_run_warns_instead_of_stopping(tmp_path: Path) -> None:
    """The first validation must load clips (else the data is wrong: exit 2); a later one that loads none (a
    mount that dropped out) is a warning and an epoch without val metrics, and training goes on."""
    from avformer.data.dataset import make_loader
    from avformer.train.trainer import fit
    from avformer.utils.errors import UsageError

    torch.manual_seed(0)
    val_set = Blobs(48, noise=0.0)
    val = make_loader(val_set, batch_size=16, shuffle=False)  # type: ignore[arg-type]

    def drop_out(row: dict[str, Any]) -> None:
        val_set.bad = set(range(48))  # every val row fails from epoch 2 on

    task = ToyTask()
    console = Console(file=io.StringIO(), width=300)
    cfg = make_cfg(tmp_path / "drop", epochs=3)
    summary = fit(task, train_loader("make_loader", 8, 0), val, cfg, on_epoch_end=drop_out, console=console)
    rows = _rows(tmp_path / "drop" / "metrics.csv")
    assert [r["val_top1"] != "" for r in rows] == [True, False, False] and summary["stopped"] is None
    assert [r["skipped_val"] for r in rows] == ["0", "48", "48"]
    assert "the validation set has no usable clip" in console.file.getvalue()  # type: ignore[attr-defined]
    never = make_loader(Blobs(16, bad=tuple(range(16))), batch_size=16, shuffle=False)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="validation set has no usable clip"):
        fit(ToyTask(), train_loader("make_loader", 8, 0), never, make_cfg(tmp_path / "never", epochs=1))
    assert not (tmp_path / "never" / "last.pt").exists()


def test_a_loss_term_stuck_at_chance_is_named(tmp_path: Path) -> None:
    """A task that says what its terms are worth at chance (``chance_losses``) gets a warning for a term whose epoch
    mean stays there (VATT's MIL-NCE with a text encoder that cannot tell captions apart sat at ln 8 silently)."""
    import math

    class Stuck(ToyTask):
        def training_step(self, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
            loss, logs = super().training_step(batch)
            return loss, logs | {"mil_nce": math.log(8) * 1.01, "nce": 0.5}

        def chance_losses(self, batch_size: int) -> dict[str, float]:
            return {"mil_nce": math.log(batch_size), "nce": math.log(batch_size)}

    console = Console(file=io.StringIO(), width=400)
    run(make_cfg(tmp_path, epochs=1), task=Stuck(), console=console)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "warning: train_mil_nce = 2.1002 over epoch 1, within 3% of its chance value 2.0794 (the task" in out
    assert "ln 8 for" not in out  # the chance value is the task's, not always ln B (a binary term: ln 2)
    assert out.count("warning:") == 1  # nce (0.5, far from ln 8) is learning


def test_vatt_terms_at_chance_are_ln_of_the_batch() -> None:
    import math

    from avformer.models.registry import create_model
    from avformer.tasks.vatt_pretrain import VATTPretrainOptions, VATTPretrainTask

    model = create_model("vatt_tiny")
    task = VATTPretrainTask(model, VATTPretrainOptions(nce_weight=1.0, mil_nce_weight=0.5))
    assert task.chance_losses(16) == {"nce": math.log(16), "mil_nce": 0.5 * math.log(16)}
