"""Reconstruction pictures (avformer.eval.reconstruction)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from avformer.eval.reconstruction import write_reconstructions
from avformer.tasks.masked import Reconstruction


class _Task:
    """Reconstructs by copying the input; records the mode it was called in."""

    def __init__(self) -> None:
        self.model = nn.Linear(1, 1)
        self.modes: list[bool] = []

    def reconstruct(self, batch: dict, seed: int = 0) -> dict[str, Reconstruction]:
        self.modes.append(self.model.training)
        out = {}
        for m in ("audio", "video"):
            x = batch[m]
            masked = x.clone()
            masked[:, :, :2] = float("nan")
            out[m] = Reconstruction(m, x, masked, x.clone(), 0.5, norm_pix=m == "video")
        return out


def test_writes_one_png_per_modality_in_eval_mode_and_restores_the_mode(tmp_path: Path) -> None:
    task = _Task()
    batch = {"audio": torch.randn(6, 1, 16, 20), "video": torch.rand(6, 3, 4, 8, 8), "batch_size": 6, "id": ["x"] * 6}
    paths = write_reconstructions(task, [batch], tmp_path, num_clips=2, title="run")
    assert [p.name for p in paths] == ["reconstruction_audio.png", "reconstruction_video.png"]
    assert task.modes == [False] and task.model.training  # drawn in eval mode, training mode restored
    with Image.open(paths[0]) as im:
        assert im.size == (1200, round((2.2 * 2 + 0.6) * 100))  # a fixed pixel size: 12 x (2.2 per clip + 0.6) in
    assert write_reconstructions(object(), [batch], tmp_path / "none") == []  # a task that cannot reconstruct
    assert not (tmp_path / "none").exists()
