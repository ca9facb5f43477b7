"""``train.precision``: ``auto`` resolved from the CPU's flags / the GPU, explicit values as asked, and a run that
records what it used in ``precision.json`` (and resolves again when resumed on another machine)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from avformer.config import TrainConfig
from avformer.utils import precision as precision_mod
from avformer.utils.errors import UsageError
from avformer.utils.precision import AUTO_ENV, PRECISION_FILE, cpu_bf16_flags, resolve_precision
from tests.train._toy import make_cfg, run

_BASE_FLAGS = "fpu vme sse sse2 avx avx2 avx512f avx512bw avx512vl"


@pytest.fixture(autouse=True)
def _auto_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests resolve auto from the (fake) device: not from the suite's AVFORMER_AUTO_PRECISION (conftest)."""
    monkeypatch.delenv(AUTO_ENV, raising=False)


def _fake_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: str, name: str = "Test CPU") -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: {name}\nflags\t\t: {_BASE_FLAGS} {extra}\n\nprocessor\t: 1\n")
    monkeypatch.setattr(precision_mod, "_CPUINFO", info)


@pytest.mark.parametrize(
    ("extra", "flags"),
    [("amx_bf16 amx_tile", ("amx_bf16",)), ("avx512_bf16", ("avx512_bf16",)), ("amx_bf16 avx512_bf16", None)],
)
def test_auto_is_bf16_on_a_cpu_with_bf16_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: str, flags: tuple[str, ...] | None
) -> None:
    _fake_cpu(monkeypatch, tmp_path, extra)
    flags = flags or ("amx_bf16", "avx512_bf16")
    choice = resolve_precision("auto", "cpu")
    assert (choice.used, choice.requested, choice.cpu_flags) == ("bf16", "auto", flags)
    assert all(f in choice.reason for f in flags) and choice.warning is None
    assert choice.device == "cpu" and choice.device_name == "Test CPU"


def test_auto_is_fp32_without_the_flags_or_without_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_cpu(monkeypatch, tmp_path, "avx512_fp16 amx_int8")  # AVX-512 (get_cpu_capability: AVX512), no bf16
    choice = resolve_precision("auto", "cpu")
    assert choice.used == "fp32" and "neither amx_bf16 nor avx512_bf16" in choice.reason
    assert cpu_bf16_flags() == ()
    monkeypatch.setattr(precision_mod, "_CPUINFO", tmp_path / "absent")  # macOS, Windows
    choice = resolve_precision("auto", "cpu")
    assert choice.used == "fp32" and "no /proc/cpuinfo" in choice.reason and choice.cpu_flags == ()


def test_the_environment_fixes_what_auto_resolves_to(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_cpu(monkeypatch, tmp_path, "amx_bf16")
    monkeypatch.setenv(AUTO_ENV, "fp32")
    choice = resolve_precision("auto", "cpu")
    assert choice.used == "fp32" and f"{AUTO_ENV}=fp32" in choice.reason and "amx_bf16" in choice.reason
    assert resolve_precision("bf16", "cpu").used == "bf16"  # explicit values are not changed
    _fake_cpu(monkeypatch, tmp_path, "")
    monkeypatch.setenv(AUTO_ENV, "bf16")
    assert resolve_precision("auto", "cpu").used == "bf16"
    assert resolve_precision("fp32", "cpu").used == "fp32"
    monkeypatch.setenv(AUTO_ENV, "fp16")
    with pytest.raises(UsageError, match=f"{AUTO_ENV} must be fp32 or bf16"):  # one line, exit 2 from a command
        resolve_precision("auto", "cpu")


def test_auto_on_cuda_follows_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    for native, used in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        choice = resolve_precision("auto", "cuda:0")
        assert (choice.used, choice.device, choice.device_name) == (used, "cuda:0", "Fake GPU")
        assert "Fake GPU" in choice.reason
    assert resolve_precision("auto", "mps").used == "fp32"


def test_explicit_values_pass_through(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_cpu(monkeypatch, tmp_path, "amx_bf16")
    assert resolve_precision("fp32", "cpu").used == "fp32"  # fp32 even where bf16 is fast
    choice = resolve_precision("bf16", "cpu")
    assert choice.used == "bf16" and choice.warning is None and "asked for" in choice.reason
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp16")
    assert TrainConfig().precision == "auto"  # the default since the bf16-vs-fp32 tables (issue 21)


def test_bf16_without_support_warns_but_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_cpu(monkeypatch, tmp_path, "")
    with pytest.warns(UserWarning, match="emulates it, usually slower than fp32"):
        choice = resolve_precision("bf16", "cpu")
    assert choice.used == "bf16" and choice.warning is not None and "emulated" in choice.reason
    quiet = resolve_precision("bf16", "cpu", warn=False)  # the trainer logs ``warning`` itself
    assert quiet.warning == choice.warning


def test_a_run_records_its_precision_and_resolves_again_on_resume(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    _fake_cpu(monkeypatch, tmp_path, "amx_bf16", name="Machine A")
    buf = io.StringIO()
    _, summary = run(make_cfg(out, epochs=1, precision="auto"), console=Console(file=buf, width=300))
    assert summary["val_top1"] > 0.5
    assert "on cpu (bf16: auto: the CPU reports amx_bf16)" in buf.getvalue()
    saved = json.loads((out / PRECISION_FILE).read_text())
    assert saved == {
        "requested": "auto",
        "used": "bf16",
        "reason": "auto: the CPU reports amx_bf16",
        "device": "cpu",
        "device_name": "Machine A",
        "cpu_flags": ["amx_bf16"],
        "warning": None,
    }
    assert "precision: auto" in (out / "config.yaml").read_text()  # the config keeps what was asked

    # resumed on a machine without bf16 units: resolved again there, and said so
    _fake_cpu(monkeypatch, tmp_path, "", name="Machine B")
    buf = io.StringIO()
    run(make_cfg(out, epochs=2, precision="auto"), console=Console(file=buf, width=300))
    log = buf.getvalue()
    assert "resumed from" in log and "this run was in bf16 on Machine A" in log and "here: fp32" in log
    saved = json.loads((out / PRECISION_FILE).read_text())
    assert (saved["used"], saved["device_name"], saved["cpu_flags"]) == ("fp32", "Machine B", [])
