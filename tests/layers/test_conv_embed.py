"""Convolutional patch embeddings: the single strided convolution and the early-convolution stem."""

from __future__ import annotations

import pytest
import torch

from avformer.layers.conv_embed import ConvPatchEmbed, ConvStemEmbed, Places, conv_places, stem_strides


def test_stem_strides_split_each_axis_into_halvings_earliest_first() -> None:
    assert stem_strides((2, 4, 4)) == [(2, 2, 2), (1, 2, 2)]
    assert stem_strides((8, 4)) == [(2, 2), (2, 2), (2, 1)]
    assert stem_strides((1, 2)) == [(1, 2)]
    for bad in ((3, 4), (1, 1), (0, 2)):
        with pytest.raises(ValueError, match="stride"):
            stem_strides(bad)


@pytest.mark.parametrize(
    ("stride", "size"), [((2, 4, 4), (8, 32, 32)), ((2, 4, 4), (7, 30, 33)), ((8, 4), (64, 100)), ((4,), (17,))]
)
def test_stem_grid_matches_the_mvit_patch_convolution(stride: tuple[int, ...], size: tuple[int, ...]) -> None:
    """Same grid as the "kernel 2s - 1, padding s - 1" patch convolution it replaces: ceil(n / s) per axis."""
    stem = ConvStemEmbed(3, 16, stride)
    patch = ConvPatchEmbed(3, 16, [2 * s - 1 for s in stride], stride, [s - 1 for s in stride])
    expected = tuple(-(-n // s) for n, s in zip(size, stride, strict=True))
    assert stem.grid_size(size) == patch.grid_size(size) == expected
    tokens, grid = stem(torch.randn(2, 3, *size))
    assert grid == expected and tokens.shape == (2, torch.Size(expected).numel(), 16)


def test_stem_widths_double_up_to_embed_dim() -> None:
    stem = ConvStemEmbed(1, 32, (8, 4))
    convs = [m for m in stem.proj if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 32]
    assert convs[-1].kernel_size == (1, 1)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in stem.proj) == 3


def test_stem_tokens_are_row_major_and_translation_equivariant() -> None:
    """A stem is convolutional: shifting the input by one stride shifts the token grid by one cell."""
    torch.manual_seed(0)
    stem = ConvStemEmbed(1, 8, (4, 4)).eval()
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:12, 8:12] = 1.0
    shifted = torch.roll(x, shifts=(4, 8), dims=(2, 3))
    t0, g = stem(x)
    t1, _ = stem(shifted)
    a, b = t0[0].reshape(*g, 8), t1[0].reshape(*g, 8)
    torch.testing.assert_close(a[1:5, 1:5], b[2:6, 3:7])


def test_refined_stem_adds_a_stride_1_layer_after_each_strided_one_but_the_first() -> None:
    stem = ConvStemEmbed(3, 96, (8, 8), width=64, refine=True)
    convs = [m for m in stem.proj if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.stride) for c in convs] == [
        (16, (2, 2)), (32, (2, 2)), (32, (1, 1)), (64, (2, 2)), (64, (1, 1)), (96, (1, 1))
    ]  # fmt: skip
    assert stem.width == 64 and stem.grid_size((64, 100)) == (8, 13)


def test_stem_features_then_project_is_the_forward() -> None:
    torch.manual_seed(0)
    stem = ConvStemEmbed(1, 24, (4, 4), width=16, refine=True).eval()
    x = torch.randn(2, 1, 16, 20)
    tokens, grid = stem(x)
    feats = stem.features(x)
    assert feats.shape == (2, 16, *grid)
    torch.testing.assert_close(stem.project(feats).flatten(2).transpose(1, 2), tokens)


def _receptive_field_centre(module: torch.nn.Module, size: tuple[int, int], place: tuple[int, int]) -> list[float]:
    """The middle of the input pixels that output ``place`` depends on (its gradient's support), in continuous
    coordinates (pixel k covers [k, k + 1))."""
    x = torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = module(x)
    out = out if isinstance(out, torch.Tensor) else out[0].transpose(1, 2).reshape(1, -1, *out[1])
    out[0, :, place[0], place[1]].sum().backward()
    assert x.grad is not None
    support = x.grad[0, 0].abs() > 0
    centres = []
    for axis in (0, 1):
        idx = support.any(dim=1 - axis).nonzero()[:, 0]
        centres.append((float(idx.min()) + float(idx.max()) + 1) / 2)
    return centres


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        # padded 3x3 convolutions at stride 2, 2 (+ a stride-1 refine and the 1x1): place i centred on pixel 4i
        (ConvStemEmbed(1, 8, (4, 4), width=8, refine=True).eval(), ((4.0, 4.0), (0.5, 0.5))),
        (ConvStemEmbed(1, 8, (2, 4), width=8).eval(), ((2.0, 4.0), (0.5, 0.5))),
        # an AST patch: 16 wide at stride 10, unpadded -> centred 8 pixels in
        (ConvPatchEmbed(1, 8, (16, 16), (10, 10), (0, 0)), ((10.0, 10.0), (8.0, 8.0))),
        # MViT's patch convolution (kernel 7, stride 4, padding 3): centred on pixel 4i
        (ConvPatchEmbed(1, 8, (7, 7), (4, 4), (3, 3)), ((4.0, 4.0), (0.5, 0.5))),
    ],
)
def test_conv_places_are_the_receptive_field_centres(
    module: torch.nn.Module, expected: tuple[tuple[float, ...], tuple[float, ...]]
) -> None:
    places = conv_places(module)
    assert places == Places(*expected)
    # checked against the pixels each place actually reads, at an inner place (the borders' support is cut)
    for place in ((2, 3), (3, 2)):
        want = [places.first[a] + places.stride[a] * place[a] for a in (0, 1)]
        assert _receptive_field_centre(module, (64, 64), place) == want


def test_even_places_are_the_middle_of_each_share() -> None:
    assert Places.even((16, 8), (64, 64)) == Places((4.0, 8.0), (2.0, 4.0))
