"""``avformer bench predict``: clips/s of ``predict`` (decode + features + model) per backend and precision.

Every variant is a :class:`~avformer.eval.predict.FilePredictor` over the same files, differing only in the
backend that runs the model (:mod:`avformer.models.export_formats`): ``eager`` fp32 / bf16 (autocast),
``torchscript`` fp32 / bf16 and ``onnxruntime`` fp32. One untimed pass of each first (lazy initialisation, oneDNN
kernel selection, ONNX Runtime's graph optimisation), then ``repeats`` rounds in which every variant passes over all
files once, in alternating order (forward on even rounds, reversed on odd ones), so drift on a shared machine hits
all variants alike; the median pass is kept. A variant whose model file is not in the export folder is exported
into a temporary folder first (from the same weights). Reported per variant: clips/s (windows decoded, featurised
and classified per second), the model's share (ms per clip inside the backend call) and whether its top-1 label
agrees with eager fp32 on every file. CPU only.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avformer.eval.predict import FilePrediction, FilePredictor
from avformer.models.export_formats import (
    BACKEND_FORMAT,
    BACKENDS,
    FORMAT_FILES,
    PRECISIONS,
    Backend,
    load_backend,
    write_onnx,
    write_torchscript,
)
from avformer.models.loading import LoadedRun
from avformer.utils.errors import UsageError

__all__ = ["bench_predict"]


class _Timed:
    """A backend that adds the seconds spent in it to ``seconds``."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.seconds = backend, 0.0
        self.name, self.precision = backend.name, backend.precision

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.backend(*inputs)
        self.seconds += time.perf_counter() - t0
        return out


@dataclass
class _Variant:
    backend: str
    precision: str
    predictor: FilePredictor
    timer: _Timed
    passes: list[float]
    model_s: list[float]
    top1: list[str]


def _pass(v: _Variant, files: Sequence[str]) -> tuple[float, float, list[FilePrediction]]:
    before = v.timer.seconds
    t0 = time.perf_counter()
    preds = [v.predictor.predict(f) for f in files]
    return time.perf_counter() - t0, v.timer.seconds - before, preds


def bench_predict(
    run: LoadedRun,
    source: str | Path,
    files: Sequence[str],
    *,
    backends: Sequence[str] = BACKENDS,
    precisions: Sequence[str] = ("fp32", "bf16"),
    repeats: int = 3,
    clips: int = 1,
) -> dict[str, Any]:
    """Clips/s of every (backend, precision) over ``files``; see the module docstring.

    Args:
        run: the loaded run (its eager model is the ``eager`` backend and the source of on-the-fly exports).
        source: the folder ``run`` came from; its ``model.torchscript.pt`` / ``model.onnx`` are used when present.
        files: media files, each predicted with ``clips`` windows.

    Raises:
        UsageError: an unknown backend or precision, or a file without a prediction.
    """
    if repeats < 1 or clips < 1:
        raise UsageError("--repeats and --clips must be >= 1")
    for name in backends:
        if name not in BACKENDS:
            raise UsageError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    for p in precisions:
        if p not in ("fp32", "bf16"):
            raise UsageError(f"unknown precision {p!r}; known: fp32, bf16")
    source = Path(source)
    folder = source.parent if source.is_file() else source
    skipped = [f"{b} {p}" for b in backends for p in precisions if p not in PRECISIONS[b]]
    exported_here: list[str] = []
    with tempfile.TemporaryDirectory(prefix="avformer-bench-") as tmp:
        variants: list[_Variant] = []
        for name in backends:
            where = folder
            if name != "eager" and not (folder / FORMAT_FILES[BACKEND_FORMAT[name]]).is_file():
                where = Path(tmp)
                (write_onnx if BACKEND_FORMAT[name] == "onnx" else write_torchscript)(run.model, where)
                exported_here.append(BACKEND_FORMAT[name])
            for p in precisions:
                if p not in PRECISIONS[name]:
                    continue
                timer = _Timed(load_backend(name, run.model, where, p))
                predictor = FilePredictor(run, num_clips=clips, topk=1, backend=timer)
                variants.append(_Variant(name, p, predictor, timer, [], [], []))
        windows = 0
        for v in variants:  # untimed warm-up pass; also the predictions compared below
            _, _, preds = _pass(v, files)
            bad = [p for p in preds if not p.ok]
            if bad:
                raise UsageError(f"{bad[0].path}: {bad[0].error}")
            v.top1 = [p.top[0][0] for p in preds]
            windows = sum(len(p.windows) for p in preds)
        load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
        for r in range(repeats):
            for v in variants if r % 2 == 0 else variants[::-1]:
                seconds, model_s, _ = _pass(v, files)
                v.passes.append(seconds)
                v.model_s.append(model_s)
    reference = variants[0].top1 if variants else []
    rows = []
    for v in variants:
        med = statistics.median(v.passes)
        rows.append(
            {
                "backend": v.backend,
                "precision": v.precision,
                "clips_per_s": windows / med,
                "pass_s": med,
                "model_ms_per_clip": statistics.median(v.model_s) / windows * 1e3,
                "top1_agrees": sum(a == b for a, b in zip(v.top1, reference, strict=True)),
            }
        )
    base = rows[0]["clips_per_s"] if rows else 1.0
    for row in rows:
        row["vs_first"] = row["clips_per_s"] / base
    return {
        "model": run.spec.name,
        "files": len(files),
        "clips_per_file": clips,
        "windows": windows,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "skipped": skipped,
        "exported_for_the_bench": exported_here,
        "load_average_before": list(load_before) if load_before else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
