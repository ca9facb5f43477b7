"""Fuzz pass over the reliability table (slow): 200 seeded random cases of manifests, config overrides and shard
indexes, each run as ``avformer train`` (in-process, through the CLI's top level).

Every case starts from a valid tiny run and applies one to three mutations drawn from the catalogue below; each
mutation is known to keep the input valid (exit 0: bad rows among good ones are skipped and counted) or to make it
invalid (exit 1 or 2 with one error line). Checked for every case: the exit status, no traceback on stderr, at most
one error line, no hang (a watchdog ends the process when one case runs over 5 minutes), and no file written
outside the case's run folder (the working folder and the data folder are compared before and after).
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from avformer.cli.main import main as cli
from avformer.data.manifest import read_manifest
from avformer.data.shards import PrepareConfig, write_shards
from avformer.data.synth import SynthConfig, write_dataset

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke" / "tiny_av.yaml"
CASES = 200


@dataclass
class Case:
    """One fuzz case: overrides, the train rows (path, label), a shard index edit, and whether it is valid."""

    sets: list[str] = field(default_factory=list)
    rows: list[tuple[str, str]] | None = None  # None: the synth train manifest as it is
    shards: Callable[[Path], None] | None = None  # edits a copy of the prepared shard folder
    rows_valid: bool = True
    shards_valid: bool = True
    what: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """The last override of each key counts; shards replace the train manifest (its rows and a
        ``train_manifest`` override no longer matter)."""
        last = {s.split("=", 1)[0]: s for s in self.sets}
        if self.shards is not None:
            last.pop("train_manifest", None)
        sets_valid = all(s in _VALID_SETS for s in last.values())
        return sets_valid and (self.shards_valid if self.shards is not None else self.rows_valid)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("fuzz")
    synth = base / "data"
    write_dataset(synth, SynthConfig(num_clips=27, seconds=1.0, size=32, fps=8), workers=1)
    bad = base / "data" / "bad"
    bad.mkdir()
    (bad / "random.mp4").write_bytes(random.Random(0).randbytes(4000))
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "folder.mp4").mkdir()
    os.mkfifo(bad / "fifo.mp4")
    (bad / "text.mp4").write_text("not a video\n")
    m = read_manifest(synth / "train.csv", classes=synth / "classes.txt")
    write_shards(m, base / "shards", PrepareConfig(fps=4.0, size=32, sample_rate=16000, shard_size=4), workers=1)
    return {"base": base, "synth": synth, "bad": bad, "shards": base / "shards"}


def _good_rows(synth: Path) -> list[tuple[str, str]]:
    lines = (synth / "train.csv").read_text().splitlines()
    header = lines[0].split(",")
    pi, li = header.index("path"), header.index("label")
    return [(str(synth / c[pi]), c[li]) for c in (ln.split(",") for ln in lines[1:])]


# ---- the catalogue ------------------------------------------------------------------------------------------

_VALID_SETS = [
    "train.batch_size=3", "optim.lr=3e-4", "train.seed=7", "train.log_every=2",
    "data.spec_augment={freq_mask_param: 0, time_mask_param: 0}", "optim.weight_decay=0.0",
    "train.checkpoint_every=1", "train.eval_every=2", "train.precision=bf16",
    "model.overrides.proj_dim=16", "task.options.avc_weight=0.0", "optim.grad_clip=0.5",
]  # fmt: skip
_INVALID_SETS = [
    "train.epochs=0", "train.epochs=abc", "train.batch_size=0", "train.batch_size=x", "optim.lr=-1",
    "model.overrides.proj_dim=abc", "model.overrides.proj_dim=-3", "model.name=nope",
    "train.device=tpu", "train.device=cuda:9", "data.clip_seconds=-2", "data.clip_seconds=zero",
    "train.epoch=2", "task.name=no_task", "task.options.bogus=1", "model.overrides.bogus=1",
    "train.precision=fp8", "train.resume=/nonexistent/last.pt", "data.modalities=[smell]",
    "train_manifest=/nonexistent.csv", "classes=/nonexistent.txt", "data.video.size=0",
    "train.workers=-1", "optim.accum_steps=0", "train.best_mode=sideways",
]  # fmt: skip


def _bad_row(bad: Path, rng: random.Random, label: str) -> tuple[str, str]:
    name = rng.choice(["random.mp4", "empty.mp4", "folder.mp4", "fifo.mp4", "text.mp4", "missing.mp4"])
    return str(bad / name), label


def _shard_edit(rng: random.Random) -> tuple[Callable[[Path], None], bool, str]:
    """An edit of a shard folder: (edit, valid, name)."""

    def index(folder: Path) -> dict[str, object]:
        return json.loads((folder / "index.json").read_text())  # type: ignore[no-any-return]

    def write(folder: Path, data: dict[str, object]) -> None:
        (folder / "index.json").write_text(json.dumps(data))

    def url(value: str) -> Callable[[Path], None]:
        def edit(folder: Path) -> None:
            data = index(folder)
            data["shards"][0]["url"] = value  # type: ignore[index]
            write(folder, data)

        return edit

    def truncate(folder: Path) -> None:
        first = sorted(folder.glob("*.tar"))[0]
        first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])

    def more_samples(folder: Path) -> None:
        data = index(folder)
        data["shards"][0]["samples"] = 10  # type: ignore[index]
        write(folder, data)

    def garbage(folder: Path) -> None:
        (folder / "index.json").write_bytes(b"\xff{not json")

    def no_shards(folder: Path) -> None:
        data = index(folder)
        data["shards"] = "everything"
        write(folder, data)

    edits: list[tuple[Callable[[Path], None], bool, str]] = [
        (url("../../../../etc/passwd"), False, "url ../../etc/passwd"),
        (url("/etc/passwd"), False, "url /etc/passwd"),
        (url("http://127.0.0.1:9/x.tar"), False, "url http"),
        (url("file:///etc/passwd"), False, "url file://"),
        (truncate, True, "truncated shard"),
        (more_samples, True, "index counts more samples"),
        (garbage, False, "garbage index"),
        (no_shards, False, "shards not a list"),
        (lambda folder: None, True, "shards as written"),
    ]
    return rng.choice(edits)


def _case(rng: random.Random, world: dict[str, Path]) -> Case:
    case = Case()
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["set", "set", "bad_set", "rows", "all_bad", "shards"])
        if kind == "set":
            case.sets.append(rng.choice(_VALID_SETS))
            case.what.append(case.sets[-1])
        elif kind == "bad_set":
            case.sets.append(rng.choice(_INVALID_SETS))
            case.what.append(case.sets[-1])
        elif kind == "rows" and case.rows is None:
            good = _good_rows(world["synth"])
            rows = good + [_bad_row(world["bad"], rng, good[0][1]) for _ in range(rng.randint(1, 4))]
            rng.shuffle(rows)
            case.rows = rows
            case.what.append(f"{len(rows) - len(good)} bad rows among good ones")
        elif kind == "all_bad" and case.rows is None:
            case.rows = [_bad_row(world["bad"], rng, "circle_hum") for _ in range(rng.randint(0, 5))]
            case.rows_valid = False
            case.what.append(f"{len(case.rows)} rows, all bad")
        elif kind == "shards" and case.shards is None:
            case.shards, case.shards_valid, name = _shard_edit(rng)
            case.what.append(f"shards: {name}")
    return case


def _snapshot(folder: Path, skip: Path) -> dict[str, float]:
    out = {}
    for p in folder.rglob("*"):
        if skip in p.parents or p == skip or not (p.is_file() or p.is_dir()):
            continue
        out[str(p)] = p.stat().st_mtime if p.is_file() else 0.0
    return out


@pytest.mark.slow
def test_fuzz_cases_end_cleanly(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(2026)
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)  # the run folders' parent (a run creates its own folder, and parents)
    monkeypatch.chdir(work)
    failures: list[str] = []
    valid = 0
    try:
        for i in range(CASES):
            # re-armed per case: a case that hangs ends the process with a dump of every thread, never the suite
            faulthandler.dump_traceback_later(300, exit=True, file=sys.__stderr__)
            case = _case(rng, world)
            valid += case.valid
            out = work / "runs" / f"case{i}"
            sets = [*case.sets]
            if case.rows is not None:
                manifest = work / f"m{i}.csv"
                manifest.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in case.rows))
                sets.insert(0, f"train_manifest={manifest}")
            if case.shards is not None:
                folder = work / f"shards{i}"
                shutil.copytree(world["shards"], folder)
                case.shards(folder)
                sets.insert(0, f"train_shards={folder}")
            synth = world["synth"]
            args = ["train", "--config", str(SMOKE), "--out", str(out), f"train_manifest={synth / 'train.csv'}"]
            args += [f"val_manifest={synth / 'val.csv'}", f"classes={synth / 'classes.txt'}"]
            args += ["train.epochs=1", "train.batch_size=6", "train.steps_per_epoch=1", "train.tensorboard=false"]
            args += sets
            before = _snapshot(world["base"], skip=out) | _snapshot(work, skip=out)
            code = cli(args)
            err = capsys.readouterr().err
            after = _snapshot(world["base"], skip=out) | _snapshot(work, skip=out)
            errors = [ln for ln in err.splitlines() if ln.startswith("avformer train: error:")]
            problems = []
            if "Traceback" in err:
                problems.append("traceback")
            if case.valid and code != 0:
                problems.append(f"exit {code} for valid input")
            if not case.valid and (code not in (1, 2) or len(errors) != 1):
                problems.append(f"exit {code} with {len(errors)} error lines for invalid input")
            if set(after) != set(before) or any(after[k] != before[k] for k in before if k in after):
                problems.append(f"files changed outside the run folder: {sorted(set(after) ^ set(before))[:3]}")
            if problems:
                failures.append(f"case {i} ({'; '.join(case.what)}): {', '.join(problems)}: {err.strip()[-300:]}")
            shutil.rmtree(out, ignore_errors=True)
    finally:
        faulthandler.cancel_dump_traceback_later()
    print(f"{CASES} fuzz cases ({valid} valid, {CASES - valid} invalid), {len(failures)} failed", file=sys.stderr)
    assert not failures, "\n".join(failures)
