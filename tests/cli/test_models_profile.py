"""``avformer models`` and ``avformer profile`` in-process, and the measurements of ``avformer.profiling``.

FLOPs are checked against a count worked out by hand for a one-block AST, so a wrong counter, a missed attention
path or a double count fails here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from avformer.cli import models as models_cli
from avformer.cli import profile as profile_cli
from avformer.models.registry import create_model, list_models
from avformer.profiling import attention_path, count_flops, throughput, training_peak_memory

# One-block AST: D = 32, 2 heads (d = 16), MLP 4D = 128, 16 × 32 input at stride 10 -> 2 patches + cls + dist.
TINY_SET = ["embed_dim=32", "depth=1", "num_heads=2", "num_mel_bins=16", "num_frames=32"]
TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_mel_bins": 16, "num_frames": 32}


def _hand_flops(B: int) -> tuple[int, int]:
    D, h, d, N, P, H = 32, 2, 16, 4, 2, 128
    patch = 2 * B * P * D * (16 * 16)  # conv: every patch token is a 256-tap dot product per channel
    qkv = 2 * B * N * D * 3 * D
    attn = 2 * (2 * B * h * N * N * d)  # q k^T and attn v
    proj = 2 * B * N * D * D
    mlp = 2 * (2 * B * N * D * H)
    fwd = patch + qkv + attn + proj + mlp
    # backward: grad wrt input and weight of every matmul (2×); the conv needs no input grad (1×)
    bwd = 2 * (fwd - patch) + patch
    return fwd, fwd + bwd


def test_count_flops_matches_hand_count_on_cpu_and_meta() -> None:
    fwd, total = _hand_flops(B=2)
    assert (fwd, total) == (266_240, 733_184)
    for device in ("cpu", "meta"):
        with torch.device(device):
            model = create_model("ast_tiny", **TINY)
            x = torch.randn(2, 1, 16, 32)
        assert tuple(count_flops(model, x)) == (fwd, total), device
        assert model.blocks[0].attn.fused  # restored after counting
    # without the eager switch the CPU SDPA kernel is invisible to the counter: the reason for the switch
    missing = count_flops(create_model("ast_tiny", **TINY), torch.randn(2, 1, 16, 32), eager_attention=False)
    assert missing.forward == fwd - 2 * (2 * 2 * 2 * 4 * 4 * 16)


def test_attention_path_sets_and_restores_instance_attributes_only() -> None:
    class WithProperty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = create_model("ast_tiny", **TINY)

        @property
        def fused(self) -> bool:  # read-only summary, like some families expose
            return True

    m = WithProperty()
    with attention_path(m, fused=False) as n:
        assert n == 1 and m.inner.blocks[0].attn.fused is False
    assert m.inner.blocks[0].attn.fused is True


def test_training_peak_memory_by_hand() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    est = training_peak_memory(model, torch.randn(3, 4))
    params = (4 * 8 + 8 + 8 * 2 + 2) * 4
    # saved for backward: the input (3×4) and the ReLU output (3×8, shared with the 2nd Linear's input); weights
    # are parameters and not counted twice
    acts = (3 * 4 + 3 * 8) * 4
    assert not est.measured
    assert est.parts == {
        "parameters": params,
        "gradients": params,
        "adamw_state": 2 * params,
        "saved_activations": acts,
    }
    assert est.peak_bytes == 4 * params + acts


def test_throughput_runs() -> None:
    model = create_model("ast_tiny", **TINY)
    t = throughput(model, torch.randn(2, 1, 16, 32), train=True, steps=2, warmup=1)
    assert t.steps == 2 and t.clips_per_s == pytest.approx(2 / t.median_step_s)
    assert all(p.grad is None for p in model.parameters())  # no gradient left behind


def test_profile_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ast_tiny", "--input", "1x16x32", "--batch", "2", "--steps", "1", "--warmup", "0", "--json"]
    for s in TINY_SET:
        argv += ["--set", s]
    assert profile_cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    r = out["result"]
    fwd, total = _hand_flops(B=2)
    assert r["input_shape"] == [2, 1, 16, 32]
    assert r["flops"] == {"forward": fwd, "forward_backward": total, "forward_macs": fwd // 2}
    assert "eager" in r["flops_path"]
    n = r["params"]
    assert n == sum(p.numel() for p in create_model("ast_tiny", **TINY).parameters())
    parts = r["memory"]["parts"]
    assert parts["parameters"] == 4 * n and parts["adamw_state"] == 8 * n and parts["saved_activations"] > 0
    assert r["forward"]["clips_per_s"] > 0 and r["forward_backward"]["clips_per_s"] > 0
    assert out["compare"] is None and out["ratios"] is None


def test_profile_cli_text_and_compare(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ast_tiny", "--input", "1x16x32", "--steps", "0", "--compare", "ast_small"]
    for s in TINY_SET:
        argv += ["--set", s]
    assert profile_cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "ESTIMATE" in text and "eager attention" in text and "ratios ast_tiny / ast_small" in text
    assert "clips/s" not in text and "throughput_forward" not in text  # --steps 0: no timing, no ratio
    assert profile_cli.main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    a, b = out["result"], out["compare"]
    assert b["params"] == 21_859_968  # ast_small, no head
    assert out["ratios"]["flops_forward"] == pytest.approx(a["flops"]["forward"] / b["flops"]["forward"])
    assert out["ratios"]["peak_memory"] == pytest.approx(a["memory"]["peak_bytes"] / b["memory"]["peak_bytes"])


def test_profile_says_what_runs_before_it_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The throughput steps can take minutes: the model, the input and each part are printed before they run."""
    import avformer.profiling as profiling

    seen: list[str] = []
    real = profiling.throughput

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(capsys.readouterr().out)  # what was printed before the first timed step
        return real(*args, **kwargs)

    monkeypatch.setattr(profiling, "throughput", spy)
    monkeypatch.setenv("AVFORMER_PROGRESS_INTERVAL", "0")  # a line per step (stdout is not a terminal)
    argv = ["ast_tiny", "--input", "1x16x32", "--steps", "2", "--warmup", "1"]
    for s in TINY_SET:
        argv += ["--set", s]
    assert profile_cli.main(argv) == 0
    before = seen[0]
    assert before.startswith("profile ast_tiny: input 1x1x16x32 on cpu, float32")
    assert "counting FLOPs" in before and "peak training memory" in before and "throughput: 1 warm-up + 2" in before
    rest = capsys.readouterr().out
    assert "throughput fwd: 1/3 steps" in seen[1] and "throughput f+b: 3/3 steps (100%)" in rest
    assert "\x1b" not in before + rest
    monkeypatch.setattr(profiling, "throughput", real)
    assert profile_cli.main([*argv, "--json"]) == 0  # --json: the progress goes to stderr, stdout is the JSON
    captured = capsys.readouterr()
    assert json.loads(captured.out)["result"]["model"] == "ast_tiny" and "profile ast_tiny" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["not_a_model"], "unknown model"),
        (["ast_tiny", "--input", "1x16"], "expects"),
        (["ast_tiny", "--input", "1xfoo"], "bad shape"),
        (["ast_tiny", "--set", "nope=1"], "unknown override"),
        (["ast_tiny", "--batch", "0"], "--batch"),
    ],
)
def test_profile_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert profile_cli.main([*argv, "--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("avformer profile: ") and '"' not in err


def test_parse_shape() -> None:
    assert profile_cli.parse_shape("3x16x224x224") == (3, 16, 224, 224)
    with pytest.raises(ValueError):
        profile_cli.parse_shape("0x4")


def test_models_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert models_cli.main(["--filter", "ast_"]) == 0
    text = capsys.readouterr().out
    assert "ast_base" in text and "86.19M" in text and "spectrogram" in text and "1x128x1024" in text
    assert models_cli.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models()
    assert all("error" not in r and r["params"] > 0 for r in rows)
    vatt = next(r for r in rows if r["name"] == "vit_video_base_t4p16")
    assert vatt["input_kind"] == "video" and vatt["default_input"] == [3, 32, 224, 224]
