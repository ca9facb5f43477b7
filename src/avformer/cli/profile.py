"""``avformer profile MODEL``: parameters, FLOPs, peak training memory and throughput of a registered model.

    avformer profile ast_base                                  # default input of the model, batch 1, CPU
    avformer profile mat_base --compare ast_base --input 1x128x100 --steps 0
    avformer profile mvit_v2_s_16x4 --device cuda --dtype bfloat16 --batch 8 --json

``--input`` is one sample's shape without the batch dim (``1x128x1024`` spectrogram, ``3x16x224x224`` video);
without it each model uses its ``default_input``. FLOPs are counted on a copy built on the meta device, on the
eager attention path; memory is measured on CUDA and estimated on CPU; throughput uses the fused path. The methods
are described in ``avformer.profiling``; the output names the path and the method it used.
``--compare OTHER`` profiles OTHER in the same run (same ``--input`` if given, else its own default input;
``--set`` overrides apply to MODEL only) and prints MODEL/OTHER ratios.
What runs is printed before it runs, and the throughput steps show progress (a bar on a terminal, else a line at
most every 30 s; ``avformer.utils.progress``); with ``--json`` these go to stderr.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from typing import Any

from rich.console import Console

__all__ = ["main", "parse_shape"]

_DTYPES = ("float32", "bfloat16", "float16")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x128x1024"`` -> ``(1, 128, 1024)``."""
    try:
        shape = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"bad shape {text!r}: expected positive ints joined by 'x', e.g. 1x128x1024") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"bad shape {text!r}: expected positive ints joined by 'x', e.g. 1x128x1024")
    return shape


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"bad --set {text!r}: expected KEY=VALUE")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a plain string such as pool=mean


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer profile",
        description="Parameters, FLOPs (forward, forward+backward), peak training memory and throughput.",
    )
    p.add_argument("model", help="registered model name (see `avformer models`)")
    p.add_argument("--input", default=None, metavar="SHAPE", help="one sample's shape, e.g. 1x128x1024")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument("--steps", type=int, default=10, help="timed throughput steps; 0 skips throughput (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    p.add_argument("--dtype", choices=_DTYPES, default="float32", help="float32, or autocast to bf16/fp16")
    p.add_argument("--compare", default=None, metavar="OTHER", help="also profile OTHER and print MODEL/OTHER ratios")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override of MODEL (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def _profile_one(
    name: str, overrides: dict[str, Any], shape: tuple[int, ...] | None, args: Any, console: Console
) -> dict[str, Any]:
    """Profile one model; what runs is said on ``console`` before it runs (the throughput steps can take minutes)."""
    import torch

    from avformer.cli.models import default_input_of
    from avformer.models.registry import create_model
    from avformer.profiling import profile_model

    device = torch.device(args.device)
    with torch.device("meta"):
        flops_model = create_model(name, **overrides)
    sample = shape or default_input_of(flops_model)
    if sample is None:
        raise ValueError(f"{name} has no default_input; pass --input")
    shown = "x".join(map(str, (args.batch, *sample)))
    console.print(
        f"profile {name}: input {shown} on {device}, {args.dtype}, {_plural(torch.get_num_threads(), 'thread')}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    with torch.device(device):
        model = create_model(name, **overrides)
    x = torch.randn((args.batch, *sample), device=device)
    result = profile_model(
        model,
        x,
        flops_model=flops_model,
        dtype=getattr(torch, args.dtype),
        steps=args.steps,
        warmup=args.warmup,
        console=console,
    )
    return {"model": name, "input_kind": str(getattr(model, "input_kind", "?")), **result.to_dict()}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _si(n: float, unit: str = "") -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def _bytes(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _report(r: dict[str, Any]) -> str:
    shape = "x".join(map(str, r["input_shape"]))
    fl = r["flops"]
    mem = r["memory"]
    lines = [
        f"model             {r['model']}  ({r['input_kind']})",
        f"input             {shape}  (batch x sample)   device {r['device']}  dtype {r['dtype']}  "
        f"threads {r['threads']}",
        f"parameters        {r['params']:,}  ({_si(r['params'])}; trainable {r['trainable_params']:,})",
        f"FLOPs forward     {_si(fl['forward'], 'FLOPs')}  = {_si(fl['forward_macs'], 'MACs')}",
        f"FLOPs fwd+bwd     {_si(fl['forward_backward'], 'FLOPs')}",
        f"  counted on      {r['flops_path']}; matmul/conv only, 2 FLOPs per multiply-add",
        f"peak train mem    {_bytes(mem['peak_bytes'])}  ({'measured' if mem['measured'] else 'ESTIMATE'})",
        f"  method          {mem['method']}",
    ]
    if mem["parts"]:
        lines.append("  parts           " + ", ".join(f"{k} {_bytes(v)}" for k, v in mem["parts"].items()))
    for key, label in (("forward", "throughput fwd"), ("forward_backward", "throughput f+b")):
        t = r[key]
        if t is not None:
            lines.append(
                f"{label:<18}{t['clips_per_s']:.3f} clips/s  (median {t['median_step_s'] * 1e3:.1f} ms "
                f"per step of {t['steps']}, fused attention)"
            )
    return "\n".join(lines)


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    def ratio(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None or y == 0 else x / y

    def tput(r: dict[str, Any], key: str) -> float | None:
        return None if r[key] is None else r[key]["clips_per_s"]

    return {
        "params": ratio(a["params"], b["params"]),
        "flops_forward": ratio(a["flops"]["forward"], b["flops"]["forward"]),
        "flops_forward_backward": ratio(a["flops"]["forward_backward"], b["flops"]["forward_backward"]),
        "peak_memory": ratio(a["memory"]["peak_bytes"], b["memory"]["peak_bytes"]),
        "throughput_forward": ratio(tput(a, "forward"), tput(b, "forward")),
        "throughput_forward_backward": ratio(tput(a, "forward_backward"), tput(b, "forward_backward")),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        shape = parse_shape(args.input) if args.input else None
        overrides = dict(_parse_override(s) for s in args.set)
        if args.batch < 1 or args.steps < 0 or args.warmup < 0:
            raise ValueError("--batch must be >= 1, --steps and --warmup >= 0")
        if args.dtype != "float32" and not args.device.startswith(("cpu", "cuda")):
            raise ValueError(f"--dtype {args.dtype} needs --device cpu or cuda")
        import torch

        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA device")
        console = Console(stderr=args.json)  # --json: stdout holds the JSON alone, progress goes to stderr
        result = _profile_one(args.model, overrides, shape, args, console)
        other = _profile_one(args.compare, {}, shape, args, console) if args.compare else None
    except (KeyError, TypeError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) would add quotes
        print(f"avformer profile: {msg}", file=sys.stderr)
        return 2
    ratios = _ratios(result, other) if other else None
    if args.json:
        print(json.dumps({"result": result, "compare": other, "ratios": ratios}, indent=2))
        return 0
    print(_report(result))
    if other is not None and ratios is not None:
        print()
        print(_report(other))
        print()
        print(f"ratios {result['model']} / {other['model']} (same run, same device):")
        for k, v in ratios.items():
            if v is not None:
                print(f"  {k:<28}{v:.3f}")
    return 0
