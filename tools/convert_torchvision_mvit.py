"""Convert a torchvision MViTv2-S checkpoint (``mvit_v2_s-*.pth``, a plain state dict) to ``mvit_v2_s_16x4`` keys.

The mapping itself is ``avformer.models.multiscale.convert_torchvision_mvit_state_dict``; this script loads the file,
converts it, checks that it loads strictly into ``mvit_v2_s_16x4(num_classes=400)`` and saves the result.
torchvision is not needed. Preprocessing of those weights (torchvision ``MViT_V2_S_Weights``): 16 frames at
stride 4 (7.5 fps), resize 256, centre crop 224, mean 0.45 and std 0.225 per channel.

    .venv/bin/python tools/convert_torchvision_mvit.py mvit_v2_s-ae3be167.pth mvit_v2_s_16x4_k400.pt
"""

from __future__ import annotations

import argparse
import sys

import torch

from avformer.models.multiscale import convert_torchvision_mvit_state_dict
from avformer.models.registry import create_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="torchvision state dict (.pth)")
    p.add_argument("dst", help="output path for the converted state dict")
    args = p.parse_args(argv)

    state = torch.load(args.src, map_location="cpu", weights_only=True)
    converted = convert_torchvision_mvit_state_dict(state)
    with torch.device("meta"):
        model = create_model("mvit_v2_s_16x4", num_classes=400)
    model.load_state_dict(converted, strict=True, assign=True)  # raises on any missing/unexpected key or shape
    torch.save(converted, args.dst)
    print(f"wrote {len(converted)} tensors to {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
