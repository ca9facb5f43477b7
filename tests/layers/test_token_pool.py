"""Sparse token pooling (SFT): token counts and what each operator keeps."""

from __future__ import annotations

import pytest
import torch

from avformer.layers.token_pool import POOL_OPS, TokenPool, pooled_length


@pytest.mark.parametrize("op", POOL_OPS)
@pytest.mark.parametrize(("n", "k"), [(40, 4), (64, 8), (10, 3), (5, 1)])
def test_every_op_gives_ceil_n_over_k_tokens(op: str, n: int, k: int) -> None:
    x = torch.randn(2, n, 16)
    assert TokenPool(16, op, k)(x).shape == (2, pooled_length(n, k), 16) == (2, -(-n // k), 16)


def test_max_and_avg_pool_each_window_a_shorter_last_one_over_its_own_tokens() -> None:
    x = torch.randn(2, 10, 8)
    mx, av = TokenPool(8, "max", 4)(x), TokenPool(8, "avg", 4)(x)
    for w, (s, e) in enumerate([(0, 4), (4, 8), (8, 10)]):
        torch.testing.assert_close(mx[:, w], x[:, s:e].amax(1))
        torch.testing.assert_close(av[:, w], x[:, s:e].mean(1))


def test_topk_keeps_per_channel_values_and_topk_norm_keeps_whole_tokens_in_order() -> None:
    x = torch.randn(3, 12, 8)
    torch.testing.assert_close(TokenPool(8, "topk", 4)(x), x.topk(3, dim=1).values)
    out = TokenPool(8, "topk_norm", 4)(x)
    idx = x.norm(dim=-1).topk(3, dim=1).indices.sort(dim=1).values
    for b in range(3):
        torch.testing.assert_close(out[b], x[b, idx[b]])  # the 3 largest-norm tokens, in sequence order


def test_attn_pool_is_a_softmax_weighted_mean_within_each_window_padding_excluded() -> None:
    torch.manual_seed(0)
    pool = TokenPool(8, "attn", 4)
    with torch.no_grad():
        pool.query.normal_()
    x = torch.randn(2, 6, 8)  # windows of 4 and 2 tokens
    out = pool(x)
    for w, (s, e) in enumerate([(0, 4), (4, 6)]):
        wts = ((x[:, s:e] @ pool.query) / 8**0.5).softmax(-1)
        torch.testing.assert_close(out[:, w], (wts[..., None] * x[:, s:e]).sum(1))
    out.sum().backward()
    assert pool.query.grad is not None and pool.query.grad.abs().sum() > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pooling op"):
        TokenPool(8, "median", 2)
    with pytest.raises(ValueError, match="kernel"):
        TokenPool(8, "max", 0)


def test_bf16_pooling_gradients_are_the_same_on_every_call() -> None:
    """Regression: the pooling convolution got a channels-last view, on which oneDNN's bf16 backward gave another
    weight gradient on every call (and NaN losses in the smoke runs). The same step must give the same gradients."""
    from avformer.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("mmt_tiny", num_classes=9, audio_overrides={"input_size": [32, 100]},
                         video_overrides={"input_size": [4, 32, 32]}, proj_dim=32)  # fmt: skip
    audio, video = torch.randn(8, 1, 32, 100), torch.randn(8, 3, 4, 32, 32)

    def pool_grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(audio, video)
        logits = out.logits if hasattr(out, "logits") else out
        logits.float().logsumexp(-1).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if ".pool." in n and p.grad is not None}

    first = pool_grads()
    assert first
    for _ in range(3):
        again = pool_grads()
        assert [n for n in first if not torch.equal(first[n], again[n])] == []


@pytest.mark.parametrize("fast", [True, False])
def test_pooling_convolutions_run_channels_last_in_fp32_under_bf16_autocast(fast: bool) -> None:
    """The multiscale pooling convolutions get a channels-last fp32 input even under bf16 autocast (oneDNN's backward
    is several times faster on that layout, and deterministic in fp32); ``fast_layout = False`` is the layout
    before (contiguous, bf16), kept for the benchmark, so this test would notice a return to it."""
    from avformer.layers.pooling_attention import PoolingAttention
    from avformer.layers.pooling_attention import TokenPool as GridPool

    attn = PoolingAttention(32, 32, 2, q_stride=(1, 2, 2), kv_stride=(1, 2, 2), pool_kernel=(3, 3, 3),
                            rel_pos_grid=(2, 4, 4))  # fmt: skip
    seen: list[tuple[torch.dtype, bool]] = []
    for pool in (attn.pool_q, attn.pool_k, attn.pool_v):
        assert pool is not None
        pool.pool.register_forward_pre_hook(
            lambda _m, args: seen.append((args[0].dtype, args[0].is_contiguous(memory_format=torch.channels_last_3d)))
        )
    x = torch.randn(2, 1 + 32, 32, requires_grad=True)
    old = GridPool.fast_layout
    GridPool.fast_layout = fast
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, grid = attn(x, (2, 4, 4))
        out.float().sum().backward()
    finally:
        GridPool.fast_layout = old
    assert grid == (2, 2, 2) and x.grad is not None
    want = (torch.float32, True) if fast else (torch.bfloat16, False)
    assert seen == [want] * 3
