"""The fusion family end to end: every fusion config of the fusion table trains, evaluates and predicts through the
CLI (``avformer train`` / ``eval`` / ``predict``) on tiny synthetic data; a UAVM checkpoint predicts audio-only,
video-only and audio-visual files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avformer.cli import embed, predict, train
from avformer.cli import eval as eval_cli
from avformer.models.loading import load_run
from tests.cli._tiny_run import make_synth, write_video_only, write_wav

ROOT = Path(__file__).resolve().parents[2]
FUSION = ROOT / "configs" / "experiment" / "fusion"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth"))


@pytest.mark.parametrize("fusion", ["concat", "sparse", "cross_attention", "agnostic", "uavm"])
def test_fusion_config_trains_evaluates_and_predicts(
    fusion: str, synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["--config", str(FUSION / f"{fusion}.yaml"), "--out", str(out)]
    args += [f"train_manifest={synth}", f"val_manifest={synth}", "train.epochs=1", "train.batch_size=4"]
    args += ["train.workers=0"]
    assert train.main(args) == 0
    capsys.readouterr()
    run = load_run(out)
    assert run.model.cfg is not None and run.model.cfg.fusion == fusion
    assert eval_cli.main([str(out), "--data", str(synth), "--out", str(tmp_path / "eval"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["metrics"]) == {"fused", "audio", "video"}
    media = tmp_path / "media"
    media.mkdir()
    files = [str(write_wav(media / "a.wav")), str(write_video_only(media / "v.mp4"))]
    assert predict.main([str(out), *files, "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [(r["has_audio"], r["has_video"]) for r in lines] == [(True, False), (False, True)]
    assert all(r["ok"] and len(r["top"]) > 0 for r in lines)
    if fusion == "agnostic":  # its joint embedding is written with the others, for retrieval
        assert embed.main([str(out), str(synth), "--out", str(tmp_path / "emb")]) == 0
        saved = torch.load(tmp_path / "emb" / "embeddings.pt", weights_only=True)
        assert saved["av_fused"].shape[0] == saved["audio_va"].shape[0] > 0
