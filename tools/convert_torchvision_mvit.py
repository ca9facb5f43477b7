"""Convert a torchvision MViTv2-S checkpoint (``mvit_v2_s-*.pth``, a plain state dict) to ``mvit_v2_s_16x4`` keys.

The reading, mapping and strict check are ``avformer.models.convert.convert_torchvision_mvit`` (shared with
``avformer convert --from torchvision-mvit``, which writes an export folder that ``eval`` / ``predict`` load); this
script saves the converted state dict alone, for code that builds the model itself. torchvision is not needed.
Preprocessing of those weights (torchvision ``MViT_V2_S_Weights``): 16 frames at stride 4 (7.5 fps), resize 256,
centre crop 224, mean 0.45 and std 0.225 per channel.

    .venv/bin/python tools/convert_torchvision_mvit.py mvit_v2_s-ae3be167.pth mvit_v2_s_16x4_k400.pt
"""

from __future__ import annotations

import argparse
import sys

import torch

from avformer.models.convert import convert_torchvision_mvit
from avformer.utils.errors import UsageError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="torchvision state dict (.pth)")
    p.add_argument("dst", help="output path for the converted state dict")
    args = p.parse_args(argv)

    try:
        run = convert_torchvision_mvit(args.src)  # weights_only load; raises on any missing/unexpected key or shape
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    converted = run.model.state_dict()
    torch.save(converted, args.dst)
    print(f"wrote {len(converted)} tensors to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
