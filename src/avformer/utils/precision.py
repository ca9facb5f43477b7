"""Which numeric precision a run uses: ``train.precision`` of ``auto``, ``fp32`` or ``bf16``, resolved once per run.

``auto`` (the default) picks bf16 autocast where the device runs it fast and fp32 everywhere else:

- **CUDA**: bf16 when the GPU has native bf16 (``torch.cuda.is_bf16_supported(including_emulation=False)``:
  Ampere and later).
- **CPU**: bf16 when the CPU reports ``amx_bf16`` (Intel Sapphire Rapids and later) or ``avx512_bf16`` (Cooper
  Lake, AMD Zen 4 and later) among the flags of ``/proc/cpuinfo``. ``torch.backends.cpu.get_cpu_capability()``
  is not enough: it says ``AVX512`` on every AVX-512 CPU, with or without bf16 units. Without ``/proc/cpuinfo``
  (macOS, Windows) or without those flags: fp32.
- **anything else** (MPS, ...): fp32.

On such hardware a bf16 matmul runs several times faster than an fp32 one (a 2048×2048 matmul on 2 cores of a
Sapphire Rapids: ~2000 vs ~325 GFLOP/s, issue 21). An explicit ``fp32`` or ``bf16`` is used as asked; ``bf16`` on a
device without fast bf16 still runs (autocast emulates it) but is usually slower than fp32, so it warns.

The environment variable :data:`AUTO_ENV` (``AVFORMER_AUTO_PRECISION=fp32`` or ``bf16``) fixes what ``auto`` resolves
to on every device, e.g. to keep a shared cluster's runs comparable across machines with and without bf16 units; the
test suite sets it to ``fp32`` so that its numbers do not depend on the CPU it runs on. It does not change an
explicit ``fp32`` or ``bf16``. Any other value is the user's mistake (:class:`~avformer.utils.errors.UsageError`:
one line and exit status 2 from the commands).

The trainer resolves the precision when it starts (a resumed run resolves again, on the machine it resumes on),
prints it with the reason in its start-up line and writes :data:`PRECISION_FILE` into the run folder;
``config.yaml`` keeps what was asked (``auto``).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from avformer.utils.errors import UsageError

__all__ = ["AUTO_ENV", "PRECISIONS", "PRECISION_FILE", "PrecisionChoice", "cpu_bf16_flags", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_FILE = "precision.json"
AUTO_ENV = "AVFORMER_AUTO_PRECISION"  # fp32 | bf16: what auto resolves to, whatever the device
_CPUINFO = Path("/proc/cpuinfo")  # tests point this elsewhere
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    """The resolved precision of one run, and why.

    Attributes:
        requested: ``train.precision`` as configured (``auto``, ``fp32`` or ``bf16``).
        used: ``fp32`` or ``bf16`` (autocast): what training and its evaluation run in.
        reason: one line saying why, e.g. ``"auto: the CPU reports amx_bf16"``.
        device: the torch device, e.g. ``cpu`` or ``cuda:0``.
        device_name: the CPU's model name or the GPU's name ('' when unknown).
        cpu_flags: the fast-bf16 flags the CPU reports (empty on a GPU run or where they cannot be read).
        warning: set when ``bf16`` was asked on a device without fast bf16 (it runs, emulated and slow).
    """

    requested: str
    used: str
    reason: str
    device: str
    device_name: str = ""
    cpu_flags: tuple[str, ...] = ()
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        return d

    def change_since(self, out_dir: str | Path) -> str | None:
        """One line when the run folder's ``precision.json`` (an earlier start of this run) used another precision
        than this choice (a run resumed on another machine); None otherwise, or when there is none to read."""
        try:
            before = json.loads((Path(out_dir) / PRECISION_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(before, dict) or before.get("used") == self.used:
            return None
        was = f"{before.get('used')} on {before.get('device_name') or before.get('device')}"
        again = f"resolved again here: {self.used} ({self.reason})"
        return f"precision: this run was in {was} ({before.get('reason')}); {again}"

    def write(self, out_dir: str | Path) -> Path:
        """Write ``precision.json`` into ``out_dir`` and return its path."""
        path = Path(out_dir) / PRECISION_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _cpuinfo() -> str | None:
    """The text of ``/proc/cpuinfo``; None where there is none (macOS, Windows)."""
    try:
        return _CPUINFO.read_text(errors="replace")
    except OSError:
        return None


def _cpuinfo_field(text: str, name: str) -> str:
    """The value of the first ``name : value`` line of a ``/proc/cpuinfo`` text ('' where there is none)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return ""


