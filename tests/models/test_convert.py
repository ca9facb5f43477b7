"""``avformer convert``: a Hugging Face AST folder and a torchvision MViTv2 state dict become export folders that
``avformer.load`` / ``load_run`` read, with the source's outputs; untrusted or broken sources are one error line.

The AST sources are random tiny ``transformers`` models written by ``save_pretrained`` (the parity test's configs and
re-randomisation, tests/models/test_parity_transformers.py). torchvision is optional: without it the MViTv2 source
is our model's weights under torchvision's names (the inverse of the mapping, checked to round-trip), which tests
the command; the mapping itself is tested against torchvision in tests/models/test_parity_torchvision.py and below
when torchvision is installed.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from pathlib import Path

import pytest
import torch

import avformer
from avformer.cli import convert as convert_cli
from avformer.models.loading import load_run
from avformer.models.multiscale import convert_torchvision_mvit_state_dict
from avformer.models.registry import create_model


def _convert(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit status and stderr of ``avformer convert argv``."""
    capsys.readouterr()
    status = convert_cli.main(list(argv))
    return status, capsys.readouterr().err.strip()


def _one_error_line(err: str, *fragments: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("avformer convert: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ---- Hugging Face AST -----------------------------------------------------------------------------------------------
LABELS = ["dog", "rain", "siren", "speech", "engine"]


@pytest.fixture(scope="module")
def hf_ast(tmp_path_factory: pytest.TempPathFactory):
    """A random tiny ``ASTForAudioClassification`` (5 named labels) saved with ``save_pretrained``."""
    pytest.importorskip("transformers")
    from tests.models.test_parity_transformers import _hf_config, _randomise, transformers

    cfg = _hf_config(10, 10, num_labels=5)
    cfg.id2label, cfg.label2id = dict(enumerate(LABELS)), {n: i for i, n in enumerate(LABELS)}
    torch.manual_seed(0)
    model = transformers.ASTForAudioClassification(cfg).eval()
    _randomise(model)
    folder = tmp_path_factory.mktemp("hf") / "ast"
    model.save_pretrained(folder)
    return model, folder


def _hf_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_hf_ast_converts_to_the_same_logits(hf_ast, weights: str, tmp_path: Path, capsys) -> None:
    hf, folder = hf_ast
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    if weights == "pytorch_model.bin":  # the older save format
        folder = _hf_copy(folder, tmp_path / "bin")
        torch.save(hf.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    status, err = _convert(capsys, str(folder), "--from", "hf-ast", "--to", str(tmp_path / "out"))
    assert status == 0, err

    loaded = avformer.load(tmp_path / "out", device="cpu")
    assert loaded.classes == LABELS
    audio = loaded.config.data.audio
    assert loaded.config.data.modalities == ("audio",)
    assert (audio.num_mel_bins, audio.num_frames, audio.sample_rate) == (32, 48, 16000)
    x = torch.randn(2, 1, 32, 48)  # (B, 1, F, T); transformers takes (B, T, F)
    with torch.no_grad():
        ref = hf(input_values=x[:, 0].transpose(1, 2)).logits
        torch.testing.assert_close(loaded.model(x), ref, atol=1e-4, rtol=0)


def test_hf_ast_model_without_head_and_with_given_classes(hf_ast, tmp_path: Path, capsys) -> None:
    from tests.models.test_parity_transformers import _hf_config, _randomise, transformers

    bare = transformers.ASTModel(_hf_config(16, 16)).eval()
    _randomise(bare)
    bare.save_pretrained(tmp_path / "bare")
    assert _convert(capsys, str(tmp_path / "bare"), "--from", "hf-ast", "--to", str(tmp_path / "o1"))[0] == 0
    run = load_run(tmp_path / "o1", require_classes=False)
    assert run.classes == [] and not (tmp_path / "o1" / "classes.txt").exists()
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(
            run.model(x), bare(input_values=x[:, 0].transpose(1, 2)).pooler_output, atol=1e-4, rtol=0
        )

    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    _, folder = hf_ast
    assert (
        _convert(capsys, str(folder), "--from", "hf-ast", "--to", str(tmp_path / "o2"), "--classes", str(names))[0] == 0
    )
    assert load_run(tmp_path / "o2").classes == list("abcde")
    names.write_text("a\nb\n")
    status, err = _convert(
        capsys, str(folder), "--from", "hf-ast", "--to", str(tmp_path / "o3"), "--classes", str(names)
    )
    assert status == 2
    _one_error_line(err, "--classes has 2 names", "5 outputs")


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: the file ``marker`` appears if any code of the file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_hf_ast_bad_sources_are_one_line(hf_ast, tmp_path: Path, capsys) -> None:
    hf, folder = hf_ast
    out = str(tmp_path / "out")

    empty = tmp_path / "empty"
    empty.mkdir()
    status, err = _convert(capsys, str(empty), "--from", "hf-ast", "--to", out)
    assert status == 2
    _one_error_line(err, "config.json", "no such config file")

    status, err = _convert(capsys, str(folder / "config.json"), "--from", "hf-ast", "--to", out)
    assert status == 2
    _one_error_line(err, "not a folder")

    # a pickle that would run code: refused, the code never runs
    evil = _hf_copy(folder, tmp_path / "evil")
    (evil / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    torch.save({"weight": _Payload(marker)}, evil / "pytorch_model.bin")
    status, err = _convert(capsys, str(evil), "--from", "hf-ast", "--to", out)
    assert status == 2 and not marker.exists()
    _one_error_line(err, "refused", "pytorch_model.bin")

    # weights that are not a regular file (a FIFO would block a naive reader)
    fifo = _hf_copy(evil, tmp_path / "fifo")
    (fifo / "pytorch_model.bin").unlink()
    import os

    os.mkfifo(fifo / "pytorch_model.bin")
    status, err = _convert(capsys, str(fifo), "--from", "hf-ast", "--to", out)
    assert status == 2
    _one_error_line(err, "not a regular file")

    # a config whose geometry does not match the weights: the position table's shape
    shapes = _hf_copy(folder, tmp_path / "shapes")
    cfg = json.loads((shapes / "config.json").read_text())
    (shapes / "config.json").write_text(json.dumps({**cfg, "num_mel_bins": 48}))
    status, err = _convert(capsys, str(shapes), "--from", "hf-ast", "--to", out)
    assert status == 2
    _one_error_line(err, "shape mismatch", "pos_embed")

    # a missing tensor and an unknown one
    state = hf.state_dict()
    for name, sd, fragment in [
        ("missing", {k: v for k, v in state.items() if "layernorm_after" not in k}, "missing"),
        ("unknown", {**state, "audio_spectrogram_transformer.extra.weight": torch.zeros(1)}, "extra.weight"),
    ]:
        src = _hf_copy(evil, tmp_path / name)
        torch.save(sd, src / "pytorch_model.bin")
        status, err = _convert(capsys, str(src), "--from", "hf-ast", "--to", out)
        assert status == 2
        _one_error_line(err, fragment)

    notast = _hf_copy(folder, tmp_path / "notast")
    (notast / "config.json").write_text(json.dumps({**cfg, "model_type": "vit"}))
    status, err = _convert(capsys, str(notast), "--from", "hf-ast", "--to", out)
    assert status == 2
    _one_error_line(err, "audio-spectrogram-transformer")
    assert not Path(out).exists()  # nothing written for a refused source


# ---- torchvision MViTv2 ---------------------------------------------------------------------------------------------
_TO_TORCHVISION = (  # our names -> torchvision's, the inverse of multiscale._TV_RENAMES (checked to round-trip)
    ("patch_embed.proj.", "conv_proj."),
    (".attn.proj.", ".attn.project.0."),
    (".mlp.fc1.", ".mlp.0."),
    (".mlp.fc2.", ".mlp.3."),
    (".attn.rel_pos.0", ".attn.rel_pos_t"),
    (".attn.rel_pos.1", ".attn.rel_pos_h"),
    (".attn.rel_pos.2", ".attn.rel_pos_w"),
    (".proj.", ".project."),
    (".norm.", ".norm_act.0."),
)


def _torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key == "cls_token":
            out["pos_encoding.class_token"] = value.reshape(-1)
            continue
        new = "head.1." + key.removeprefix("head.") if key.startswith("head.") else key
        for ours, theirs in _TO_TORCHVISION:
            new = new.replace(ours, theirs)
        out[new] = value
    return out


@pytest.fixture(scope="module")
def mvit_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """Our mvit_v2_s_16x4 with 7 classes and perturbed weights, saved under torchvision's names."""
    torch.manual_seed(0)
    ours = create_model("mvit_v2_s_16x4", num_classes=7).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    state = ours.state_dict()
    tv = _torchvision_names(state)
    back = convert_torchvision_mvit_state_dict(tv)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)
    path = tmp_path_factory.mktemp("tv") / "mvit_v2_s.pth"
    torch.save(tv, path)
    return ours, path


def test_torchvision_mvit_converts_to_the_same_model(mvit_source, tmp_path: Path, capsys) -> None:
    ours, path = mvit_source
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"k{i}\n" for i in range(7)))
    args = [str(path), "--from", "torchvision-mvit", "--to", str(tmp_path / "out"), "--classes", str(names)]
    status, err = _convert(capsys, *args)
    assert status == 0, err
    run = load_run(tmp_path / "out")
    assert run.classes == [f"k{i}" for i in range(7)] and run.spec.name == "mvit_v2_s_16x4"
    video = run.cfg.data.video
    assert run.cfg.data.modalities == ("video",)
    assert (video.num_frames, video.fps, video.size, video.short_side) == (16, 7.5, 224, 256)
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(run.model(x), ours(x), atol=1e-6, rtol=0)


def test_torchvision_mvit_bad_sources_are_one_line(mvit_source, tmp_path: Path, capsys) -> None:
    _, path = mvit_source
    out = str(tmp_path / "out")
    status, err = _convert(capsys, str(tmp_path), "--from", "torchvision-mvit", "--to", out)  # a folder
    assert status == 2
    _one_error_line(err, "not a regular file")

    marker = tmp_path / "pwned"
    torch.save({"conv_proj.weight": _Payload(marker)}, tmp_path / "evil.pth")
    status, err = _convert(capsys, str(tmp_path / "evil.pth"), "--from", "torchvision-mvit", "--to", out)
    assert status == 2 and not marker.exists()
    _one_error_line(err, "refused")

    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    status, err = _convert(capsys, str(tmp_path / "junk.pth"), "--from", "torchvision-mvit", "--to", out)
    assert status == 2
    _one_error_line(err, "not a readable torch weights file")

    state = torch.load(path, weights_only=True)
    state["blocks.0.mlp.0.weight"] = state["blocks.0.mlp.0.weight"][:-1]  # one row short
    torch.save(state, tmp_path / "short.pth")
    status, err = _convert(capsys, str(tmp_path / "short.pth"), "--from", "torchvision-mvit", "--to", out)
    assert status == 2
    _one_error_line(err, "shape mismatch", "blocks.0.mlp.fc1.weight")


@pytest.mark.parity
def test_torchvision_mvit_logits_match_torchvision(tmp_path: Path, capsys) -> None:
    """torchvision's own mvit_v2_s, perturbed, through the command; the small-input set-up of the parity test."""
    tv_video = pytest.importorskip("torchvision.models.video")
    tv = tv_video.mvit_v2_s()
    with torch.no_grad():
        for p in tv.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    status, err = _convert(capsys, str(tmp_path / "tv.pth"), "--from", "torchvision-mvit", "--to", str(tmp_path / "o"))
    assert status == 0, err
    tv.eval().pos_encoding.temporal_size, tv.pos_encoding.spatial_size = 2, (16, 16)
    model = load_run(tmp_path / "o").model
    x = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), atol=1e-4, rtol=0)
