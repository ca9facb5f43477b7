"""``avformer export``: a weights-only folder that every command (through ``load_run``) and ``avformer.load`` read in
place of the run, with the run's numbers; bf16 close to them; a damaged export is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import avformer
from avformer.cli import export as export_cli
from avformer.cli import predict as predict_cli
from avformer.models.loading import EXPORTERS, is_export, load_run
from avformer.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.cli._tiny_run import make_run, write_wav


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MMT run whose ``best.pt`` holds what the trainer's does: weights, EMA shadow, AdamW state."""
    out = make_run(tmp_path_factory.mktemp("export") / "run", "mmt", ema=True)
    ckpt = load_checkpoint(out / "best.pt")
    model = load_run(out, use_ema=False).model
    opt = torch.optim.AdamW(model.parameters())
    _logits(model, 1).sum().backward()
    opt.step()
    save_checkpoint(out / "best.pt", {**ckpt, "optimizer": opt.state_dict()})
    return out


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("wav") / "clip.wav")


def _logits(model: torch.nn.Module, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return model(video=torch.randn(n, 3, 4, 32, 32, generator=g), audio=torch.randn(n, 1, 64, 100, generator=g)).logits


def _export(run: Path, out: Path, *extra: str) -> Path:
    assert export_cli.main([str(run), "--out", str(out), *extra]) == 0
    return out


def test_the_export_gives_the_runs_numbers_and_is_much_smaller(
    run: Path, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _export(run, tmp_path / "exp")
    printed = capsys.readouterr().out
    assert "model.safetensors" in printed and "best.pt" in printed and "x the export" in printed
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "config.yaml", "model.safetensors"]
    assert is_export(out) and is_export(out / "model.safetensors") and not is_export(run)
    size, ckpt_size = (out / "model.safetensors").stat().st_size, (run / "best.pt").stat().st_size
    assert size * 3 < ckpt_size  # weights only: no raw copy beside the EMA, no optimizer moments

    ours, theirs = load_run(out), load_run(run)  # the run: EMA weights, as the export took
    assert ours.classes == theirs.classes and ours.epoch == theirs.epoch == 3
    assert ours.cfg.data == theirs.cfg.data and ours.spec == theirs.spec
    for k, v in theirs.model.state_dict().items():
        assert torch.equal(ours.model.state_dict()[k], v), k
    with torch.no_grad():
        torch.testing.assert_close(_logits(ours.model, 2), _logits(theirs.model, 2), atol=1e-6, rtol=0)

    a = avformer.load(out, device="cpu").predict(wav, topk=3, clips=1)[0]
    b = avformer.load(run, device="cpu").predict(wav, topk=3, clips=1)[0]
    assert a.ok and [n for n, _ in a.top] == [n for n, _ in b.top]
    assert [p for _, p in a.top] == pytest.approx([p for _, p in b.top], abs=1e-6)


def test_predict_reads_an_export_like_a_run(run: Path, wav: Path, tmp_path: Path, capsys) -> None:
    out = _export(run, tmp_path / "exp")
    capsys.readouterr()
    outputs = []
    for source in (out, run):
        assert predict_cli.main([str(source), str(wav), "--json", "--clips", "1", "--topk", "3"]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["top"])
    assert outputs[0] == outputs[1]


def test_a_bf16_export_is_half_the_size_and_close(run: Path, tmp_path: Path) -> None:
    # the raw weights (the fixture's EMA shadow is the weights + 1, which no training makes)
    fp32 = _export(run, tmp_path / "fp32", "--no-ema")
    bf16 = _export(run, tmp_path / "bf16", "--no-ema", "--dtype", "bf16")
    ratio = (bf16 / "model.safetensors").stat().st_size / (fp32 / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    ours, theirs = load_run(bf16), load_run(run, use_ema=False)
    for k, v in theirs.model.state_dict().items():
        if v.is_floating_point():  # bf16 keeps 8 significant bits: relative rounding <= 2^-8
            torch.testing.assert_close(ours.model.state_dict()[k], v, rtol=2**-8, atol=1e-30)
    with torch.no_grad():
        p, q = _logits(ours.model, 4).softmax(-1), _logits(theirs.model, 4).softmax(-1)
    assert (p - q).abs().max() < 5e-3  # stated tolerance: probabilities within 0.005 of fp32's (measured 6e-4)


def test_no_ema_and_last(run: Path, tmp_path: Path) -> None:
    out = _export(run, tmp_path / "raw", "--no-ema", "--checkpoint", "last")
    raw = load_run(run, use_ema=False).model.state_dict()
    for k, v in load_run(out).model.state_dict().items():
        assert torch.equal(v, raw[k]), k


def test_refusals_are_one_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert export_cli.main([str(run), "--out", str(run)]) == 2  # never into the run folder
    assert export_cli.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("avformer export: error: ") for line in err)
    assert list(EXPORTERS) == ["safetensors"]  # the speed issue adds onnx / torchscript here


def test_a_damaged_export_is_an_error_not_a_traceback(
    run: Path, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _export(run, tmp_path / "exp")
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_run(out)
    capsys.readouterr()
    assert predict_cli.main([str(out), str(wav)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

    _export(run, out)  # replaced in place; then weights of another model
    other = _export(make_run(tmp_path / "audio_run", "audio"), tmp_path / "audio_exp")
    (out / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not fit model 'mmt_tiny'"):
        load_run(out)
