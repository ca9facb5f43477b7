"""Bottleneck fusion (MBT / MMT's AVBottleneck): a few learned tokens carry all audio-video traffic.

Papers:
    Nagrani et al., "Attention Bottlenecks for Multimodal Fusion" (MBT), NeurIPS 2021, https://arxiv.org/abs/2107.00135
    Zhu (2024), "Efficient Multiscale Multimodal Bottleneck Transformer for Audio-Video Classification" (MMT),
    https://arxiv.org/abs/2401.04023: the same bottleneck (AVBottleneck) between two *multiscale* encoders, MAT
    (audio) and MViTv2 (video).
No reference code is run here; the papers' equations are implemented directly (see ``BottleneckFusion.encode``).

The first blocks of each encoder run alone. Over the last ``fusion_layers`` blocks of each encoder (paired from
the end: audio block ``S_a + l`` with video block ``S_v + l``, ``S_m = depth_m - fusion_layers``), ``n_b`` bottleneck
tokens ``z`` (B, n_b, D_b) join each modality's sequence as extra prefix tokens; a modality's tokens attend over
``[own tokens ; z]`` only, so anything audio tells video (and back) must pass through ``z``::

      audio (B, 1, F, T)                                              video (B, 3, T, H, W)
            |                                                                  |
      embed + blocks 0 .. S_a - 1 (audio only)             embed + blocks 0 .. S_v - 1 (video only)
            |                       z_0: learned (1, n_b, D_b)                 |
            v                                |                                 v
     +--------------------------+    in_a    |    in_v    +--------------------------+
     | audio block S_a + l      | <----------+----------> | video block S_v + l      |
     | [cls ; z ; audio tokens] |                         | [cls ; z ; video tokens] |
     +--------------------------+                         +--------------------------+
            |        | z_a                           z_v |        |
            |        +--- out_a --> z_{l+1} <-- out_v ---+        |     parallel:   z_{l+1} = (z_a + z_v) / 2
            v                          |                          v     sequential: z' = z_v first, then the audio
         (next audio block) <----------+-----------> (next video block)             block reads z'; z_{l+1} = z_a
            |                                                                  |
        finalize (norm, pool) -> EncoderOutput              finalize -> EncoderOutput
            '--------------- pooled features -> LateFusion head -------------'

Update modes:
    * ``parallel`` (MBT eq. 8-9): both blocks read the same ``z_l``; ``z_{l+1}`` is the mean of the two updated
      copies.
    * ``sequential``: the video block updates the bottleneck first (``z'``); the audio block of the same layer reads
      ``z'``; its updated copy becomes ``z_{l+1}``.
    The bottleneck that comes out of the last fused layer is dropped (each encoder finishes with its own class token
    or mean pool, as MBT's CLS tokens). Hence in ``parallel`` mode with ``fusion_layers=1`` nothing crosses between
    the modalities: exchange needs two fused layers (the first writes ``z``, the second reads it), as in MBT.

What differs from MBT / MMT (our choices, the papers do not cover them):
    * Widths. MBT fuses two ViT-Base towers of the same width. MAT and MViTv2 widen stage by stage and need not
      agree, so ``z`` lives in one fixed bottleneck width ``D_b`` (default: the widest fused block, input or output,
      of either encoder) and each modality reads it through ``in_m`` (Linear ``D_b -> D_in`` of its block) and writes
      it through ``out_m`` (Linear ``D_out -> D_b``). Where the widths already agree the map is the identity, so
      with equal constant widths this is exactly MBT. A fixed ``D_b`` keeps the missing-modality rule below a plain
      per-sample selection in every mode. ``out`` maps whose result would never be read (the last fused layer) are
      not built, so every parameter takes part in the loss (DDP without ``find_unused_parameters``).
    * Pooling. In multiscale blocks the bottleneck tokens are prefix tokens, handled like the class token: never
      pooled by the q/k/v pooling or the pooled shortcut, no relative position, no pooled residual
      (``num_prefix_tokens`` of ``MultiScaleBlock.forward``). Sequence layout: ``[cls ; z ; grid tokens]``.
    * Missing audio (5-20 % of scraped videos; ``has_audio`` (B,) bool). A sample without audio takes the video-only
      update of ``z`` (``parallel``: ``z_{l+1} = out_v(z_v)``; ``sequential``: ``z_{l+1} = z'``), so no function of
      its audio input reaches its video tokens, and ``LateFusion`` leaves its audio logits out of the fused
      prediction: the fused output of that sample is invariant to its audio input (tested). Missing video is
      symmetric. Selection is by ``torch.where``, so even NaN in an absent input cannot leak. The audio encoder still
      runs on such samples; its own outputs (audio logits, embeddings) are meaningless there and must be masked by
      the consumer (losses take ``has_audio``).
    * ``fusion_layers`` counts fused blocks from the end of each encoder (the encoders may differ in depth); for two
      encoders of equal depth ``L`` it is MBT's ``L - L_f``. The block indices where fusion starts are
      ``audio_fusion_start`` / ``video_fusion_start``.
    * The prediction head is ``AVModel``'s :class:`~avformer.fusion.head.FusionHead` (default ``mode="logits"``:
      per-modality linear heads, logits averaged over the present modalities); MBT shares one linear head across its
      equal-width CLS tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult, Mask, masked_pair_mean, presence_mask
from avformer.fusion.registry import register_fusion

__all__ = ["STAGED_ENCODER_API", "BottleneckFusion", "BottleneckFusionConfig", "check_staged_encoder"]

_UPDATE_MODES = ("parallel", "sequential")

STAGED_ENCODER_API = ("num_prefix_tokens", "blocks", "block_dims", "embed", "forward_block", "finalize")
"""The members of :class:`avformer.models.base.StagedEncoder` an encoder needs for bottleneck fusion
(``MultiscaleTransformer`` and the ViT encoders have them)."""


def check_staged_encoder(encoder: nn.Module, role: str) -> None:
    """Raise ``TypeError`` naming what ``encoder`` lacks of ``STAGED_ENCODER_API``."""
    missing = [name for name in STAGED_ENCODER_API if not hasattr(encoder, name)]
    if missing:
        raise TypeError(
            f"{role} encoder {type(encoder).__name__} cannot be used for bottleneck fusion: it lacks {missing} "
            f"(see avformer.models.base.StagedEncoder)"
        )


@dataclass(frozen=True)
class BottleneckFusionConfig:
    """Bottleneck fusion settings.

    Attributes:
        num_bottleneck_tokens: ``n_b``, the learned tokens shared by the modalities (MBT: 4).
        fusion_layers: how many final blocks of each encoder are fused (0: the encoders run independently, i.e.
            late fusion).
        mode: ``"parallel"`` (MBT: mean of the per-modality updates) or ``"sequential"`` (video updates first, audio
            reads the updated bottleneck).
        bottleneck_dim: ``D_b``; None = the widest fused block width (input or output) of either encoder.
    """

    num_bottleneck_tokens: int = 4
    fusion_layers: int = 4
    mode: str = "parallel"
    bottleneck_dim: int | None = None

    def __post_init__(self) -> None:
        if self.num_bottleneck_tokens < 1:
            raise ValueError(f"num_bottleneck_tokens must be >= 1, got {self.num_bottleneck_tokens}")
        if self.fusion_layers < 0:
            raise ValueError(f"fusion_layers must be >= 0, got {self.fusion_layers}")
        if self.mode not in _UPDATE_MODES:
            raise ValueError(f"mode must be one of {_UPDATE_MODES}, got {self.mode!r}")
        if self.bottleneck_dim is not None and self.bottleneck_dim < 1:
            raise ValueError(f"bottleneck_dim must be >= 1 or None, got {self.bottleneck_dim}")


def _proj(dim_in: int, dim_out: int) -> nn.Module:
    return nn.Linear(dim_in, dim_out) if dim_in != dim_out else nn.Identity()


class BottleneckFusion(nn.Module):
    """MBT-style bottleneck fusion over the last blocks of two staged encoders.

    The module does not own the encoders (``AVModel`` does); ``forward`` receives them. Build it with
    ``BottleneckFusion.for_encoders(audio_encoder, video_encoder, cfg)``. Its weights are initialised by
    ``init_weights()``, which ``AVModel`` calls once the head is built (the order that fixes the initial weights).

    Args:
        audio_block_dims: ``(D_in, D_out)`` of every audio block (``encoder.block_dims()``).
        video_block_dims: the same for video.
        cfg: fusion settings.
    """

    def __init__(
        self,
        audio_block_dims: Sequence[tuple[int, int]],
        video_block_dims: Sequence[tuple[int, int]],
        cfg: BottleneckFusionConfig | None = None,
    ) -> None:
        super().__init__()
        cfg = cfg or BottleneckFusionConfig()
        self.cfg = cfg
        n = cfg.fusion_layers
        self.audio_depth, self.video_depth = len(audio_block_dims), len(video_block_dims)
        if n > min(self.audio_depth, self.video_depth):
            raise ValueError(
                f"fusion_layers={n} exceeds the depth of an encoder (audio {self.audio_depth}, "
                f"video {self.video_depth} blocks)"
            )
        self.audio_fusion_start = self.audio_depth - n  # first fused block index of each encoder
        self.video_fusion_start = self.video_depth - n
        fa = [tuple(d) for d in audio_block_dims[self.audio_fusion_start :]]
        fv = [tuple(d) for d in video_block_dims[self.video_fusion_start :]]
        widths = [w for d in fa + fv for w in d]
        self.bottleneck_dim = cfg.bottleneck_dim if cfg.bottleneck_dim is not None else max(widths, default=0)
        db = self.bottleneck_dim
        self.bottleneck: nn.Parameter | None = (
            nn.Parameter(torch.zeros(1, cfg.num_bottleneck_tokens, db)) if n > 0 else None
        )
        last = n - 1
        sequential = cfg.mode == "sequential"
        # read maps for every fused layer; write maps only where the written bottleneck is read again: not after the
        # last layer, except video's in sequential mode (the audio block of the same layer reads it)
        self.audio_in = nn.ModuleList(_proj(db, d_in) for d_in, _ in fa)
        self.video_in = nn.ModuleList(_proj(db, d_in) for d_in, _ in fv)
        self.audio_out = nn.ModuleList(
            _proj(d_out, db) if i < last else nn.Identity() for i, (_, d_out) in enumerate(fa)
        )
        self.video_out = nn.ModuleList(
            _proj(d_out, db) if (i < last or sequential) else nn.Identity() for i, (_, d_out) in enumerate(fv)
        )

    @classmethod
    def for_encoders(
        cls, audio_encoder: nn.Module, video_encoder: nn.Module, cfg: BottleneckFusionConfig | None = None
    ) -> BottleneckFusion:
        """Size the fusion for two encoders that follow ``STAGED_ENCODER_API``."""
        check_staged_encoder(audio_encoder, "audio")
        check_staged_encoder(video_encoder, "video")
        return cls(audio_encoder.block_dims(), video_encoder.block_dims(), cfg)

    def init_weights(self) -> None:
        """Truncated normal (std 0.02) bottleneck tokens and read/write maps, zero biases."""
        if self.bottleneck is not None:
            nn.init.trunc_normal_(self.bottleneck, std=0.02)
        for group in (self.audio_in, self.video_in, self.audio_out, self.video_out):
            for m in group.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """The bottleneck tokens (like a class token)."""
        return {"bottleneck"} if self.bottleneck is not None else set()

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"num_bottleneck_tokens={c.num_bottleneck_tokens}, bottleneck_dim={self.bottleneck_dim}, mode={c.mode}, "
            f"audio_fusion_start={self.audio_fusion_start}/{self.audio_depth}, "
            f"video_fusion_start={self.video_fusion_start}/{self.video_depth}"
        )

    @staticmethod
    def _fused_block(
        encoder: Any, index: int, x: Tensor, grid: tuple[int, ...], z: Tensor
    ) -> tuple[Tensor, tuple[int, ...], Tensor]:
        """Block ``index`` of ``encoder`` on ``[own prefix ; z ; grid tokens]``; returns tokens, grid and new z."""
        p, nb = encoder.num_prefix_tokens, z.shape[1]
        seq = torch.cat((x[:, :p], z.to(x.dtype), x[:, p:]), dim=1)  # (B, P + n_b + N, D_in)
        seq, grid = encoder.forward_block(index, seq, grid, num_prefix_tokens=p + nb)  # (B, P + n_b + N', D_out)
        x = torch.cat((seq[:, :p], seq[:, p + nb :]), dim=1)  # (B, P + N', D_out)
        return x, grid, seq[:, p : p + nb]

    def forward(
        self,
        audio_encoder: nn.Module,
        video_encoder: nn.Module,
        audio: Tensor,
        video: Tensor,
        has_audio: Mask = None,
        has_video: Mask = None,
        *,
        alone: bool = False,
    ) -> FusionResult:
        """Run both encoders, fusing their last ``fusion_layers`` blocks through the bottleneck.

        Args:
            audio_encoder, video_encoder: the encoders this module was sized for.
            audio: the audio encoder's input, e.g. (B, 1, F, T).
            video: the video encoder's input, e.g. (B, 3, T, H, W).
            has_audio, has_video: (B,) bool presence masks, None = all present. An absent modality does not update
                its sample's bottleneck.
            alone: also return each modality's features with the other one masked for every sample (what audio-only
                and video-only evaluation see; a sample that lacks the modality gets meaningless features, as always).
                The unfused blocks run once; each encoder's fused blocks run a second time, alone.

        Returns:
            A :class:`FusionResult`: each encoder's output as its ``forward_features`` would return it and, with
            ``alone``, each modality's output without the other.
        """
        enc_a: Any = audio_encoder
        enc_v: Any = video_encoder
        if (len(enc_a.blocks), len(enc_v.blocks)) != (self.audio_depth, self.video_depth):
            raise ValueError(
                f"encoders have {len(enc_a.blocks)} / {len(enc_v.blocks)} blocks; this fusion was sized for "
                f"{self.audio_depth} / {self.video_depth}"
            )
        B = audio.shape[0]
        if video.shape[0] != B:
            raise ValueError(f"audio and video batch sizes differ: {B} vs {video.shape[0]}")
        has_a = presence_mask(has_audio, B, audio.device)
        has_v = presence_mask(has_video, B, audio.device)

        xa, ga = enc_a.embed(audio)  # (B, P_a + N_a, D), grid
        xv, gv = enc_v.embed(video)
        for i in range(self.audio_fusion_start):  # unimodal blocks
            xa, ga = enc_a.forward_block(i, xa, ga)
        for i in range(self.video_fusion_start):
            xv, gv = enc_v.forward_block(i, xv, gv)

        ya, yv = (xa, ga), (xv, gv)  # the unfused blocks' tokens, for the single-modality passes
        xa, ga, xv, gv = self._fuse(enc_a, enc_v, xa, ga, xv, gv, has_a, has_v)
        out_a, out_v = enc_a.finalize(xa, ga), enc_v.finalize(xv, gv)
        if not alone:
            return FusionResult(out_a, out_v)
        alone_a = self._fuse_alone(enc_a, *ya, self.audio_fusion_start, self.audio_in, self.audio_out)
        alone_v = self._fuse_alone(enc_v, *yv, self.video_fusion_start, self.video_in, self.video_out)
        return FusionResult(out_a, out_v, enc_a.finalize(*alone_a), enc_v.finalize(*alone_v))

    def _fuse_alone(
        self, enc: Any, x: Tensor, grid: tuple[int, ...], start: int, read: nn.ModuleList, write: nn.ModuleList
    ) -> tuple[Tensor, tuple[int, ...]]:
        """One modality's fused blocks with the other modality absent from every sample: the bottleneck carries only
        this modality's own writes (what ``_fuse`` computes for it when the other's mask is all False, in either
        mode, without running the other encoder)."""
        if self.bottleneck is None:
            return x, grid
        z = self.bottleneck.expand(x.shape[0], -1, -1)
        n = self.cfg.fusion_layers
        for layer in range(n):
            x, grid, zm = self._fused_block(enc, start + layer, x, grid, read[layer](z))
            if layer < n - 1:
                z = write[layer](zm)
        return x, grid

    def _fuse(
        self,
        enc_a: Any,
        enc_v: Any,
        xa: Tensor,
        ga: tuple[int, ...],
        xv: Tensor,
        gv: tuple[int, ...],
        has_a: Tensor,
        has_v: Tensor,
    ) -> tuple[Tensor, tuple[int, ...], Tensor, tuple[int, ...]]:
        """The fused blocks (the last ``fusion_layers`` of each encoder) on the unfused blocks' tokens."""
        B = xa.shape[0]
        if self.bottleneck is not None:
            n = self.cfg.fusion_layers
            z = self.bottleneck.expand(B, -1, -1)  # (B, n_b, D_b)
            keep_a, keep_v = has_a[:, None, None], has_v[:, None, None]
            for layer in range(n):
                ia, iv = self.audio_fusion_start + layer, self.video_fusion_start + layer
                last = layer == n - 1
                xv, gv, zv = self._fused_block(enc_v, iv, xv, gv, self.video_in[layer](z))
                if self.cfg.mode == "parallel":
                    xa, ga, za = self._fused_block(enc_a, ia, xa, ga, self.audio_in[layer](z))
                    if not last:  # MBT: z_{l+1} = mean of the modality updates (present modalities only)
                        z = masked_pair_mean(self.audio_out[layer](za), self.video_out[layer](zv), has_a, has_v, z)
                else:
                    z = torch.where(keep_v, self.video_out[layer](zv), z)  # video writes first...
                    xa, ga, za = self._fused_block(enc_a, ia, xa, ga, self.audio_in[layer](z))  # ...audio reads it
                    if not last:
                        z = torch.where(keep_a, self.audio_out[layer](za), z)
        return xa, ga, xv, gv


@register_fusion("bottleneck", config=BottleneckFusionConfig)
def build_bottleneck(
    audio_encoder: nn.Module, video_encoder: nn.Module, cfg: BottleneckFusionConfig
) -> BottleneckFusion:
    """MBT / MMT's AVBottleneck: a few shared tokens carry all cross-modal traffic in the last blocks."""
    return BottleneckFusion.for_encoders(audio_encoder, video_encoder, cfg)
