"""Inference speed of our AST against ``transformers``' ``ASTForAudioClassification`` with the same weights.

    python tools/bench_ast_vs_transformers.py [--batch 1 8] [--precision fp32 bf16] [--repeats 5] [--features]

Builds ``ASTForAudioClassification`` from an ``ASTConfig`` (AST-Base: 768 wide, 12 blocks, patch 16, stride 10,
128 mel x 1024 frames, 527 classes, random weights), converts its state dict into ``ast_base``
(:func:`avformer.models.vit.convert_transformers_ast_state_dict`, geometry from
:func:`avformer.models.convert.ast_overrides_from_hf`), checks the logits agree, then times the forward pass of both
on the same input under ``torch.no_grad`` (what ``predict`` runs), for each batch size and precision (bf16: CPU
autocast for both). Every repeat runs ours and theirs back to back, alternating which goes first; the median is
kept, so the ratio holds on a busy machine. ``--features`` also times the features of one 10.24 s clip (ours:
``AudioFeatures(AudioFeatureConfig())``, the AST fbank; theirs: ``ASTFeatureExtractor``) and prints the per-clip
predict time (features + forward at batch 1). transformers' attention implementation is printed (its default,
SDPA when available). ``--onnxruntime`` also exports ours to ONNX (:func:`avformer.models.export_formats.write_onnx`,
what ``avformer export --format onnx`` writes) and times it on ONNX Runtime (``predict --backend onnxruntime``, fp32
only) against theirs in eager fp32, in the same alternating rounds. Before the timings, the 2048x2048 matmul rate of
each precision is measured and, after them, every row's forward rate is printed as a share of it (the forward's
FLOPs counted by :func:`avformer.profiling.forward_flops`): how much room any implementation of the same FLOPs in
the same precision has left. Needs the dev extra (transformers, onnxruntime).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from avformer.data.audio import AudioFeatureConfig, AudioFeatures
from avformer.models.convert import ast_overrides_from_hf
from avformer.models.export_formats import OnnxRuntimeBackend, write_onnx
from avformer.models.registry import create_model
from avformer.models.vit import convert_transformers_ast_state_dict
from avformer.profiling import forward_flops, matmul_rate

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _autocast(precision: str) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    p.add_argument("--repeats", type=int, default=5, help="timed alternating pairs per setting (median kept)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--features", action="store_true", help="also time the features (ours vs ASTFeatureExtractor)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--onnxruntime", action="store_true", help="also ours exported to ONNX, on ONNX Runtime (fp32)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    hf_cfg = ASTConfig(num_labels=527)
    theirs = ASTForAudioClassification(hf_cfg).eval()
    ours = create_model("ast_base", num_classes=527, **ast_overrides_from_hf(hf_cfg.to_dict())).eval()
    ours.load_state_dict(convert_transformers_ast_state_dict(theirs.state_dict()))
    F, T = hf_cfg.num_mel_bins, hf_cfg.max_length
    attn = getattr(theirs.config, "_attn_implementation", "?")
    print(f"AST-Base {F}x{T}, {sum(p.numel() for p in ours.parameters()) / 1e6:.1f} M params; torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; transformers attention: {attn}")  # fmt: skip
    print(f"load average at start: {_load()}")

    rates = {pr: matmul_rate("cpu", _DTYPES[pr], size=2048, seconds=1.0) for pr in args.precision}
    flops_per_clip = forward_flops(copy.deepcopy(ours).to("meta"), (torch.zeros(1, 1, F, T, device="meta"),))
    print("matmul 2048x2048: " + ", ".join(f"{pr} {r / 1e9:.0f} GFLOP/s" for pr, r in rates.items())
          + f"; forward FLOPs per clip {flops_per_clip / 1e9:.1f} G")  # fmt: skip
    x = torch.randn(max(args.batch), F, T)  # (B, F, T) log-mel
    with torch.no_grad():
        diff = (ours(x[:2, None]) - theirs(x[:2].transpose(1, 2)).logits).abs().max().item()
    print(f"same weights: max |logit difference| ours vs theirs, fp32, batch 2: {diff:.2e}")
    ort = None
    if args.onnxruntime:
        ort = OnnxRuntimeBackend(write_onnx(ours, Path(tempfile.mkdtemp(prefix="ast_onnx_"))))
        with torch.no_grad():
            diff = (ort(x[:2, None]) - theirs(x[:2].transpose(1, 2)).logits).abs().max().item()
        print(f"ours on ONNX Runtime vs theirs, fp32, batch 2: max |logit difference| {diff:.2e}")

    print(f"{'batch':>5} {'precision':<9} {'ours ms':>9} {'theirs ms':>10} {'ours clips/s':>13} {'ratio':>7}")
    per_clip: dict[str, tuple[float, float]] = {}
    shares: list[str] = []
    for precision in args.precision:
        for b in args.batch:
            a, h = x[:b, None], x[:b].transpose(1, 2)  # ours (B, 1, F, T); theirs (B, T, F)
            fns = {"ours": lambda a=a: ours(a), "theirs": lambda h=h: theirs(h).logits}
            if ort is not None and precision == "fp32":
                fns["ours onnxruntime"] = lambda a=a: ort(a)
            times: dict[str, list[float]] = {name: [] for name in fns}
            with torch.no_grad(), _autocast(precision):
                for _ in range(args.warmup):
                    for fn in fns.values():
                        fn()
                for r in range(args.repeats):
                    for name in list(fns) if r % 2 == 0 else list(fns)[::-1]:
                        times[name].append(_time(fns[name]))
            med = {name: statistics.median(t) for name, t in times.items()}
            mt = med["theirs"]
            share = {name: b * flops_per_clip / t / rates[precision] for name, t in med.items()}
            shares.append(f"batch {b} {precision}: " + ", ".join(f"{n} {v:.0%}" for n, v in share.items()))
            if b == 1:
                per_clip[precision] = (med["ours"], mt)
            for name in (n for n in fns if n != "theirs"):
                mo = med[name]
                label = precision if name == "ours" else f"{precision} ORT"
                print(f"{b:5d} {label:<9} {mo * 1e3:9.1f} {mt * 1e3:10.1f} {b / mo:13.2f} {mt / mo:6.2f}x")
    print("forward FLOP/s as a share of the same precision's matmul rate:")
    for line in shares:
        print(f"  {line}")
    if args.features:
        from transformers import ASTFeatureExtractor

        wav = torch.randn(round(T * 0.01 * 16000)).mul(0.1)
        extractor, audio_features = ASTFeatureExtractor(), AudioFeatures(AudioFeatureConfig()).eval()
        ft: dict[str, list[float]] = {"ours": [], "theirs": []}
        feats = {
            "ours": lambda: audio_features(wav),
            "theirs": lambda: extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt").input_values,
        }
        with torch.no_grad():
            for fn in feats.values():
                fn()
            for r in range(args.repeats):
                for name in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
                    ft[name].append(_time(feats[name]))
        fo, fh = statistics.median(ft["ours"]), statistics.median(ft["theirs"])
        print(f"features of one 10.24 s clip: ours {fo * 1e3:.1f} ms, theirs {fh * 1e3:.1f} ms ({fh / fo:.2f}x)")
        for precision, (mo, mt) in per_clip.items():
            print(
                f"predict per clip (features + forward, batch 1, {precision}): ours {(fo + mo) * 1e3:.1f} ms, "
                f"theirs {(fh + mt) * 1e3:.1f} ms ({(fh + mt) / (fo + mo):.2f}x)"
            )
    print(f"load average at end: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
