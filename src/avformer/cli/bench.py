"""``avformer bench data MANIFEST``, ``avformer bench train MODEL | --config FILE`` and ``avformer bench predict``.

``bench predict RUN FILE...`` reports clips/s of ``predict`` (decode + features + model) for the eager model and
the exported ones (TorchScript, ONNX Runtime), fp32 and bf16, alternating in one run: see
:mod:`avformer.eval.bench_predict`. Example::

    avformer bench predict exports/av_digits_mmt clip1.mp4 clip2.mp4 --repeats 5

``bench train`` reports training clips/s (forward + backward + AdamW step on a synthetic batch of the model's
input size, warmup steps not timed) and the model FLOPs utilisation (MFU), on a CPU as on a GPU, against the
device's bf16 and fp32 matmul rates measured first in the same run (and, on a GPU, against its data-sheet bf16
peak); with ``--config FILE --shards DIR`` it also trains the same model fed by the real data loader, from the
config's source files and from the shards, in alternating rounds of one run, and prints the ratio. See
:mod:`avformer.train.speed` for the definitions. Examples::

    avformer bench train mmt_tiny --batch-size 16 --steps 10
    avformer bench train --config configs/experiment/av_digits_mmt_tiny.yaml --shards runs/shards/av_digits_train
    avformer bench train mmt_base --device cuda --precision bf16 --compile --batch-size 32   # MFU on a GPU

``bench data`` is the data-pipeline throughput, per stage, against a naive baseline:

What is measured (all in one run, so ratios are meaningful on a shared, noisy machine):

- **ours**: the real loading path (``AVDataset[i]``): one open per file, the window chosen from its header,
  one demux pass for both streams, only the kept frames converted, straight to the target size, then the video
  transform and the log-mel features. Also reported through a DataLoader with ``--workers 0`` and ``N``.
- **naive baseline** (one process): what a first script does — decode *every* video frame to full-size RGB with
  PyAV, open the file again and decode all the audio, then subsample the frames to the target fps, resize them,
  mix and resample the audio, and compute the same features. It runs twice: with PyAV's defaults (what such a
  script gets: FFmpeg picks its decoder and swscale threads) and with the same thread budget as ours (one decoder
  thread, one swscale thread), so the second ratio measures only the work saved, not thread contention.
- **stages** of our path, as differences between cumulative passes over the same files (each pass re-opens the
  file and reads the same first ``window_seconds`` of it): ``open`` (open + header), ``demux`` (read the
  window's packets), ``decode`` (decode them, no conversion), ``convert+resample`` (our full ``decode_clip``:
  frame selection, RGB conversion and resize, audio resampling to mono), ``features`` (the rest of
  ``AVDataset[i]``: video transform, audio features, sample assembly). They are approximate: a stage shorter
  than the noise of the machine shows as 0.
- **wave augmentations** (``data.wave_augment``, :mod:`avformer.data.wave_augment`): ms per clip of each
  transform alone at a fixed setting, and of all six drawn together (every probability 1, the default ranges), on
  the decoded audio of the same clips, against the ``features`` pass (what a training sample costs without them).
  They are plain torch rather than ``torch-audiomentations`` / ``audiomentations`` for determinism per sample
  (see that module's docstring); ``--no-wave-augment`` skips the line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from avformer.cli._help import plain
from avformer.data.audio import AudioFeatureConfig, AudioFeatures
from avformer.data.config import WaveAugmentConfig
from avformer.data.dataset import AVDataset, DataConfig, LoadStats, make_loader
from avformer.data.manifest import Manifest, read_manifest
from avformer.data.media import decode_clip
from avformer.data.video import VideoTransform, VideoTransformConfig
from avformer.data.wave_augment import WaveAugment, WaveAugmentParams
from avformer.utils.device import resolve_device
from avformer.utils.errors import UsageError

__all__ = ["main", "naive_load"]


def naive_load(
    path: str, cfg: DataConfig, video_tf: VideoTransform, audio_tf: AudioFeatures, threads: int | None = None
) -> dict[str, Any]:
    """The baseline: decode everything at full size, then subsample, resize and featurise.

    ``threads=None`` keeps PyAV's defaults; an int sets the decoder and swscale threads.
    """
    out: dict[str, Any] = {}
    sws: dict[str, int] = {} if threads is None else {"threads": threads}
    with av.open(path) as container:
        vstream = container.streams.video[0]
        if threads is not None:
            vstream.thread_count = threads
        frames, times = [], []
        for frame in container.decode(vstream):
            frames.append(frame.to_ndarray(format="rgb24", **sws))
            times.append(float(frame.time or 0.0))
    video = np.stack(frames)  # (T_all, H, W, 3) full size
    t0 = times[0]
    wanted = t0 + np.arange(cfg.video.num_frames) / cfg.video.fps
    idx = np.clip(np.searchsorted(np.asarray(times), wanted, side="right") - 1, 0, len(times) - 1)
    clip = torch.from_numpy(video[idx]).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    h, w = clip.shape[-2:]
    scale = cfg.video.short_side / min(h, w)
    clip = F.interpolate(clip, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    out["video"] = video_tf(clip.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    with av.open(path) as container:
        astream = container.streams.audio[0]
        if threads is not None:
            astream.thread_count = threads
        chunks = [frame.to_ndarray() for frame in container.decode(astream)]
        rate = astream.rate
    pcm = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    if pcm.dtype.kind == "i":
        pcm = pcm / float(np.iinfo(pcm.dtype).max)
    mono = torch.from_numpy(pcm.astype(np.float32)).mean(0)
    sr = cfg.audio.sample_rate
    if rate != sr:
        mono = F.interpolate(mono[None, None], scale_factor=sr / rate, mode="linear")[0, 0]
    n = round(cfg.window_seconds * sr)
    wav = torch.zeros(n)
    wav[: min(n, len(mono))] = mono[:n]
    out["audio"] = audio_tf(wav)
    return out


def _time_pass(fn: Callable[[str], object], paths: Sequence[str]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        fn(p)
    return time.perf_counter() - t0


def _open_only(path: str) -> None:
    with av.open(path) as c:
        _ = c.streams.video, c.streams.audio


def _window_packets(c: Any, end: float, decode: bool) -> None:
    """Read (and decode) the packets of the first video and audio stream up to ``end`` seconds."""
    streams = [*c.streams.video[:1], *c.streams.audio[:1]]
    for s in streams:
        s.thread_count = 1
    open_streams = {s.index for s in streams}
    for packet in c.demux(*streams):
        if decode:
            packet.decode()
        if packet.pts is not None and packet.pts * packet.time_base > end:
            open_streams.discard(packet.stream.index)
            if not open_streams:
                break


def _demux_only(path: str, end: float) -> None:
    with av.open(path) as c:
        _window_packets(c, end, decode=False)


def _decode_only(path: str, end: float) -> None:
    with av.open(path) as c:
        _window_packets(c, end, decode=True)


def _loader_rate(ds: AVDataset, workers: int, batch_size: int) -> tuple[float, LoadStats]:
    loader = make_loader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    stats = LoadStats()
    t0 = time.perf_counter()
    for batch in loader:
        stats.update(batch)
    dt = time.perf_counter() - t0
    return stats.loaded / dt, stats


#: one fixed setting of each waveform augmentation (the others off) for ``bench data``'s per-transform times
_WAVE_SETTINGS: dict[str, dict[str, Any]] = {
    "speed 0.9": {"speed": 0.9},
    "speed 1.1": {"speed": 1.1},
    "pitch +2 st": {"semitones": 2.0},
    "reverb 0.4 s": {"rt60_s": 0.4, "wet": 0.3},
    "pink noise": {"noise_kind": "pink", "snr_db": 20.0},
    "low-pass": {"filter_kind": "lowpass", "filter_hz": 2000.0},
    "peak EQ": {"filter_kind": "peak", "filter_hz": 1000.0, "peak_gain_db": 6.0},
    "gain": {"gain_db": 3.0},
}


def bench_wave_augment(waves: Sequence[torch.Tensor], sample_rate: int, repeats: int) -> dict[str, float]:
    """Median ms per clip of each :data:`_WAVE_SETTINGS` transform alone and of all six drawn together."""
    cfg = WaveAugmentConfig(speed_p=1.0, pitch_p=1.0, reverb_p=1.0, noise_p=1.0, filter_p=1.0, gain_p=1.0)
    aug = WaveAugment(cfg, sample_rate)
    gen = torch.Generator().manual_seed(0)
    params = {name: WaveAugmentParams(**kw) for name, kw in _WAVE_SETTINGS.items()}
    times: dict[str, list[float]] = {name: [] for name in [*params, "all six"]}
    for _ in range(repeats):  # interleaved, as the other passes
        for name, p in params.items():
            t0 = time.perf_counter()
            for w in waves:
                aug.apply(w, p)
            times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for w in waves:
            aug(w, gen)
        times["all six"].append(time.perf_counter() - t0)
    return {name: statistics.median(v) / len(waves) * 1e3 for name, v in times.items()}


def bench_data(
    manifest: Manifest, cfg: DataConfig, workers: int, batch_size: int, repeats: int, *, wave_augment: bool = True
) -> dict[str, Any]:
    paths = [r.path for r in manifest]
    # every pass reads the same window of each file, the first `window_seconds`, so stage differences are real
    rows = [replace(r, start=0.0, end=cfg.window_seconds) for r in manifest]
    ds = AVDataset(Manifest(rows, manifest.classes, manifest.multilabel, manifest.source), cfg, train=False)
    video_tf = VideoTransform(cfg.video, train=False)
    audio_tf = AudioFeatures(cfg.audio)

    def ours_decode(p: str) -> object:
        return decode_clip(
            p, 0.0, cfg.window_seconds, fps=cfg.video.fps, size=cfg.video.short_side, sample_rate=cfg.audio.sample_rate
        )

    index_of = {p: i for i, p in enumerate(paths)}

    def ours_full(p: str) -> object:  # the real loading path: AVDataset.__getitem__
        sample = ds[index_of[p]]
        if "video" not in sample:
            raise RuntimeError(f"{p}: {sample.get('reason')}")
        return sample

    passes: dict[str, Callable[[str], object]] = {
        "open": _open_only,
        "demux": lambda p: _demux_only(p, cfg.window_seconds),
        "decode": lambda p: _decode_only(p, cfg.window_seconds),
        "convert+resample": ours_decode,
        "features": ours_full,
        "naive": lambda p: naive_load(p, cfg, video_tf, audio_tf),
        "naive_1thread": lambda p: naive_load(p, cfg, video_tf, audio_tf, threads=1),
    }
    # interleave repeats so drift on a shared machine hits every pass alike; keep the median
    times: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(repeats):
        for name, fn in passes.items():
            times[name].append(_time_pass(fn, paths))
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(paths)
    cumulative = ["open", "demux", "decode", "convert+resample", "features"]
    stages_ms = {}
    prev = 0.0
    for k in cumulative:
        stages_ms[k] = max(med[k] - prev, 0.0) / n * 1e3
        prev = med[k]
    wave_ms = None
    if wave_augment:
        clips = [decode_clip(p, 0.0, cfg.window_seconds, video=False, sample_rate=cfg.audio.sample_rate) for p in paths]
        waves = [torch.from_numpy(c.audio.copy()) for c in clips if c.audio is not None and len(c.audio)]
        wave_ms = bench_wave_augment(waves, cfg.audio.sample_rate, repeats) if waves else None
    loader0, _ = _loader_rate(ds, 0, batch_size)
    loader_n, stats = _loader_rate(ds, workers, batch_size) if workers > 0 else (loader0, None)
    return {
        "clips": n,
        "ours_clips_per_s": n / med["features"],
        "naive_clips_per_s": n / med["naive"],
        "naive_1thread_clips_per_s": n / med["naive_1thread"],
        "speedup": med["naive"] / med["features"],
        "speedup_vs_1thread": med["naive_1thread"] / med["features"],
        "stages_ms_per_clip": stages_ms,
        "loader_clips_per_s": {"workers=0": loader0, f"workers={workers}": loader_n},
        "loader_summary": stats.summary() if stats is not None else None,
        "wave_augment_ms_per_clip": wave_ms,
        "repeats": repeats,
    }


def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="training clips/s and MFU of a model, optionally fed by real data")
    p.add_argument("model", nargs="?", help="registered model name (synthetic input of its default size)")
    p.add_argument("--config", help="experiment YAML instead of MODEL: its model, input sizes, losses and optimizer")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (default: the config's, else 16)")
    p.add_argument("--steps", type=int, default=10, help="timed steps of the synthetic measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile, autotuning, workers)")
    p.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda | cuda:1 ...")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 where the device has fast bf16 (as train.precision auto), else fp32")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--num-classes", type=int, default=10, help="classifier size for the synthetic batch")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: the bf16 table)")
    p.add_argument("--matmul-seconds", type=float, default=1.0, help="seconds per matmul benchmark (MFU's yardstick)")
    p.add_argument("--matmul-size", type=int, default=None, help="its square side (default: 2048 CPU, 8192 GPU)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--shards", default=None, help="with --config: also train from the config's train_manifest and "
                   "from these shards (prepare output), same model, alternating rounds; print the ratio")  # fmt: skip
    p.add_argument("--data-steps", type=int, default=20, help="timed steps per loader for --shards")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds for --shards")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers for --shards (default: config's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _bench_train(args: Any) -> dict[str, Any]:
    from avformer.cli.models import default_input_of
    from avformer.config import ExperimentConfig, ModelSpec, apply_overrides, load
    from avformer.data.shards import ShardDataset, make_shard_loader
    from avformer.models.av_model import AVModel
    from avformer.models.loading import build_model
    from avformer.profiling import forward_flops, mfu
    from avformer.tasks.inference import input_modality
    from avformer.tasks.registry import TaskData
    from avformer.train.experiment import compose
    from avformer.train.speed import (
        device_peak_tflops,
        loader_rate,
        loader_train_rate,
        synthetic_batch,
        train_step_rate,
    )
    from avformer.utils.precision import resolve_precision

    if (args.model is None) == (args.config is None):
        raise ValueError("give a MODEL name or --config FILE (not both)")
    if args.config is not None:
        cfg = apply_overrides(load(args.config), list(args.set))
    else:
        cfg = ExperimentConfig(name="bench", model=ModelSpec(args.model, {}))
        cfg = apply_overrides(cfg, list(args.set)) if args.set else cfg
    if args.shards is not None and args.config is None:
        raise ValueError("--shards needs --config (the source files are the config's train_manifest)")
    device = resolve_device(args.device)
    choice = resolve_precision(args.precision, device)  # warns for bf16 on a device without fast bf16
    precision = choice.used
    batch_size = args.batch_size or (cfg.train.batch_size if args.config else 16)
    num_classes = args.num_classes
    manifest = None
    if args.shards is not None:
        if cfg.train_manifest is None:
            raise ValueError(f"{args.config}: no train_manifest to compare the shards with")
        manifest = read_manifest(cfg.train_manifest, cfg.root, classes=cfg.classes)
        num_classes = len(manifest.classes)

    classes = tuple(manifest.classes) if manifest is not None else tuple(str(i) for i in range(num_classes))

    def new_task() -> Any:
        composed = compose(cfg, TaskData.of(cfg.data, classes))  # seeds the weights
        task = composed.task
        task.model.to(device)
        if args.compile:
            task.model = torch.compile(task.model)  # type: ignore[assignment]
        return task

    task = new_task()
    model = getattr(task.model, "_orig_mod", task.model)
    if isinstance(model, AVModel):
        shapes = {"audio": default_input_of(model.audio_encoder), "video": default_input_of(model.video_encoder)}
    else:
        shapes = {input_modality(model): default_input_of(model)}
    if any(v is None for v in shapes.values()):
        raise ValueError(f"{cfg.model.name}: no default input size to build a synthetic batch from")
    batch = synthetic_batch(shapes.get("audio"), shapes.get("video"), batch_size, num_classes, device)
    matmul = _matmul_rates(device, seconds=args.matmul_seconds, size=args.matmul_size)  # first, on a quiet device
    rate = train_step_rate(task, batch, cfg, device=device, precision=precision, steps=args.steps, warmup=args.warmup)
    with torch.device("meta"):
        meta_model = build_model(cfg.model, num_classes)
        one = synthetic_batch(shapes.get("audio"), shapes.get("video"), 1, num_classes, "meta")
    inputs = (one["audio"], one["video"]) if isinstance(meta_model, AVModel) else (one[next(iter(shapes))],)
    flops_per_clip = 3 * forward_flops(meta_model, inputs)
    device_name, peak = device_peak_tflops(device)
    if args.peak_tflops is not None:
        peak = args.peak_tflops
    achieved = flops_per_clip * rate.clips_per_s
    flops_per_step = flops_per_clip * batch_size
    res: dict[str, Any] = {
        "model": cfg.model.name,
        "device": device_name,
        "precision": precision,
        "precision_requested": choice.requested,
        "precision_reason": choice.reason,
        "compile": bool(args.compile),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "input_shapes": {k: list(v) for k, v in shapes.items() if v is not None},
        "steps": args.steps,
        "warmup": args.warmup,
        "train_clips_per_s": rate.clips_per_s,
        "median_step_s": rate.median_step_s,
        "train_flops_per_clip": flops_per_clip,
        "achieved_tflops": achieved / 1e12,
        "peak_tflops": peak,
        "mfu": achieved / (peak * 1e12) if peak else None,
        # measured in this run: the device's matmul rate in each precision, and MFU against the rate of the one used
        "matmul_size": matmul["size"],
        "matmul_tflops": {k: matmul[k] / 1e12 for k in ("bf16", "fp32")},
        "train_flops_per_step": flops_per_step,
        "mfu_matmul": mfu(flops_per_step, rate.median_step_s, matmul[precision]),
    }
    if args.shards is not None and manifest is not None:
        workers = cfg.train.workers if args.workers is None else args.workers
        files_ds = AVDataset(manifest, cfg.data, train=True, seed=cfg.train.seed)
        loaders = {
            "source files": make_loader(files_ds, batch_size=batch_size, shuffle=True, num_workers=workers),
            "shards": make_shard_loader(
                ShardDataset(args.shards, cfg.data, train=True, seed=cfg.train.seed, batch_size=batch_size,
                             allow_urls=cfg.allow_shard_urls,
                             shuffle_buffer=cfg.train.shuffle_buffer, classes=manifest.classes),
                num_workers=workers,
            ),
        }  # fmt: skip
        e2e = loader_train_rate(
            new_task, loaders, cfg, device=device, precision=precision, steps=args.data_steps,
            warmup=args.warmup, rounds=args.rounds,
        )  # fmt: skip
        only = loader_rate(loaders, steps=args.data_steps, warmup=args.warmup, rounds=args.rounds)
        res["end_to_end"] = {
            "loader_only_clips_per_s": only,
            "loader_only_shards_over_files": only["shards"] / only["source files"],
            "workers": workers,
            "steps": args.data_steps,
            "rounds": args.rounds,
            "clips_per_s": e2e,
            "shards_over_files": e2e["shards"] / e2e["source files"],
            "busy_fraction": {k: v / rate.clips_per_s for k, v in e2e.items()},
        }
    if hasattr(os, "getloadavg"):
        res["load_average"] = list(os.getloadavg())
    return res


def _matmul_rates(device: torch.device, *, seconds: float, size: int | None) -> dict[str, Any]:
    """The device's bf16 and fp32 matmul FLOP/s (:func:`avformer.profiling.matmul_rate`) and the square side."""
    from avformer.profiling import matmul_rate

    n = size or (8192 if device.type == "cuda" else 2048)
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    return {"size": n, **{k: matmul_rate(device, dt, size=n, seconds=seconds) for k, dt in dtypes.items()}}


