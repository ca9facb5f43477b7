"""Picture geometry: the display matrix (right-angle rotations and reflections) and the output size.

Decisions taken where the spec was silent (all are tested in ``tests/data/test_media.py``):

- **Size.** ``size=int``: the short side of the *displayed* (rotated) picture, aspect kept; ``size=(H, W)``:
  exact. With ``size=None`` a picture whose long side exceeds ``max_side`` (default 2048) is shrunk to it, aspect
  kept. The resize happens inside the RGB conversion (swscale, bilinear), so an 8K frame is never materialised
  in RGB. The output size is fixed by the first converted frame (a mid-stream resolution change is resized to
  it). The sample aspect ratio is ignored (pixels are treated as square), as torchvision does.
- **Rotation.** The frame's display matrix is applied to the output (90/180/270 degree rotations and
  reflections, the same mapping as the ``ffmpeg`` CLI's autorotate); other angles are ignored with a warning.
  ``rotate=False`` returns the coded picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class _Orientation:
    """Right-angle display transform: transpose first, then flip rows/columns (out = flips(transpose(in)))."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    def apply(self, img: np.ndarray) -> np.ndarray:
        """(H, W, 3) -> displayed (H', W', 3); a view, no copy."""
        if self.transpose:
            img = img.transpose(1, 0, 2)
        if self.flip_rows:
            img = img[::-1]
        if self.flip_cols:
            img = img[:, ::-1]
        return img


def _orientation(frame: Any) -> tuple[_Orientation, str | None]:
    """Read the frame's display matrix. Returns (orientation, warning or None).

    FFmpeg's matrix maps a source point (x, y) to ``x' = a x + c y``, ``y' = b x + d y`` (a, b, c, d =
    m[0], m[1], m[3], m[4] in 16.16 fixed point). Diagonal: flips by the signs of a and d. Anti-diagonal:
    a transpose, then flips by the signs of b (rows) and c (columns).
    """
    matrix = None
    try:
        for sd in frame.side_data:
            if str(getattr(sd.type, "name", sd.type)).endswith("DISPLAYMATRIX"):
                raw = bytes(sd)
                if len(raw) >= 36:
                    matrix = np.frombuffer(raw[:36], dtype=np.int32).astype(np.float64) / 65536.0
                break
    except Exception:
        matrix = None
    if matrix is None:
        rot = round(float(getattr(frame, "rotation", 0) or 0)) % 360  # counter-clockwise degrees
        table = {
            0: _Orientation(),
            90: _Orientation(True, True, False),
            180: _Orientation(False, True, True),
            270: _Orientation(True, False, True),
        }
        if rot in table:
            return table[rot], None
        return _Orientation(), f"video: display rotation {rot} deg is not a right angle; ignored"
    a, b, c, d = (float(v) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    diag, anti = abs(a) + abs(d), abs(b) + abs(c)
    if min(diag, anti) > 1e-3 * max(diag, anti) or max(diag, anti) == 0:
        return _Orientation(), "video: display matrix is not a right-angle rotation/reflection; ignored"
    if diag > anti:
        return _Orientation(False, d < 0, a < 0), None
    return _Orientation(True, b < 0, c < 0), None


def _output_size(disp_hw: tuple[int, int], size: int | tuple[int, int] | None, max_side: int | None) -> tuple[int, int]:
    """Displayed output (H, W) for a displayed source (H, W)."""
    h, w = disp_hw
    if size is None:
        if max_side is None or max(h, w) <= max_side:
            return h, w
        scale = max_side / max(h, w)
        return max(1, round(h * scale)), max(1, round(w * scale))
    if isinstance(size, int):
        if h <= w:
            return size, max(1, round(w * size / h))
        return max(1, round(h * size / w)), size
    return int(size[0]), int(size[1])
