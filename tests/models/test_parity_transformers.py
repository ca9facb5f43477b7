"""Parity of ``AudioSpectrogramTransformer`` with ``transformers``' ``ASTModel`` / ``ASTForAudioClassification``.

Tiny random configs; every transformers parameter is re-randomised (its init zeroes the position table and the
prefix tokens, which would hide a wrong mapping). Token mapping: transformers' ``last_hidden_state`` is
``[cls, dist, patches (freq-major)]`` == our ``forward_sequence``; ``[:, 2:]`` == ``EncoderOutput.tokens``;
``pooler_output`` == ``pooled``. transformers takes ``(B, T, F)``, we take ``(B, 1, F, T)``.
"""

from __future__ import annotations

import re

import pytest
import torch

from avformer.models.convert import ast_overrides_from_hf
from avformer.models.registry import create_model
from avformer.models.vit import ASTConfig, AudioSpectrogramTransformer, convert_transformers_ast_state_dict

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.parity

ATOL = 1e-4


def _hf_config(freq_stride: int, time_stride: int, qkv_bias: bool = True, num_labels: int = 2):
    return transformers.ASTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        num_mel_bins=32,
        max_length=48,
        patch_size=16,
        frequency_stride=freq_stride,
        time_stride=time_stride,
        qkv_bias=qkv_bias,
        num_labels=num_labels,
    )


def _ours(hf_cfg, num_classes: int) -> AudioSpectrogramTransformer:
    """Our AST with ``hf_cfg``'s geometry: the config mapping of ``avformer convert --from hf-ast``."""
    overrides = ast_overrides_from_hf(hf_cfg.to_dict())
    model = create_model("ast_base", num_classes=num_classes, fused=True, **overrides)
    assert isinstance(model, AudioSpectrogramTransformer)
    return model.eval()


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if "layernorm" in name and name.endswith("weight") else 0.0
            p.copy_(base + 0.2 * torch.randn_like(p))


@pytest.mark.parametrize(("freq_stride", "time_stride", "qkv_bias"), [(10, 10, True), (16, 16, True), (16, 8, False)])
def test_ast_model_parity(freq_stride: int, time_stride: int, qkv_bias: bool) -> None:
    hf_cfg = _hf_config(freq_stride, time_stride, qkv_bias)
    hf = transformers.ASTModel(hf_cfg).eval()
    _randomise(hf)
    ours = _ours(hf_cfg, num_classes=0)
    ours.load_state_dict(convert_transformers_ast_state_dict(hf.state_dict()), strict=True)

    x = torch.randn(3, 1, 32, 48)  # (B, 1, F, T)
    with torch.no_grad():
        ref = hf(input_values=x[:, 0].transpose(1, 2))  # (B, T, F)
        seq, grid = ours.forward_sequence(x)
        feats = ours.forward_features(x)
        out = ours(x)

    Fp, Tp = (32 - 16) // freq_stride + 1, (48 - 16) // time_stride + 1
    assert grid == feats.grid == (Fp, Tp)
    assert ref.last_hidden_state.shape == seq.shape == (3, 2 + Fp * Tp, 64)
    torch.testing.assert_close(seq, ref.last_hidden_state, atol=ATOL, rtol=0)
    torch.testing.assert_close(feats.tokens, ref.last_hidden_state[:, 2:], atol=ATOL, rtol=0)
    torch.testing.assert_close(feats.pooled, ref.pooler_output, atol=ATOL, rtol=0)
    torch.testing.assert_close(out, ref.pooler_output, atol=ATOL, rtol=0)  # num_classes=0: forward == pooled


def test_ast_classification_parity() -> None:
    hf_cfg = _hf_config(10, 10, num_labels=5)
    hf = transformers.ASTForAudioClassification(hf_cfg).eval()
    _randomise(hf)
    ours = _ours(hf_cfg, num_classes=5)
    ours.load_state_dict(convert_transformers_ast_state_dict(hf.state_dict()), strict=True)

    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        ref = hf(input_values=x[:, 0].transpose(1, 2)).logits
        logits = ours(x)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(logits, ref, atol=ATOL, rtol=0)
    # eager attention gives the same logits after conversion
    for m in ours.modules():
        if hasattr(m, "fused"):
            m.fused = False
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref, atol=ATOL, rtol=0)


def _to_v4_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5 names -> 4.x names (the layout of the MIT/ast-* hub checkpoints)."""
    subs = [
        (r"\.layers\.(\d+)\.attention\.q_proj\.", r".encoder.layer.\1.attention.attention.query."),
        (r"\.layers\.(\d+)\.attention\.k_proj\.", r".encoder.layer.\1.attention.attention.key."),
        (r"\.layers\.(\d+)\.attention\.v_proj\.", r".encoder.layer.\1.attention.attention.value."),
        (r"\.layers\.(\d+)\.attention\.o_proj\.", r".encoder.layer.\1.attention.output.dense."),
        (r"\.layers\.(\d+)\.mlp\.fc1\.", r".encoder.layer.\1.intermediate.dense."),
        (r"\.layers\.(\d+)\.mlp\.fc2\.", r".encoder.layer.\1.output.dense."),
        (r"\.layers\.(\d+)\.layernorm_", r".encoder.layer.\1.layernorm_"),
    ]
    out = {}
    for k, v in sd.items():
        for pat, rep in subs:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


def test_convert_accepts_transformers_v4_names() -> None:
    hf = transformers.ASTForAudioClassification(_hf_config(10, 10, num_labels=3))
    _randomise(hf)
    sd = hf.state_dict()
    v4 = _to_v4_names(sd)
    assert any(".encoder.layer.0.attention.attention.query.weight" in k for k in v4)
    new, old = convert_transformers_ast_state_dict(sd), convert_transformers_ast_state_dict(v4)
    assert new.keys() == old.keys()
    for k in new:
        assert torch.equal(new[k], old[k]), k


def test_convert_rejects_unknown_keys() -> None:
    sd = transformers.ASTModel(_hf_config(10, 10)).state_dict()
    sd["audio_spectrogram_transformer.something.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="something"):
        convert_transformers_ast_state_dict(sd)


def test_ast_base_param_count_matches_transformers() -> None:
    """AST-Base with the 527-class AudioSet head: transformers' default ASTConfig, counted on the meta device."""
    with torch.device("meta"):
        hf = transformers.ASTForAudioClassification(transformers.ASTConfig(num_labels=527))
        ours = AudioSpectrogramTransformer(ASTConfig(), num_classes=527)
    n_hf = sum(p.numel() for p in hf.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_hf == 86_594_063
