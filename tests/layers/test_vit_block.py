"""``Block`` / ``Attention`` against torch's own pre-norm ``TransformerEncoderLayer`` (weights copied)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avformer.layers.vit_block import Attention, Block


def _torch_reference(block: Block, num_heads: int) -> nn.TransformerEncoderLayer:
    D = block.norm1.normalized_shape[0]
    ref = nn.TransformerEncoderLayer(
        D,
        num_heads,
        dim_feedforward=block.mlp.fc1.out_features,
        dropout=0.0,
        activation="gelu",
        layer_norm_eps=block.norm1.eps,
        batch_first=True,
        norm_first=True,
    )
    with torch.no_grad():
        # nn.MultiheadAttention's in_proj is [q; k; v] stacked on dim 0, the same layout as our fused qkv
        ref.self_attn.in_proj_weight.copy_(block.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(block.attn.qkv.bias)
        ref.self_attn.out_proj.load_state_dict(block.attn.proj.state_dict())
        ref.linear1.load_state_dict(block.mlp.fc1.state_dict())
        ref.linear2.load_state_dict(block.mlp.fc2.state_dict())
        ref.norm1.load_state_dict(block.norm1.state_dict())
        ref.norm2.load_state_dict(block.norm2.state_dict())
    return ref


@pytest.mark.parametrize("fused", [True, False])
def test_block_matches_torch_encoder_layer_forward_and_backward(fused: bool) -> None:
    block = Block(32, 4, mlp_ratio=2.0, fused=fused, norm_eps=1e-5).train()
    with torch.no_grad():  # non-trivial norms
        for n in (block.norm1, block.norm2):
            n.weight.normal_(1.0, 0.2)
            n.bias.normal_(0.0, 0.2)
    ref = _torch_reference(block, 4).train()
    x = torch.randn(3, 7, 32, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = block(x), ref(x_ref)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block.attn.qkv.weight.grad, ref.self_attn.in_proj_weight.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block.mlp.fc1.weight.grad, ref.linear1.weight.grad, atol=1e-5, rtol=1e-5)


def test_attention_eager_gradcheck_float64() -> None:
    attn = Attention(8, 2, fused=False).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(attn, (x,))


def test_attention_fused_equals_eager_and_qkv_bias() -> None:
    a = Attention(16, 4, qkv_bias=False)
    assert a.qkv.bias is None and a.proj.bias is not None
    x = torch.randn(2, 9, 16)
    y_fused = a(x)
    a.fused = False
    torch.testing.assert_close(y_fused, a(x), atol=1e-6, rtol=1e-5)


def test_drop_path_is_identity_in_eval_and_mlp_width() -> None:
    block = Block(16, 2, mlp_ratio=3.0, drop_path=0.5).eval()
    assert block.mlp.fc1.out_features == 48
    x = torch.randn(4, 3, 16)
    torch.testing.assert_close(block(x), block(x))
    block.train()
    torch.manual_seed(1)
    y1 = block(x)
    torch.manual_seed(2)
    assert not torch.allclose(y1, block(x))  # stochastic depth active in training


def test_bad_head_count() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Block(30, 4)


def test_layer_scale_starts_the_block_near_the_identity_and_learns() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    plain, scaled = Block(16, 2), Block(16, 2, layer_scale=1e-4)
    assert plain.gamma1 is None and scaled.gamma1 is not None
    assert (plain(x) - x).abs().max() > 0.1
    assert (scaled(x) - x).abs().max() < 1e-3
    scaled(x).sum().backward()
    assert scaled.gamma1.grad is not None and scaled.gamma2.grad is not None
