"""``avformer models [--filter STR] [--json]``: every registered model, its parameter count and input.

Each model is built on the ``meta`` device (shapes only, no memory, no init cost), so listing the large variants
takes milliseconds. The input kind and default input come from the model's ``input_kind`` and ``default_input``
attributes ("?" when a family does not expose them).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["describe_model", "main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avformer models", description="List registered models with parameter counts.")
    p.add_argument("--filter", default=None, metavar="STR", help="only names containing STR")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return p


def default_input_of(model: Any) -> tuple[int, ...] | None:
    """A model's per-sample default input shape (no batch dim), from ``model.default_input`` or its config."""
    shape = getattr(model, "default_input", None)
    if shape is None:
        shape = getattr(getattr(model, "cfg", None), "default_input", None)
    return None if shape is None else tuple(int(s) for s in shape)


def describe_model(name: str) -> dict[str, Any]:
    """``{"name", "params", "input_kind", "default_input"}`` of a registered model, built on the meta device."""
    import torch

    from avformer.models.registry import create_model

    with torch.device("meta"):
        model = create_model(name)
    return {
        "name": name,
        "params": sum(p.numel() for p in model.parameters()),
        "input_kind": str(getattr(model, "input_kind", "?")),
        "default_input": default_input_of(model),
    }


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "x".join(map(str, shape))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from avformer.models.registry import list_models

    names = list_models(args.filter)
    rows: list[dict[str, Any]] = []
    failed = 0
    for name in names:
        try:
            rows.append(describe_model(name))
        except Exception as e:  # one broken variant must not hide the others
            failed += 1
            rows.append({"name": name, "error": f"{type(e).__name__}: {e}"})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        if not rows:
            print(f"no registered model matches {args.filter!r}")
        width = max([len(r["name"]) for r in rows] + [5])
        print(f"{'model'.ljust(width)}  {'params':>10}  {'input':<12}  default input (per sample)")
        for r in rows:
            if "error" in r:
                print(f"{r['name'].ljust(width)}  {'-':>10}  error: {r['error']}")
                continue
            params = f"{r['params'] / 1e6:.2f}M"
            print(f"{r['name'].ljust(width)}  {params:>10}  {r['input_kind']:<12}  {_fmt_shape(r['default_input'])}")
    if failed:
        print(f"avformer models: {failed} model(s) failed to build", file=sys.stderr)
    return 1 if failed else 0