def cpu_bf16_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The fast-bf16 flags (``amx_bf16``, ``avx512_bf16``) this CPU reports in ``/proc/cpuinfo`` (or in the text
    ``cpuinfo``); () where there is none."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = set(_cpuinfo_field(text or "", "flags").split())
    return tuple(f for f in _BF16_FLAGS if f in flags)


def _cuda_bf16(device: torch.device) -> tuple[bool, str]:
    """``(native bf16, device name)`` of a CUDA device."""
    name = torch.cuda.get_device_name(device)
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # an older torch without the argument
        native = torch.cuda.is_bf16_supported()
    return bool(native), name


def _support(device: torch.device) -> tuple[bool, str, str, tuple[str, ...]]:
    """``(fast bf16, why, device name, cpu flags)`` for ``device``."""
    if device.type == "cuda":
        native, name = _cuda_bf16(device)
        return native, f"{name} {'has' if native else 'has no'} native bf16", name, ()
    if device.type == "cpu":
        text = _cpuinfo()
        if text is None:
            return False, f"no /proc/cpuinfo on {sys.platform} to detect CPU bf16 units", "", ()
        flags, name = cpu_bf16_flags(text), _cpuinfo_field(text, "model name")
        if flags:
            return True, f"the CPU reports {' and '.join(flags)}", name, flags
        return False, "the CPU reports neither amx_bf16 nor avx512_bf16", name, ()
    return False, f"bf16 autocast is not used on {device.type} by auto", "", ()


def resolve_precision(requested: str, device: torch.device | str, *, warn: bool = True) -> PrecisionChoice:
    """Resolve ``train.precision`` for ``device``: ``auto`` to ``bf16`` or ``fp32``, explicit values as they are.

    Args:
        requested: ``auto``, ``fp32`` or ``bf16``.
        device: where the model runs.
        warn: emit a ``UserWarning`` when ``bf16`` is asked on a device without fast bf16 (the returned
            ``warning`` says it either way, for callers that print it themselves).

    Raises:
        ValueError: an unknown ``requested``.
        UsageError: an :data:`AUTO_ENV` value other than ``fp32`` / ``bf16`` (with ``requested`` ``auto``).
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    forced = os.environ.get(AUTO_ENV, "").strip() if requested == "auto" else ""
    if forced and forced not in ("fp32", "bf16"):
        raise UsageError(f"{AUTO_ENV} must be fp32 or bf16 (what precision auto resolves to), got {forced!r}")
    device = torch.device(device)
    fast, why, name, flags = _support(device)
    warning = None
    if forced:
        used, reason = forced, f"auto: {AUTO_ENV}={forced} ({why})"
    elif requested == "auto":
        used, reason = ("bf16" if fast else "fp32"), f"auto: {why}"
    elif requested == "fp32":
        used, reason = "fp32", "asked for (precision fp32)"
    else:
        used, reason = "bf16", "asked for (precision bf16)"
        if not fast:
            warning = (
                f"bf16 asked for on {device} but {why}: autocast emulates it, usually slower than fp32 "
                "(precision auto picks fp32 here)"
            )
            reason += f"; {why} (emulated, slow)"
            if warn:
                warnings.warn(warning, UserWarning, stacklevel=2)
    return PrecisionChoice(requested, used, reason, str(device), name, flags, warning)