def _print_train(res: dict[str, Any]) -> None:
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in res["input_shapes"].items())
    print(
        f"bench train: {res['model']} ({shapes}), batch {res['batch_size']}, {res['precision']} "
        f"({res['precision_reason']})"
        f"{' + compile' if res['compile'] else ''} on {res['device']} ({res['threads']} threads); "
        f"median of {res['steps']} steps after {res['warmup']} warmup"
    )
    print(f"  model only (synthetic batch)  {res['train_clips_per_s']:9.1f} clips/s  {res['median_step_s']:.3f} s/step")
    mfu = f"MFU {100 * res['mfu']:.1f}% of {res['peak_tflops']:g} TFLOP/s bf16" if res["mfu"] is not None else (
        "MFU n/a (no bf16 peak for this device; --peak-tflops)")  # fmt: skip
    print(
        f"  model FLOPs per clip (3 x fwd) {res['train_flops_per_clip'] / 1e9:8.2f} GFLOP  "
        f"achieved {res['achieved_tflops']:.3f} TFLOP/s  {mfu}"
    )
    mm, n = res["matmul_tflops"], res["matmul_size"]
    print(
        f"  matmul {n}x{n} (measured first): bf16 {1000 * mm['bf16']:.0f} GFLOP/s, fp32 {1000 * mm['fp32']:.0f} "
        f"GFLOP/s ({mm['bf16'] / mm['fp32']:.1f}x)  MFU {100 * res['mfu_matmul']:.1f}% of the {res['precision']} "
        f"matmul rate ({res['train_flops_per_step'] / 1e9:.1f} GFLOP/step in {res['median_step_s']:.3f} s)"
    )
    e2e = res.get("end_to_end")
    if e2e:
        print(f"  end to end, real loader ({e2e['workers']} workers, {e2e['steps']} steps in {e2e['rounds']} rounds):")
        for name, v in e2e["clips_per_s"].items():
            busy = 100 * e2e["busy_fraction"][name]
            print(f"    {name:<13} {v:9.1f} clips/s  ({busy:.0f}% of the model-only rate)")
        print(f"    shards / source files: {e2e['shards_over_files']:.2f}x")
        only = e2e["loader_only_clips_per_s"]
        print(
            f"  loader alone (no training): source files {only['source files']:.1f} clips/s, shards "
            f"{only['shards']:.1f} clips/s ({e2e['loader_only_shards_over_files']:.2f}x)"
        )
    if "load_average" in res:
        print("  load average " + " ".join(f"{x:.2f}" for x in res["load_average"]))


