"""Config of the multiscale transformer (``avformer.models.multiscale``): the stage table and the architecture.

``StageSpec`` is one row of the schedule (depth, query stride, width and head multipliers); ``MultiscaleConfig``
holds the architecture fields (grid axes, patch embedding, stages, pooling, relative positions), is validated on
construction and derives the default input shape and the patch grid. Defaults are MViTv2-S (torchvision
``mvit_v2_s``). ``avformer.models.multiscale`` re-exports both names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from avformer.layers.conv_embed import conv_out_size, stem_grid

__all__ = ["MultiscaleConfig", "StageSpec"]


@dataclass(frozen=True)
class StageSpec:
    """One stage of the schedule.

    Attributes:
        depth: blocks in the stage.
        q_stride: query pooling stride per grid axis, applied once, by the first block of the stage (1 = keep).
        dim_mult: stage width = ``embed_dim * dim_mult``.
        heads_mult: stage heads = ``num_heads * heads_mult``.
    """

    depth: int
    q_stride: tuple[int, ...]
    dim_mult: int = 1
    heads_mult: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "q_stride", tuple(int(s) for s in self.q_stride))
        if self.depth < 1 or self.dim_mult < 1 or self.heads_mult < 1:
            raise ValueError(f"depth, dim_mult and heads_mult must be >= 1: {self}")
        if any(s < 1 or (s > 1 and s % 2) for s in self.q_stride):
            raise ValueError(
                f"q_stride {self.q_stride}: every stride must be 1 or even, so the max-pooled shortcut "
                "(kernel s + 1) and the pooled queries give the same grid for any input size"
            )


def _stage(spec: StageSpec | Mapping[str, Any] | Sequence[Any]) -> StageSpec:
    """Accept a StageSpec, a mapping of its fields (YAML) or a ``(depth, q_stride, dim_mult, heads_mult)`` row."""
    if isinstance(spec, StageSpec):
        return spec
    if isinstance(spec, Mapping):
        return StageSpec(**spec)
    return StageSpec(*spec)


# MViTv2-S / -B: widths 96-192-384-768, heads 1-2-4-8, query pooling (1, 2, 2) at stages 2-4 (paper Table 1).
_MVIT_V2_S_STAGES = (
    StageSpec(1, (1, 1, 1), 1, 1),
    StageSpec(2, (1, 2, 2), 2, 2),
    StageSpec(11, (1, 2, 2), 4, 4),
    StageSpec(2, (1, 2, 2), 8, 8),
)


@dataclass(frozen=True)
class MultiscaleConfig:
    """Architecture of a multiscale transformer; runtime knobs are constructor arguments.

    Defaults are MViTv2-S on Kinetics 16×224² (torchvision ``mvit_v2_s``). Per-axis tuples follow the grid axis
    order: ``(F, T)`` for spectrograms, ``(T, H, W)`` for video.

    Attributes:
        input_size: input extent per axis (mel bins × frames, or frames × height × width); sizes the relative
            position tables. Other sizes run too (tables are resampled).
        in_chans: input channels (1 for log-mel, 3 for RGB).
        patch_kernel, patch_stride, patch_padding: the convolutional patch embedding.
        conv_stem: replace the single patch convolution by a stem of stride-2 3×3 convolutions with BatchNorm and
            ReLU and a 1×1 projection ("early convolutions", Xiao et al. 2021; ``layers.ConvStemEmbed``), with the
            same total ``patch_stride`` (powers of 2; ``patch_kernel`` and ``patch_padding`` are then unused).
            Not part of MViTv2 or MMT, so off by default: an option for small datasets trained from scratch, where
            the plain patch embedding learns slowly (AV-Digits' moving MNIST digits; see docs/numbers/mmt.md). The
            stem's BatchNorm statistics come from each process's batch (no SyncBatchNorm), placeholders of clips
            that lack the stream included.
        embed_dim: width of stage 1 (and of the patch embedding).
        num_heads: heads of stage 1.
        stages: the stage table; widths and heads are ``embed_dim * dim_mult`` and ``num_heads * heads_mult``.
        pool_kernel: kernel of the depthwise q/k/v pooling convolutions (odd, per axis).
        kv_stride: key/value pooling stride of the first block.
        adaptive_kv_stride: divide the kv stride by each query stride (MViTv2); False keeps ``kv_stride`` everywhere.
        rel_pos: decomposed relative position embeddings (one table per axis and block).
        residual_pooling: add the pooled query to the attention output.
        dim_mul_in_att: widen inside the attention of a stage's first block (MViTv2) rather than in the MLP of the
            previous block.
        mlp_ratio: MLP hidden width over block width.
        qkv_bias: bias in the qkv projection.
        cls_token: prepend a class token and pool with it; False pools by the mean of the tokens.
        norm_eps: LayerNorm epsilon.
    """

    input_size: tuple[int, ...] = (16, 224, 224)
    in_chans: int = 3
    patch_kernel: tuple[int, ...] = (3, 7, 7)
    patch_stride: tuple[int, ...] = (2, 4, 4)
    patch_padding: tuple[int, ...] = (1, 3, 3)
    conv_stem: bool = False
    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[StageSpec, ...] = field(default=_MVIT_V2_S_STAGES)
    pool_kernel: tuple[int, ...] = (3, 3, 3)
    kv_stride: tuple[int, ...] = (1, 8, 8)
    adaptive_kv_stride: bool = True
    rel_pos: bool = True
    residual_pooling: bool = True
    dim_mul_in_att: bool = True
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    cls_token: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        # normalise YAML lists to tuples so the frozen config stays hashable and comparable
        for name in ("input_size", "patch_kernel", "patch_stride", "patch_padding", "pool_kernel", "kv_stride"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        object.__setattr__(self, "stages", tuple(_stage(s) for s in self.stages))

        n = len(self.input_size)
        if n not in (1, 2, 3):
            raise ValueError(f"input_size {self.input_size}: 1, 2 or 3 grid axes are supported")
        for name in ("patch_kernel", "patch_stride", "patch_padding", "pool_kernel", "kv_stride"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}={getattr(self, name)} needs {n} entries, like input_size={self.input_size}")
        if not self.stages:
            raise ValueError("stages must not be empty")
        for i, st in enumerate(self.stages):
            if len(st.q_stride) != n:
                raise ValueError(f"stages[{i}].q_stride={st.q_stride} needs {n} entries")
        if min(self.input_size + self.patch_kernel + self.patch_stride + self.pool_kernel + self.kv_stride) < 1:
            raise ValueError("sizes, kernels and strides must be >= 1")
        if min(self.patch_padding) < 0:
            raise ValueError(f"patch_padding={self.patch_padding} must be >= 0")
        if any(k % 2 == 0 for k in self.pool_kernel):
            raise ValueError(f"pool_kernel={self.pool_kernel} must be odd (padding k // 2 keeps the grid centred)")
        if self.in_chans < 1 or self.embed_dim < 1 or self.num_heads < 1:
            raise ValueError("in_chans, embed_dim and num_heads must be >= 1")
        for i, st in enumerate(self.stages):
            dim, heads = self.embed_dim * st.dim_mult, self.num_heads * st.heads_mult
            if dim % heads:
                raise ValueError(f"stage {i}: width {dim} is not divisible by {heads} heads")
        if self.mlp_ratio <= 0 or self.norm_eps <= 0:
            raise ValueError("mlp_ratio and norm_eps must be > 0")
        try:  # (with conv_stem, stem_grid raises unless the strides are powers of 2)
            too_small = min(self.patch_grid) < 1
        except ValueError as e:  # an input axis shorter than the patch
            raise ValueError(f"input_size {self.input_size} is too small for the patch embedding: {e}") from e
        if too_small:
            raise ValueError(f"input_size {self.input_size} is too small for the patch embedding")

    @property
    def depth(self) -> int:
        """Total number of blocks."""
        return sum(st.depth for st in self.stages)

    @property
    def default_input(self) -> tuple[int, ...]:
        """Per-sample input shape at ``input_size``: ``(in_chans, *input_size)``."""
        return (self.in_chans, *self.input_size)

    @property
    def patch_grid(self) -> tuple[int, ...]:
        """Token grid after the patch embedding at ``input_size``."""
        if self.conv_stem:
            return stem_grid(self.input_size, self.patch_stride)
        return conv_out_size(self.input_size, self.patch_kernel, self.patch_stride, self.patch_padding)
