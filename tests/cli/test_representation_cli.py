"""``probe-linear``, ``embed`` and ``retrieve`` on runs that are not VATT: an MMT-Tiny run (``avformer train``'s
kind) and a single audio encoder. The models are untrained; the tests check what the commands do with them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from avformer.cli import embed, probe_linear, retrieve
from avformer.eval.representations import represent
from avformer.models.loading import load_run
from tests.cli._tiny_run import make_run, make_synth


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 clips: 8 in ``train.csv``, 4 in ``val.csv`` (every clip is labeled)."""
    out = tmp_path_factory.mktemp("clips")
    make_synth(out)
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    for name, part in (("train", rows[:8]), ("val", rows[8:])):
        with (out / f"{name}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, ["path", "label"], extrasaction="ignore")
            w.writeheader()
            w.writerows(part)
    return out


@pytest.fixture(scope="module")
def mmt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("mmt"), "mmt")


def test_probe_linear_on_an_mmt_run(synth: Path, mmt_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    args = [str(mmt_run), "--train", str(synth / "train.csv"), "--val", str(synth / "val.csv"), "--json", str(out)]
    assert probe_linear.main(args) == 0
    res = json.loads(out.read_text())
    for name in ("pretrained", "random_init"):
        for mod in ("video", "audio"):
            assert 0.0 <= res[name][mod]["top1"] <= 1.0 and res[name][mod]["n_train"] > 0
    assert "a2v_R@1" in res["pretrained"]["retrieval"]  # the contrastive projections are its audio-video space


def test_embed_and_retrieve_on_an_mmt_run(
    synth: Path, mmt_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVFORMER_PROGRESS_INTERVAL", "0")  # a progress line per batch (stdout is not a terminal)
    index = tmp_path / "index"
    assert embed.main([str(mmt_run), str(synth / "manifest.csv"), "--out", str(index), "--batch-size", "4"]) == 0
    assert "embed: 1/" in capsys.readouterr().out
    data = torch.load(index / "embeddings.pt", weights_only=True)
    n = len(list(csv.DictReader((synth / "manifest.csv").open())))
    assert data["audio_va"].shape[0] == data["video_va"].shape[0] == n and "video_vt" not in data
    assert {"a2v_R@1", "a2v_mAP"} <= set(json.loads((index / "retrieval.json").read_text()))
    capsys.readouterr()
    query = synth / next(iter(csv.DictReader((synth / "manifest.csv").open())))["path"]
    assert retrieve.main([str(index), "--file", str(query), "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["score"] >= hits[-1]["score"]
    assert retrieve.main([str(index), "--text", "a dog barks"]) == 2  # no text encoder: one clear line
    assert "does not embed text" in capsys.readouterr().err
    assert retrieve.main([str(index), "--file", str(query), "-k", "2"]) == 0  # text: says what it matched, how
    header, columns, *rows = capsys.readouterr().out.splitlines()
    assert header.startswith(f"top 2: the audio of {query} against the clips' videos (audio-video space)")
    assert "cosine similarity" in header and columns.split() == ["rank", "score", "id", "path", "label"]
    assert len(rows) == 2


def test_an_audio_encoder_run_is_probed_on_audio_only(synth: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "mat", "audio")
    out = tmp_path / "probe.json"
    args = [str(run), "--train", str(synth / "train.csv"), "--val", str(synth / "val.csv")]
    assert probe_linear.main([*args, "--modality", "audio", "--no-baseline", "--json", str(out)]) == 0
    assert set(json.loads(out.read_text())["pretrained"]) >= {"audio"}
    assert probe_linear.main(args) == 2  # the default asks for video too: a clear error, not a traceback


def test_mmt_representations_of_one_modality_never_see_the_other(mmt_run: Path) -> None:
    """Each modality is represented alone: changing the video leaves every audio representation unchanged (with the
    fused pass, the bottleneck would carry the video into the audio tokens and retrieval could cheat)."""
    model = load_run(mmt_run).model
    audio, video = torch.randn(3, 1, 64, 100), torch.randn(3, 3, 4, 32, 32)
    with torch.no_grad():
        a = represent(model, {"audio": audio, "video": video})
        b = represent(model, {"audio": audio, "video": torch.randn_like(video)})
        fused = model(audio, video).audio_pooled
    torch.testing.assert_close(a["audio_pooled"], b["audio_pooled"], rtol=0, atol=0)
    torch.testing.assert_close(a["audio_va"], b["audio_va"], rtol=0, atol=0)
    assert not torch.allclose(a["video_va"], b["video_va"])
    assert not torch.allclose(fused, a["audio_pooled"])  # the fused pass does mix: the test can tell them apart
