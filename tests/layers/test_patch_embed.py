"""Patch / tubelet / waveform embeddings: grid arithmetic and row-major token order."""

from __future__ import annotations

import pytest
import torch

from avformer.layers.conv_embed import conv_out_size
from avformer.layers.patch_embed import PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed


def _pick_first_element(embed: torch.nn.Module) -> None:
    """Weights that copy the first input element of each window into channel 0."""
    with torch.no_grad():
        embed.proj.weight.zero_()
        embed.proj.weight[(0, 0, *([0] * (embed.proj.weight.ndim - 2)))] = 1.0
        embed.proj.bias.zero_()


def test_patch_embed_2d_overlapping_grid_and_order() -> None:
    # AST geometry at small scale: 16 × 32 input, 16×16 patches, stride (10, 10) -> (1, 2); 32 × 48 -> (2, 4)
    embed = PatchEmbed2d(1, 8, 16, stride=(10, 10))
    assert embed.grid_size((16, 32)) == (1, 2)
    x = torch.arange(32 * 48, dtype=torch.float32).reshape(1, 1, 32, 48)
    _pick_first_element(embed)
    tokens, grid = embed(x)
    assert grid == (2, 4) and tokens.shape == (1, 8, 8)
    # token f·T' + t starts at pixel (10 f, 10 t): row-major, last axis fastest
    expected = [x[0, 0, 10 * f, 10 * t].item() for f in range(2) for t in range(4)]
    assert tokens[0, :, 0].tolist() == expected


def test_tubelet_embed_grid_and_order() -> None:
    embed = TubeletEmbed3d(3, 4, (2, 4, 4))
    x = torch.arange(3 * 4 * 8 * 12, dtype=torch.float32).reshape(1, 3, 4, 8, 12)
    _pick_first_element(embed)
    tokens, grid = embed(x)
    assert grid == (2, 2, 3) and tokens.shape == (1, 12, 4)
    expected = [x[0, 0, 2 * t, 4 * h, 4 * w].item() for t in range(2) for h in range(2) for w in range(3)]
    assert tokens[0, :, 0].tolist() == expected


def test_tubelet_embed_as_conv_stem_with_padding() -> None:
    # MViTv2 stem geometry: kernel (3, 7, 7), stride (2, 4, 4), padding (1, 3, 3) on 16 × 224² -> (8, 56, 56)
    embed = TubeletEmbed3d(3, 8, (3, 7, 7), stride=(2, 4, 4), padding=(1, 3, 3))
    assert embed.grid_size((16, 224, 224)) == (8, 56, 56)


def test_waveform_embed_drops_trailing_samples() -> None:
    embed = WaveformPatchEmbed(1, 6, 128)
    x = torch.arange(1000, dtype=torch.float32).reshape(1, 1, 1000)
    _pick_first_element(embed)
    tokens, grid = embed(x)
    assert grid == (7,) and tokens.shape == (1, 7, 6)  # 1000 // 128 = 7
    assert tokens[0, :, 0].tolist() == [128.0 * i for i in range(7)]


def test_errors() -> None:
    with pytest.raises(ValueError, match="shorter"):
        conv_out_size((8,), (16,), (10,), (0,))
    with pytest.raises(ValueError, match="expects"):
        PatchEmbed2d(1, 8, 16)(torch.randn(1, 2, 16, 16))  # 2 channels, 1 expected
    with pytest.raises(ValueError):
        PatchEmbed2d(1, 8, (16, 16, 16))  # type: ignore[arg-type]
