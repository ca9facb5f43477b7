"""``avformer config show RECIPE [key=value ...]``: the resolved config, every key with its value.

``inherit:`` followed, overrides applied in order, defaults filled in: the YAML a run folder's ``config.yaml`` would
start from, so a recipe can be read whole before it is copied or changed. Exit status 2 for a bad recipe or
override (one line).
"""

from __future__ import annotations

import argparse
import sys

from avformer.cli._help import plain
from avformer.config import ConfigError, apply_overrides, dump, load
from avformer.utils.errors import UsageError, report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="avformer config", description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="action", required=True)
    show = sub.add_parser("show", help="print the resolved config with every key")
    show.add_argument("recipe", help="experiment YAML (configs/experiment/..., your own)")
    show.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, applied in order")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for item in args.overrides:
            if "=" not in item:
                raise UsageError(f"override {item!r} is not key=value")
        cfg = apply_overrides(load(args.recipe), list(args.overrides))
    except (UsageError, ConfigError) as e:
        return report("avformer config", e)
    sys.stdout.write(dump(cfg))
    return 0
