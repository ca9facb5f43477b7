"""Multiscale transformer over token grids of any dimensionality: MAT (audio) and MViTv2 (video).

Papers:
    Fan et al., "Multiscale Vision Transformers", https://arxiv.org/abs/2104.11227 (pooling attention, stages).
    Li et al., "MViTv2: Improved Multiscale Vision Transformers for Classification and Detection",
    https://arxiv.org/abs/2112.01526 (decomposed relative positions, residual pooling, dim_mul_in_att).
    Zhu (2024), MMT, the multiscale multimodal bottleneck transformer, whose audio encoder is MAT; and Zhu & Omar,
    "Multiscale Audio Spectrogram Transformer for Efficient Audio Classification", https://arxiv.org/abs/2303.10757
    (the same machinery on a (freq, time) spectrogram grid: 1-D time pooling early, 2-D time+frequency later).
Reference implementations read (not copied): torchvision ``models/video/mvit.py``, SlowFast ``models/attention.py``.
Parity: ``mvit_v2_s_16x4(num_classes=400)`` loads a converted torchvision ``mvit_v2_s`` state dict strictly and
matches its logits (``tests/models/test_parity_torchvision.py``, ``convert_torchvision_mvit_state_dict`` below).

One implementation serves both modalities: a grid is a tuple of axis sizes, ``(F, T)`` for a log-mel spectrogram
``(B, 1, F, T)`` and ``(T, H, W)`` for video ``(B, C, T, H, W)``; the patch embedding, the q/k/v pooling convolutions,
the pooled shortcut and the relative-position tables all follow the number of axes.

Architecture (per block, MViTv2 with ``dim_mul_in_att``; data flow of the attention in
``avformer.layers.pooling_attention``)::

    x ──norm1──> PoolingAttention (q pooled by s_q, k/v by s_kv, D_in -> D_out) ──drop_path──┐
    x ──(Linear D_in->D_out on norm1(x) if the width changes)──MaxPool(s_q)─────────────────(+)──> y
    y ──norm2──> Mlp(D_out -> mlp_ratio D_out -> D_out) ──drop_path──(+ y)──> out

The schedule is a stage table (``StageSpec``): the first block of a stage pools the queries by the stage's
``q_stride`` (and the shortcut with it) and switches to the stage's width and heads; the other blocks keep the grid.
With ``adaptive_kv_stride`` the key/value stride starts at ``kv_stride`` and is divided by every query stride, so the
key/value grid stays roughly constant while the query grid shrinks (MViTv2). With ``dim_mul_in_att=False`` the width
grows instead in the MLP of the last block of the previous stage (MViTv1 / MViTv2 without the in-attention option).

The config (``MultiscaleConfig``, ``StageSpec``) lives in ``avformer.models.multiscale_config`` and is re-exported
here.

Differences from torchvision's ``MViT``:
    * ``forward_features`` returns ``EncoderOutput(tokens, pooled, grid)``; no classifier by default
      (``num_classes=0``); the head dropout is ``drop_rate`` (torchvision: 0.5 fixed).
    * Any number of grid axes; optional class token (mean pooling otherwise); no absolute position embedding
      (only relative positions, as MViTv2 with ``rel_pos_embed``).
    * Relative-position tables are sized from the exact convolution output grids of ``cfg.input_size`` (ceil, as the
      convolutions compute), torchvision uses ``size // stride``; identical whenever the sizes divide, as in
      every published configuration. Another input size resamples the tables (``avformer.layers.rel_pos``).
    * Query strides must be 1 or even and pooling kernels odd, so the max-pooled shortcut (kernel ``s + 1``) and the
      convolution-pooled queries always give the same grid, also for sizes the strides do not divide.
    * ``fused`` switches SDPA / eager attention (the relative-position term is an additive bias in both);
      ``grad_checkpointing`` recomputes each block in backward (``torch.utils.checkpoint``, non-reentrant).
    * A staged forward for fusion (``embed``, ``forward_block``, ``finalize``, ``block_dims``): extra prefix tokens
      (``num_prefix_tokens``, e.g. bottleneck tokens of ``avformer.fusion.bottleneck``) are treated like the class
      token: never pooled, no relative position, no pooled residual.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from avformer.layers.conv_embed import ConvPatchEmbed, ConvStemEmbed, conv_out_size
from avformer.layers.drop import DropPath
from avformer.layers.mlp import Mlp
from avformer.layers.pooling_attention import PoolingAttention, TokenPool, skip_pool_kernel
from avformer.models.base import EncoderOutput
from avformer.models.multiscale_config import MultiscaleConfig, StageSpec
from avformer.models.registry import register_model, split_overrides

__all__ = [
    "MultiScaleBlock",
    "MultiscaleConfig",
    "MultiscaleTransformer",
    "StageSpec",
    "convert_torchvision_mvit_state_dict",
]

_RUNTIME_KEYS = ("num_classes", "drop_path_rate", "drop_rate", "fused", "grad_checkpointing")
_MAXPOOL: dict[int, type[nn.Module]] = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_INPUT_KIND = {1: "waveform", 2: "spectrogram", 3: "video"}


@dataclass(frozen=True)
class _BlockSpec:
    dim: int
    dim_out: int
    num_heads: int
    q_stride: tuple[int, ...]
    kv_stride: tuple[int, ...]
    grid: tuple[int, ...]  # input grid of the block at cfg.input_size (sizes the rel-pos tables)


def _plan_blocks(cfg: MultiscaleConfig) -> list[_BlockSpec]:
    """Expand the stage table into one spec per block (widths, heads, strides, grids)."""
    n = len(cfg.input_size)
    ones = (1,) * n
    dims = [cfg.embed_dim * st.dim_mult for st in cfg.stages]
    heads = [cfg.num_heads * st.heads_mult for st in cfg.stages]
    pad = tuple(k // 2 for k in cfg.pool_kernel)
    kv = cfg.kv_stride
    grid = cfg.patch_grid
    specs: list[_BlockSpec] = []
    for s, st in enumerate(cfg.stages):
        for j in range(st.depth):
            q = st.q_stride if j == 0 else ones
            if cfg.adaptive_kv_stride:
                kv = tuple(max(a // b, 1) for a, b in zip(kv, q, strict=True))
            if cfg.dim_mul_in_att:  # widen in the attention of the stage's first block
                dim_in = dims[s - 1] if (j == 0 and s > 0) else dims[s]
                dim_out = dims[s]
            else:  # widen in the MLP of the stage's last block
                dim_in = dims[s]
                dim_out = dims[s + 1] if (j == st.depth - 1 and s + 1 < len(dims)) else dims[s]
            specs.append(_BlockSpec(dim_in, dim_out, heads[s], q, kv, grid))
            grid = conv_out_size(grid, cfg.pool_kernel, q, pad)
    return specs


class MultiScaleBlock(nn.Module):
    """Pooling-attention block with a pooled (and, when the width changes, projected) shortcut.

    Args:
        dim: input width.
        dim_out: output width.
        num_heads: attention heads.
        q_stride, kv_stride, pool_kernel: per-axis pooling (see ``PoolingAttention``).
        mlp_ratio: MLP hidden width over the attention width.
        qkv_bias: bias in the qkv projection.
        has_cls_token: the first token is a class token.
        rel_pos_grid: input grid at the configured input size (sizes the rel-pos tables), None for no rel-pos.
        residual_pooling: MViTv2 residual pooling connection.
        dim_mul_in_att: widen inside attention (True) or in the MLP (False).
        drop_path: stochastic-depth probability of both residual branches.
        norm_eps: LayerNorm epsilon.
        fused: SDPA (True) or eager attention (False).
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        *,
        q_stride: Sequence[int],
        kv_stride: Sequence[int],
        pool_kernel: Sequence[int],
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        has_cls_token: bool = True,
        rel_pos_grid: Sequence[int] | None = None,
        residual_pooling: bool = True,
        dim_mul_in_att: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        fused: bool = True,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.dim_mul_in_att = dim_mul_in_att
        attn_dim = dim_out if dim_mul_in_att else dim
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = PoolingAttention(
            dim,
            attn_dim,
            num_heads,
            q_stride=q_stride,
            kv_stride=kv_stride,
            pool_kernel=pool_kernel,
            qkv_bias=qkv_bias,
            has_cls_token=has_cls_token,
            rel_pos_grid=rel_pos_grid,
            residual_pooling=residual_pooling,
            norm_eps=norm_eps,
            fused=fused,
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(attn_dim, eps=norm_eps)
        self.mlp = Mlp(attn_dim, int(attn_dim * mlp_ratio), dim_out)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None
        self.pool_skip: TokenPool | None = None
        if math.prod(q_stride) > 1:
            kernel = skip_pool_kernel(q_stride)
            maxpool = _MAXPOOL[len(kernel)](kernel, stride=tuple(q_stride), padding=tuple(k // 2 for k in kernel))
            self.pool_skip = TokenPool(maxpool, None, int(has_cls_token))

    def forward(
        self, x: torch.Tensor, grid: Sequence[int], num_prefix_tokens: int | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """x: (B, P + N, dim) -> (B, P + N', dim_out) and the new grid.

        ``P`` is ``int(has_cls_token)`` unless ``num_prefix_tokens`` is given; all prefix tokens skip pooling like
        the class token (fusion passes its bottleneck tokens this way).
        """
        x_norm = self.norm1(x)
        x_attn, new_grid = self.attn(x_norm, grid, num_prefix_tokens)
        if self.proj is not None and self.dim_mul_in_att:
            x = self.proj(x_norm)  # shortcut widened from the normed input: matches torchvision/SlowFast
        if self.pool_skip is not None:
            x, _ = self.pool_skip(x, grid, num_prefix_tokens)
        x = x + self.drop_path(x_attn)
        x_norm = self.norm2(x)
        if self.proj is not None and not self.dim_mul_in_att:
            x = self.proj(x_norm)
        return x + self.drop_path(self.mlp(x_norm)), new_grid


class MultiscaleTransformer(nn.Module):
    """Multiscale transformer encoder (MAT on spectrograms, MViTv2 on video).

    Args:
        cfg: architecture.
        num_classes: classifier outputs; 0 (default) gives no classifier (``forward`` returns ``pooled``).
        drop_path_rate: stochastic depth of the last block, rising linearly from 0 at the first.
        drop_rate: dropout before the classifier.
        fused: SDPA attention (True) or eager math (False); switch later with ``set_fused``.
        grad_checkpointing: recompute each block in backward to save activation memory (runtime flag).
    """

    def __init__(
        self,
        cfg: MultiscaleConfig,
        *,
        num_classes: int = 0,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
        fused: bool = True,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.grad_checkpointing = grad_checkpointing
        self.default_input: tuple[int, ...] = cfg.default_input
        self.num_prefix_tokens = int(cfg.cls_token)
        self.patch_embed: ConvPatchEmbed | ConvStemEmbed = (
            ConvStemEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_stride)
            if cfg.conv_stem
            else ConvPatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_kernel, cfg.patch_stride, cfg.patch_padding)
        )
        self.cls_token: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.cls_token else None
        specs = _plan_blocks(cfg)
        n = len(specs)
        dpr = [drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        self.blocks = nn.ModuleList(
            MultiScaleBlock(
                sp.dim,
                sp.dim_out,
                sp.num_heads,
                q_stride=sp.q_stride,
                kv_stride=sp.kv_stride,
                pool_kernel=cfg.pool_kernel,
                mlp_ratio=cfg.mlp_ratio,
                qkv_bias=cfg.qkv_bias,
                has_cls_token=cfg.cls_token,
                rel_pos_grid=sp.grid if cfg.rel_pos else None,
                residual_pooling=cfg.residual_pooling,
                dim_mul_in_att=cfg.dim_mul_in_att,
                drop_path=dpr[i],
                norm_eps=cfg.norm_eps,
                fused=fused,
            )
            for i, sp in enumerate(specs)
        )
        self.num_features = specs[-1].dim_out
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(drop_rate)
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    @classmethod
    def from_config(cls, cfg: MultiscaleConfig, **overrides: Any) -> MultiscaleTransformer:
        """Build from ``cfg`` with overrides: config fields replace, runtime keys go to the constructor."""
        cfg, runtime = split_overrides(cfg, overrides, _RUNTIME_KEYS)
        return cls(cfg, **runtime)

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) linears, class token and rel-pos tables; unit LayerNorms (torchvision)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, PoolingAttention) and m.rel_pos is not None:
                for table in m.rel_pos:
                    nn.init.trunc_normal_(table, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """The class token and every relative-position table."""
        return {name for name, _ in self.named_parameters() if name == "cls_token" or ".rel_pos." in name}

    @property
    def input_kind(self) -> str:
        """What the input is, from the number of grid axes: (F, T) spectrogram, (T, H, W) video, (S,) waveform."""
        return _INPUT_KIND[len(self.cfg.input_size)]

    @property
    def fused(self) -> bool:
        return all(m.fused for m in self.modules() if isinstance(m, PoolingAttention))

    def set_fused(self, fused: bool) -> None:
        """Switch every attention between SDPA (True) and the eager math (False)."""
        for m in self.modules():
            if isinstance(m, PoolingAttention):
                m.fused = fused

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    # -- staged forward: ``forward_features`` is embed -> forward_block for every block -> finalize; fusion modules
    # (``avformer.fusion.bottleneck``) call the stages themselves to put extra prefix tokens into chosen blocks.
    def block_dims(self) -> list[tuple[int, int]]:
        """``(input width, output width)`` of every block, in order."""
        return [(blk.dim, blk.dim_out) for blk in self.blocks]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Patch embedding and class token: ``(B, C, *size)`` -> ``(B, P + N, D)`` (``P = num_prefix_tokens``), grid."""
        n_axes = len(self.cfg.input_size)
        if x.ndim != 2 + n_axes or x.shape[1] != self.cfg.in_chans:
            raise ValueError(f"expected input (B, {self.cfg.in_chans}, <{n_axes} grid axes>), got {tuple(x.shape)}")
        x, grid = self.patch_embed(x)  # (B, N, D), grid
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)  # (B, 1 + N, D)
        return x, tuple(grid)

    def forward_block(
        self, index: int, x: torch.Tensor, grid: Sequence[int], *, num_prefix_tokens: int | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Run block ``index`` on ``(B, P + N, D)`` (with grad checkpointing when enabled).

        ``num_prefix_tokens`` (default: this model's ``num_prefix_tokens``) counts the leading tokens that are not on
        the grid; extra ones (fusion tokens) sit right after the class token and are never pooled.
        """
        blk = self.blocks[index]
        if self.grad_checkpointing and torch.is_grad_enabled():
            x, grid = checkpoint(blk, x, grid, num_prefix_tokens, use_reentrant=False)
        else:
            x, grid = blk(x, grid, num_prefix_tokens)
        return x, tuple(grid)

    def finalize(self, x: torch.Tensor, grid: Sequence[int]) -> EncoderOutput:
        """Final norm and pooling of ``(B, P + N, D)`` (only this model's own prefix tokens) -> ``EncoderOutput``."""
        x = self.norm(x)
        if self.cls_token is not None:
            tokens, pooled = x[:, 1:], x[:, 0]
        else:
            tokens = x
            pooled = tokens.mean(dim=1)
        return EncoderOutput(tokens=tokens, pooled=pooled, grid=tuple(grid))

    def forward_features(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> EncoderOutput:
        """Encode a spectrogram or a clip.

        Args:
            x: (B, C, *size): ``(B, 1, F, T)`` log-mel (mel bins first) or ``(B, C, T, H, W)`` video, with as many
                axes as ``cfg.input_size``; the sizes may differ from ``cfg.input_size``.
            keep: not supported: pooling attention works on the whole token grid, so a multiscale encoder cannot
                drop tokens (a ``ValueError`` says so; use a ViT encoder for DropToken or masked modelling).

        Returns:
            ``EncoderOutput`` with tokens (B, N, D) after the final norm (no class token), pooled (B, D) (the class
            token, or the mean of the tokens) and the final grid (``prod(grid) == N``).
        """
        if keep is not None:
            raise ValueError(
                f"{type(self).__name__} pools over the whole token grid and cannot drop tokens (keep); "
                "DropToken and masked modelling need a ViT encoder (ast_*, vit_video_*, vit_wave_*)"
            )
        x, grid = self.embed(x)
        for i in range(len(self.blocks)):
            x, grid = self.forward_block(i, x, grid)
        return self.finalize(x, grid)

    def forward_head(self, feats: EncoderOutput) -> torch.Tensor:
        """(B, D) pooled feature -> (B, num_classes) logits (or the pooled feature when ``num_classes == 0``)."""
        return self.head(self.head_drop(feats.pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- variants ----------------------------------------------------------------------------------------------------
#
# MAT: the multiscale audio transformer of MMT. The papers give the principle (1-D time pooling in the early stages,
# 2-D time+frequency pooling later, width doubling as tokens shrink) but not the exact table, so the tables below are
# ours. Input: (B, 1, 128 mel bins, T frames) log-mel at 100 frames/s (AST/Kaldi convention); grid axes (F, T).
#
# Patch embedding: Conv2d kernel (15, 7), stride (8, 4), padding (7, 3) (MViT's overlapping "kernel 2s - 1" stem):
# a token covers 8 mel bins × 40 ms, i.e. 16 frequency rows (AST has 12) at 4× AST's time resolution. Stage 2 pools
# time only, because 40 ms is finer than most acoustic events while 16 rows is already a coarse frequency axis;
# stages 3 and 4 pool both axes. kv_stride (4, 8), divided by each query stride (adaptive), keeps the key/value grid
# at 4 × T/32 in every block (4 × 32 = 128 keys at 10 s). Grids (tokens) at 128 × 1024 (10 s) and 128 × 100 (1 s):
#
#   stage  blocks tiny/small/base  q_stride (F, T)  width tiny / small,base  heads  @ 128×1024     @ 128×100
#   embed            -                   -              32 / 96              -     16×256 (4096)  16×25 (400)
#   1            1 / 1 / 2            (1, 1)            32 / 96              1     16×256 (4096)  16×25 (400)
#   2            2 / 2 / 3            (1, 2)            64 / 192             2     16×128 (2048)  16×13 (208)
#   3            4 / 11 / 16          (2, 2)           128 / 384             4      8×64  (512)    8×7  (56)
#   4            1 / 2 / 3            (2, 2)           256 / 768             8      4×32  (128)    4×4  (16)
#
# mat_small / mat_base take MViTv2-S / -B depths and widths (34.3M / 51.0M parameters), so capacity stays comparable
# to AST-Base (86M; MAST reports a similar 42 % reduction) while most blocks run on 128-512 tokens instead of AST's
# 1214. `avformer profile mat_base --compare ast_base --input 1x128x1024` (batch 1, CPU; FLOPs on the eager path,
# memory = params + grads + AdamW + saved activations): forward FLOPs 47.6 G vs 261 G (0.18×), peak training memory
# 1.28 GiB vs 1.96 GiB (0.65×); at 1x128x100: 0.26× and 0.60×. Without the AdamW state the memory ratio is 0.68× when
# AST keeps no attention maps (fused attention) and 0.42× when it does (eager). mat_tiny (8 blocks, widths 32-256,
# 1.7M parameters, 2.4 GFLOPs at 10 s; ~1.5 s per AdamW step at batch 8 × 10 s on one CPU core) trains on a CPU in
# minutes; widths 48-64 with four doubling stages would exceed 3M parameters.

_MAT_COMMON: dict[str, Any] = {
    "input_size": (128, 1024),
    "in_chans": 1,
    "patch_kernel": (15, 7),
    "patch_stride": (8, 4),
    "patch_padding": (7, 3),
    "pool_kernel": (3, 3),
    "kv_stride": (4, 8),
}


def _mat(embed_dim: int, depths: tuple[int, int, int, int], overrides: dict[str, Any]) -> MultiscaleTransformer:
    """A MAT of ``embed_dim`` with ``depths`` blocks in its four stages (heads and width double at each)."""
    strides = ((1, 1), (1, 2), (2, 2), (2, 2))  # (F, T): none, time only, time + frequency, time + frequency
    stages = tuple(StageSpec(d, s, 2**i, 2**i) for i, (d, s) in enumerate(zip(depths, strides, strict=True)))
    cfg = MultiscaleConfig(**_MAT_COMMON, embed_dim=embed_dim, num_heads=1, stages=stages)
    return MultiscaleTransformer.from_config(cfg, **overrides)


@register_model("mat_tiny")
def mat_tiny(**overrides: Any) -> MultiscaleTransformer:
    """MAT-Tiny: 8 blocks, widths 32-256, ~1.7M parameters; a CPU smoke-training model."""
    return _mat(32, (1, 2, 4, 1), overrides)


@register_model("mat_small")
def mat_small(**overrides: Any) -> MultiscaleTransformer:
    """MAT-Small: MViTv2-S schedule (16 blocks, widths 96-768) on a 2-D (F, T) grid."""
    return _mat(96, (1, 2, 11, 2), overrides)


@register_model("mat_base")
def mat_base(**overrides: Any) -> MultiscaleTransformer:
    """MAT-Base: MViTv2-B schedule (24 blocks, widths 96-768) on a 2-D (F, T) grid."""
    return _mat(96, (2, 3, 16, 3), overrides)


@register_model("mvit_v2_s_16x4")
def mvit_v2_s_16x4(**overrides: Any) -> MultiscaleTransformer:
    """MViTv2-S, Kinetics 16 frames × 224² (torchvision ``mvit_v2_s``).

    34,537,744 parameters with 400 classes; 64.2 GMACs per clip (FlopCounterMode: 128.4 GFLOPs at 2 per multiply-add),
    as the paper's 64 GFLOPs and torchvision's ``_ops``.
    """
    return MultiscaleTransformer.from_config(MultiscaleConfig(), **overrides)


@register_model("mvit_v2_b_32x3")
def mvit_v2_b_32x3(**overrides: Any) -> MultiscaleTransformer:
    """MViTv2-B, Kinetics 32 frames × 224² (paper: 24 blocks, depths 2-3-16-3, widths 96-768, 51.2M parameters).

    51,230,128 parameters with 400 classes; 224.5 GMACs per clip (the paper reports 225 GFLOPs, multiply-adds).
    """
    stages = (
        StageSpec(2, (1, 1, 1), 1, 1),
        StageSpec(3, (1, 2, 2), 2, 2),
        StageSpec(16, (1, 2, 2), 4, 4),
        StageSpec(3, (1, 2, 2), 8, 8),
    )
    return MultiscaleTransformer.from_config(MultiscaleConfig(input_size=(32, 224, 224), stages=stages), **overrides)


# ---- weight conversion -------------------------------------------------------------------------------------------

_TV_RENAMES = (  # (torchvision substring, ours), applied in order
    ("conv_proj.", "patch_embed.proj."),
    (".attn.project.0.", ".attn.proj."),
    (".norm_act.0.", ".norm."),
    (".attn.rel_pos_t", ".attn.rel_pos.0"),
    (".attn.rel_pos_h", ".attn.rel_pos.1"),
    (".attn.rel_pos_w", ".attn.rel_pos.2"),
    (".mlp.0.", ".mlp.fc1."),
    (".mlp.3.", ".mlp.fc2."),
    (".project.", ".proj."),
    ("head.1.", "head."),
)


def convert_torchvision_mvit_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``MViT`` (v2, relative positions) state dict to ``MultiscaleTransformer`` keys.

    Load the result into ``mvit_v2_s_16x4(num_classes=400)`` with ``strict=True``. MViTv1 checkpoints (absolute
    position embeddings) are rejected: this model has no absolute position embedding.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("pos_encoding."):
            if key != "pos_encoding.class_token":
                raise ValueError(f"{key}: absolute position embeddings (MViTv1) are not supported")
            out["cls_token"] = value.reshape(1, 1, -1)
            continue
        new = key
        for old, rep in _TV_RENAMES:
            new = new.replace(old, rep)
        out[new] = value
    return out
