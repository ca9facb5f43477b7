"""``avformer export``: a weights-only folder that every command (through ``load_run``) and ``avformer.load`` read in
place of the run, with the run's numbers; bf16 close to them; a damaged export is one error line."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

import avformer
from avformer.cli import export as export_cli
from avformer.cli import predict as predict_cli
from avformer.models.export_formats import EagerBackend, check_tolerance, example_inputs, load_backend
from avformer.models.loading import EXPORTERS, is_export, load_run
from avformer.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests._paths import shared_path
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
    assert list(EXPORTERS) == ["safetensors", "torchscript", "onnx"]


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


# ---- torchscript / onnx ------------------------------------------------------------------------------------------
_BACKEND = {"torchscript": "torchscript", "onnx": "onnxruntime"}
_GRAPH = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}


@pytest.fixture(scope="module")
def clip() -> Path:
    return shared_path("media", "labeled", "grid__bbaf2n.mpg")  # a real clip with both streams (3 s)


class _Graphs:
    """Each graph format exported once (on first use) with the check on the real clip: ``graphs[fmt]`` is
    ``(folder, printed output)``."""

    def __init__(self, run: Path, clip: Path, factory: pytest.TempPathFactory) -> None:
        self.run, self.clip, self.factory, self.done = run, clip, factory, {}

    def __getitem__(self, fmt: str) -> tuple[Path, str]:
        if fmt == "onnx":
            pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")
        if fmt not in self.done:
            folder = self.factory.mktemp(fmt) / "exp"
            printed, err = io.StringIO(), io.StringIO()
            argv = [str(self.run), "--out", str(folder), "--format", fmt, "--check", str(self.clip)]
            with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(err):
                status = export_cli.main(argv)
            assert status == 0, err.getvalue()
            self.done[fmt] = (folder, printed.getvalue())
        return self.done[fmt]


@pytest.fixture(scope="module")
def graphs(run: Path, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> _Graphs:
    return _Graphs(run, clip, tmp_path_factory)


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.slow)])
def test_an_exported_graph_matches_eager_on_a_real_clip(fmt: str, graphs: _Graphs, clip: Path) -> None:
    folder, printed = graphs[fmt]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["classes.txt", "config.yaml", "model.safetensors",
                                                               _GRAPH[fmt]])  # fmt: skip
    check = next(line for line in printed.splitlines() if "check:" in line)
    diff, tolerance = float(check.split("eager ")[1].split()[0]), float(check.split("tolerance ")[1].rstrip(")"))
    assert f"{clip}, 3 window(s)" in check and diff <= tolerance
    # loaded back: batch sizes and presence masks other than the traced ones give the eager logits
    run = load_run(folder)
    exported, eager = load_backend(_BACKEND[fmt], run.model, folder), EagerBackend(run.model)
    for batch in (1, 4):
        audio, video, has_a, has_v = example_inputs(run.model, batch, seed=batch)
        has_a[0], has_v[-1] = False, False
        ref = eager(audio, video, has_a, has_v)
        torch.testing.assert_close(exported(audio, video, has_a, has_v), ref, atol=check_tolerance(ref), rtol=0)


@pytest.mark.slow  # the ONNX export: ~5 s
def test_predict_with_onnxruntime_gives_eager_top1(
    graphs: _Graphs, clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = graphs["onnx"]
    capsys.readouterr()
    tops = {}
    for backend in ("eager", "onnxruntime"):
        assert predict_cli.main([str(folder), str(clip), "--json", "--topk", "3", "--backend", backend]) == 0
        tops[backend] = json.loads(capsys.readouterr().out)["top"]
    assert [t["label"] for t in tops["onnxruntime"]] == [t["label"] for t in tops["eager"]]
    assert [t["prob"] for t in tops["onnxruntime"]] == pytest.approx([t["prob"] for t in tops["eager"]], abs=1e-4)


def test_unsupported_exports_and_backends_are_one_line(
    run: Path, graphs: _Graphs, wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_classes = make_run(tmp_path / "ssl", "audio", classes=[])  # no head: its outputs are features, not logits
    (no_classes / "classes.txt").unlink(missing_ok=True)
    assert export_cli.main([str(no_classes), "--out", str(tmp_path / "a"), "--format", "onnx"]) == 2
    assert export_cli.main([str(run), "--out", str(tmp_path / "b"), "--format", "torchscript", "--dtype", "bf16"]) == 2
    assert export_cli.main([str(run), "--out", str(tmp_path / "c"), "--check", str(wav)]) == 2  # safetensors
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("avformer export: error: ") for line in err), err
    assert "classes" in err[0] and "fp32" in err[1] and "--check" in err[2]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing anything

    torchscript_only, _ = graphs["torchscript"]
    assert predict_cli.main([str(torchscript_only), str(wav), "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model.onnx" in err[0] and "--format onnx" in err[0]


def test_a_failed_check_removes_the_graph_and_exits_1(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(export_cli, "check_tolerance", lambda logits: -1.0)  # any difference, even 0, is too large
    assert export_cli.main([str(run), "--out", str(tmp_path / "x"), "--format", "torchscript"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("avformer export: error: model.torchscript.pt differs")
    assert not (tmp_path / "x" / "model.torchscript.pt").exists()


def test_a_later_export_removes_another_formats_graph(run: Path, tmp_path: Path) -> None:
    out = _export(run, tmp_path / "exp")
    (out / "model.onnx").write_bytes(b"a graph of older weights")  # e.g. from an earlier --format onnx
    _export(run, out, "--no-ema")  # new weights: the old graph would not match them
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "config.yaml", "model.safetensors"]