def _predict_parser(sub: Any) -> None:
    from avformer.models.export_formats import BACKENDS

    p = sub.add_parser("predict", help="predict clips/s (decode + features + model): eager vs exported, fp32 vs bf16")
    p.add_argument("run", metavar="RUN", help="run or export folder (its model.onnx / model.torchscript.pt if any)")
    p.add_argument("files", nargs="+", metavar="FILE", help="media files (each predicted with --clips windows)")
    p.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable (default: all)")
    p.add_argument("--precision", action="append", choices=("fp32", "bf16"), help="repeatable (default: both)")
    p.add_argument("--repeats", type=int, default=3, help="alternating timed passes per variant; median kept")
    p.add_argument("--clips", type=int, default=1, help="windows per file (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch / ONNX Runtime intra-op threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _bench_predict(args: Any) -> dict[str, Any]:
    from avformer.eval.bench_predict import bench_predict
    from avformer.models.export_formats import BACKENDS
    from avformer.models.loading import load_run

    run = load_run(args.run)
    backends, precisions = args.backend or list(BACKENDS), args.precision or ["fp32", "bf16"]
    return bench_predict(run, args.run, args.files, backends=backends, precisions=precisions,
                         repeats=args.repeats, clips=args.clips)  # fmt: skip


def _print_predict(res: dict[str, Any]) -> None:
    print(
        f"bench predict: {res['model']}, {res['files']} files x {res['clips_per_file']} clip(s) = {res['windows']} "
        f"clips per pass, median of {res['repeats']} alternating passes, {res['threads']} threads, CPU"
    )
    print(f"  {'backend':<12} {'precision':<9} {'clips/s':>8} {'model ms/clip':>14} {'vs first':>8}  top-1 = first")
    for r in res["rows"]:
        print(
            f"  {r['backend']:<12} {r['precision']:<9} {r['clips_per_s']:8.2f} {r['model_ms_per_clip']:14.2f} "
            f"{r['vs_first']:7.2f}x  {r['top1_agrees']}/{res['files']}"
        )
    for name in res["skipped"]:
        print(f"  {name}: n/a (not supported by that backend)")
    if res["exported_for_the_bench"]:
        print(f"  exported for this bench into a temporary folder: {', '.join(res['exported_for_the_bench'])}")
    if res["load_average"]:
        print("  load average " + " ".join(f"{x:.2f}" for x in res["load_average"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="avformer bench", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("data", help="data-pipeline throughput against a naive baseline")
    p.add_argument("manifest")
    p.add_argument("--root", default=None, help="folder that relative paths start from (default: the manifest's)")
    p.add_argument("--limit", type=int, default=200, help="clips to use (first N rows; 0 = all)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the loader figure")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each pass; the median is kept")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--size", type=int, default=64, help="crop size (short side resize to the same)")
    p.add_argument("--num-mel-bins", type=int, default=128)
    p.add_argument("--no-wave-augment", action="store_true", help="skip the waveform-augmentation times")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _train_parser(sub)
    _predict_parser(sub)
    args = parser.parse_args(argv)
    if args.what in ("predict", "train"):
        from avformer.config import ConfigError
        from avformer.utils.checkpoint import CheckpointError

        run, show = (_bench_predict, _print_predict) if args.what == "predict" else (_bench_train, _print_train)
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        try:
            res = run(args)
        except (OSError, ValueError, KeyError, TypeError, UsageError, CheckpointError, ConfigError) as e:
            print(f"avformer bench {args.what}: {' '.join(str(e).split())}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(res, indent=2))
        else:
            show(res)
        return 0

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        manifest = read_manifest(args.manifest, args.root)
    except (OSError, ValueError) as e:
        print(f"avformer bench: {e}", file=sys.stderr)
        return 2
    if args.limit:
        manifest = manifest.subset(range(min(args.limit, len(manifest))))
    seconds = args.num_frames / args.fps
    cfg = DataConfig(
        clip_seconds=seconds,
        video=replace(
            VideoTransformConfig(), num_frames=args.num_frames, fps=args.fps, size=args.size, short_side=args.size
        ),
        audio=replace(AudioFeatureConfig(), num_mel_bins=args.num_mel_bins, num_frames=None),
    )
    res = bench_data(manifest, cfg, args.workers, args.batch_size, args.repeats, wave_augment=not args.no_wave_augment)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(
        f"bench data: {res['clips']} clips of {args.manifest}, {args.num_frames} frames @ {args.fps:g} fps, "
        f"{args.size}px, {args.num_mel_bins} mel; median of {args.repeats} interleaved repeats, 1 thread"
    )
    print(f"  ours (1 process)      {res['ours_clips_per_s']:8.1f} clips/s")
    print(f"  naive, PyAV defaults  {res['naive_clips_per_s']:8.1f} clips/s   ours is {res['speedup']:.2f}x")
    print(
        f"  naive, 1 thread       {res['naive_1thread_clips_per_s']:8.1f} clips/s   ours is "
        f"{res['speedup_vs_1thread']:.2f}x"
    )
    for k, v in res["loader_clips_per_s"].items():
        print(f"  DataLoader {k:<10} {v:8.1f} clips/s")
    print("  stages (ms per clip): " + ", ".join(f"{k} {v:.2f}" for k, v in res["stages_ms_per_clip"].items()))
    wave = res["wave_augment_ms_per_clip"]
    if wave:
        sample_ms = 1e3 / res["ours_clips_per_s"]
        print(
            f"  wave augmentations (ms per clip, {args.num_frames / args.fps:g}-s audio; a sample without them: "
            f"{sample_ms:.1f} ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in wave.items())
            + f"; all six add {wave['all six'] / sample_ms:.0%}"
        )
    if res["loader_summary"]:
        print(f"  {res['loader_summary']}")
    return 0
