"""Plain (single-scale) ViT encoders: AST on log-mel spectrograms, VATT-style video and raw-waveform transformers.

Papers:
    AST: Gong, Chung, Glass, "AST: Audio Spectrogram Transformer", Interspeech 2021, https://arxiv.org/abs/2104.01778
    VATT: Akbari et al., "VATT: Transformers for Multimodal Self-Supervised Learning from Raw Video, Audio and Text",
        NeurIPS 2021, https://arxiv.org/abs/2104.11178
    ViT / DeiT (the trunk): https://arxiv.org/abs/2010.11929, https://arxiv.org/abs/2012.12877
Parity: ``AudioSpectrogramTransformer`` matches ``transformers``' ``ASTModel`` (``last_hidden_state``,
``pooler_output``) and ``ASTForAudioClassification`` (logits) after ``convert_transformers_ast_state_dict``
(tests/models/test_parity_transformers.py, random tiny configs, asserted max abs error ≤ 1e-4).

The configs (``ASTConfig``, ``VideoViTConfig``, ``WaveformViTConfig``) live in ``avformer.models.vit_config`` and are
re-exported here.

All three share one trunk (pre-norm ``Block`` stack + final LayerNorm) and differ in tokenizer, position embedding,
prefix tokens and pooling::

    x ─ patch_embed ─▶ tokens (B, N, D) + pos(grid) ─▶ [prefix tokens ‖ tokens] ─▶ blocks ─▶ norm ─▶ split
                                                   ▲ VATT DropToken (later) drops tokens here, after position
                                                     embedding and before the blocks

Differences from the references:
    AST (vs transformers / the original AST code):
        * Input is ``(B, 1, F, T)`` (mel bins first, one channel); transformers takes ``(B, T, F)``.
        * ``EncoderOutput.tokens`` excludes the prefix tokens; ``forward_sequence`` returns the whole sequence in
          transformers' order ``[cls, dist, patches]``, the patches in freq-major order (index ``f·T' + t``).
        * ``pooled`` is ``(cls + dist) / 2`` (transformers' ``pooler_output``). The head (LayerNorm + Linear, as
          ``ASTMLPHead``) exists only when ``num_classes > 0``; with ``num_classes=0`` ``forward`` returns ``pooled``.
        * LayerNorm eps defaults to 1e-6 (original AST code / DeiT); transformers' config uses 1e-12.
        * Inputs of another length work: the learned position table is resized to the new patch grid on the fly
          (``pos_embed_resize="interpolate"``: 2-D bilinear over the (F', T') grid, align_corners=False; ``"crop"``:
          keep the first positions along an axis that got shorter, interpolate one that got longer). transformers
          rejects other lengths; the original AST code resizes once, when adapting ImageNet weights.
          Interpolation rescales time (positions mean "fraction of the clip"); crop keeps 10 ms per frame fixed.
        * ``pos_embed="separable"`` is an option of ours: a frequency table plus a time table (summed), no position
          on prefix tokens. The default ``"joint"`` is transformers' layout (one table over prefix + F'·T' patches),
          needed to load AST weights.
    VideoViT / WaveformViT (vs the VATT paper; its TF code is not run here, so there is no parity test):
        * VATT's [AGG] token is ``class_token`` (it gets no position embedding here); ``pool="cls"`` or ``"mean"``.
        * Video position embedding is VATT's separable sum ``pos_t[t] + pos_h[h] + pos_w[w]``; waveform uses one
          learned 1-D table. Both are interpolated (linear per axis) for other input sizes.
        * DropToken and masked modelling pass a token keep-mask to ``forward_features``; the modality-agnostic
          weight sharing of VATT is ``trunk_from=`` (one encoder runs another's blocks and final norm); projection
          heads live outside the encoders (``avformer.models.vatt``).
    Options of ours for small data (``stem``): a conv stem with the tubelet grid (``"conv"``), one token per video
    frame (``"frame_cnn"``) or per frequency band of a spectrogram (AST ``"cnn"``) from a small 2-D CNN
    (:class:`~avformer.layers.conv_embed.CNNTokenEmbed`), with a 1-D position table over frames / bands.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avformer.layers.conv_embed import CNNTokenEmbed, ConvStemEmbed, Places, conv_places
from avformer.layers.drop import as_keep_indices, keep_tokens
from avformer.layers.patch_embed import PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed
from avformer.layers.vit_block import Block
from avformer.models.base import EncoderOutput
from avformer.models.registry import register_model, split_overrides
from avformer.models.vit_config import ASTConfig, VideoViTConfig, WaveformViTConfig

__all__ = [
    "ASTConfig",
    "AudioSpectrogramTransformer",
    "ViTEncoder",
    "VideoViT",
    "VideoViTConfig",
    "WaveformViT",
    "WaveformViTConfig",
    "convert_transformers_ast_state_dict",
]

_RUNTIME_KEYS = ("num_classes", "drop_path_rate", "fused", "grad_checkpointing")


# ---- position-table resizing --------------------------------------------------------------------------------------
def _resize_pos_table(table: torch.Tensor, old: tuple[int, ...], new: tuple[int, ...], mode: str) -> torch.Tensor:
    """Resize a learned table over a token grid.

    Args:
        table: (1, prod(old), D), rows in row-major grid order.
        old, new: grid sizes (1-3 axes).
        mode: "interpolate" (linear/bilinear/trilinear, align_corners=False) or "crop" (first positions of an axis
            that shrank; an axis that grew is still interpolated).

    Returns:
        (1, prod(new), D); ``table`` itself when ``old == new``.
    """
    if old == new:
        return table
    D = table.shape[-1]
    x = table.reshape(1, *old, D).movedim(-1, 1)  # (1, D, *old)
    if mode == "crop":
        x = x[(slice(None), slice(None), *(slice(0, min(o, n)) for o, n in zip(old, new, strict=True)))]
    if tuple(x.shape[2:]) != new:
        interp = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(new)]
        x = F.interpolate(x, size=new, mode=interp, align_corners=False)
    return x.movedim(1, -1).reshape(1, -1, D)  # (1, prod(new), D)


def trunc_normal(t: torch.Tensor, std: float = 0.02) -> None:
    """Truncated normal init at ``std``, cut at two standard deviations (ViT / DeiT / VATT)."""
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


# ---- shared trunk -------------------------------------------------------------------------------------------------
class ViTEncoder(nn.Module):
    """Blocks + final norm + head and the shared encoder API; subclasses supply the tokenizer and positions.

    A subclass implements ``_build_embedding(cfg)`` (sets ``patch_embed``, ``cls_token``, position tables) and
    ``_patch_pos(grid) -> (1, N, D)``; it overrides ``_prefix(B) -> (B, P, D) | None`` when it has more prefix
    tokens than ``cls_token`` or gives them positions, ``_build_head`` when its head is more than a Linear, and
    ``attn_bias(x)`` when some tokens must not be attended to (text padding). Constructor arguments are documented
    on ``AudioSpectrogramTransformer``.
    """

    config_class: ClassVar[type]
    input_kind: ClassVar[str]
    _no_wd_names: ClassVar[tuple[str, ...]]
    patch_embed: nn.Module
    cls_token: nn.Parameter | None

    def __init__(
        self,
        cfg: Any,
        *,
        num_classes: int = 0,
        drop_path_rate: float = 0.0,
        fused: bool = True,
        grad_checkpointing: bool = False,
        trunk_from: ViTEncoder | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(cfg).__name__}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.num_features = self.embed_dim = cfg.embed_dim
        self.num_prefix_tokens: int = cfg.num_prefix_tokens
        self.default_input: tuple[int, ...] = cfg.default_input
        self.grad_checkpointing = grad_checkpointing
        self._build_embedding(cfg)
        self.blocks: nn.ModuleList
        self.norm: nn.Module
        if trunk_from is not None:  # modality-agnostic weight sharing (VATT-MA): the same modules, not copies
            if (trunk_from.embed_dim, len(trunk_from.blocks)) != (cfg.embed_dim, cfg.depth):
                raise ValueError("trunk_from: the shared trunk has another width or depth than this config")
            self.blocks, self.norm = trunk_from.blocks, trunk_from.norm
        else:
            # stochastic depth grows linearly with depth (plain Python: works under `with torch.device("meta")`)
            dpr = [drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
            self.blocks = nn.ModuleList(
                Block(
                    cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, p, fused, cfg.norm_eps, cfg.layer_scale
                )
                for p in dpr
            )
            self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self._build_head(cfg)
        self.init_weights(skip=() if trunk_from is None else (self.blocks, self.norm))

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> Self:
        """Build from ``cfg`` with ``overrides``: config fields replace, runtime keys go to the constructor."""
        cfg, runtime = split_overrides(cfg, overrides, _RUNTIME_KEYS)
        return cls(cfg, **runtime)

    # -- hooks for subclasses
    def _build_embedding(self, cfg: Any) -> None:
        raise NotImplementedError

    def _build_head(self, cfg: Any) -> None:
        self.head: nn.Module = nn.Linear(cfg.embed_dim, self.num_classes) if self.num_classes > 0 else nn.Identity()

    def _patch_pos(self, grid: tuple[int, ...]) -> torch.Tensor:
        raise NotImplementedError

    def _prefix(self, batch: int) -> torch.Tensor | None:
        return None if self.cls_token is None else self.cls_token.expand(batch, -1, -1)  # no position

    def _pool(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if self.cfg.pool == "mean":
            return tokens.mean(dim=1)
        return prefix.mean(dim=1)  # cls (VATT), or (cls + dist) / 2 (AST)

    def attn_bias(self, x: torch.Tensor) -> torch.Tensor | None:
        """Additive attention bias for the whole sequence of input ``x`` (None: every token attends to all)."""
        return None

    # -- weights
    def init_weights(self, skip: tuple[nn.Module, ...] = ()) -> None:
        """Truncated normal (std 0.02) for linear/conv/embedding weights, position tables and prefix tokens; zero
        biases; then the ``init_weights()`` of tokenizers that have their own. ``skip``: modules (and what they
        hold) left as they are (a trunk borrowed from another encoder)."""
        skipped = {id(m) for s in skip for m in s.modules()}
        with torch.no_grad():
            for m in self.modules():
                if id(m) in skipped:
                    continue
                if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)):
                    trunc_normal(m.weight)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            for m in self.patch_embed.modules():
                if hasattr(m, "init_weights"):
                    m.init_weights()
            for name in sorted(self.no_weight_decay()):  # sorted: a set's order changes with PYTHONHASHSEED
                trunc_normal(self.get_parameter(name))

    def no_weight_decay(self) -> set[str]:
        """Position tables and prefix tokens (biases and norms are the optimizer builder's concern)."""
        params = dict(self.named_parameters())
        return {n for n in self._no_wd_names if n in params}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def set_fused(self, fused: bool) -> None:
        """Switch every attention between SDPA (True) and the eager reference math (False)."""
        for blk in self.blocks:
            blk.attn.fused = fused

    # -- staged forward: embed -> forward_block for every block -> finalize (fusion modules interleave the stages)
    def block_dims(self) -> list[tuple[int, int]]:
        """``(input width, output width)`` of every block: ``(D, D)``."""
        return [(self.embed_dim, self.embed_dim)] * len(self.blocks)

    def token_grid(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The full token grid of one input of ``input_shape`` (without the batch axis), e.g. ``(C, T, H, W)`` ->
        ``(t, h, w)``: what a keep-mask indexes (``prod(grid)`` tokens)."""
        return tuple(self.patch_embed.grid_size(tuple(input_shape[1:])))

    def embed(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Tokens with positions, prefix tokens first: ``(B, P + N, D)`` and the patch grid. With ``keep`` (a token
        keep-mask, :func:`~avformer.layers.drop.keep_tokens`) only the kept patch tokens follow the prefix; a
        tokenizer that ``keeps_before_stem`` (per-frame CNN) never computes the dropped ones."""
        if keep is not None and getattr(self.patch_embed, "keeps_before_stem", False):
            keep = as_keep_indices(keep, x.shape[0], self.token_grid(tuple(x.shape[1:]))[0])
            tokens, grid = self.patch_embed(x, keep)  # (B, N_keep, D)
            pos = self._patch_pos(grid).to(tokens.dtype)  # (1, N, D)
            tokens = tokens + keep_tokens(pos.expand(tokens.shape[0], -1, -1), keep)
        else:
            tokens, grid = self.patch_embed(x)  # (B, N, D)
            tokens = tokens + self._patch_pos(grid).to(tokens.dtype)
            if keep is not None:
                tokens = keep_tokens(tokens, keep)  # (B, N_keep, D), positions already added
        return self._with_prefix(tokens), tuple(grid)

    def _with_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[prefix tokens ‖ tokens]`` (B, P + N, D) of patch tokens that have their positions."""
        prefix = self._prefix(tokens.shape[0])
        return tokens if prefix is None else torch.cat([prefix.to(tokens.dtype), tokens], dim=1)  # (B, P + N, D)

    def forward_block(
        self,
        index: int,
        x: torch.Tensor,
        grid: tuple[int, ...],
        *,
        num_prefix_tokens: int | None = None,
        attn_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Run block ``index`` on ``(B, P + N, D)``; the grid is unchanged. Plain attention treats every token alike,
        so extra prefix tokens (``num_prefix_tokens``, fusion tokens) need no special handling here; ``attn_bias``
        is added to the attention logits (:meth:`attn_bias`)."""
        blk = self.blocks[index]
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            x = checkpoint(blk, x, attn_bias, use_reentrant=False)
        else:
            x = blk(x, attn_bias)
        return x, grid

    def finalize(self, x: torch.Tensor, grid: tuple[int, ...]) -> EncoderOutput:
        """Final norm, prefix/patch split and pooling of ``(B, P + N, D)`` (own prefix tokens only)."""
        return self._split(self.norm(x), grid)

    def _split(self, seq: torch.Tensor, grid: tuple[int, ...]) -> EncoderOutput:
        P = self.num_prefix_tokens
        prefix, tokens = seq[:, :P], seq[:, P:]
        return EncoderOutput(tokens=tokens, pooled=self._pool(prefix, tokens), grid=grid)

    # -- forward
    def forward_sequence(
        self, x: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """The whole normed sequence ``[prefix tokens, patch tokens]`` (B, P + N, D) and the patch grid."""
        seq, grid = self.embed(x, keep)
        bias = self.attn_bias(x)
        for i in range(len(self.blocks)):
            seq, grid = self.forward_block(i, seq, grid, attn_bias=bias)
        return self.norm(seq), grid

    def forward_features(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> EncoderOutput:
        """Encode ``x``; with ``keep`` (B, N_keep) indices or a (B, N) bool mask over the patch grid, only those
        tokens are encoded (DropToken, masked modelling): ``tokens`` is then (B, N_keep, D) in grid order and
        ``grid`` the full grid."""
        seq, grid = self.forward_sequence(x, keep)
        return self._split(seq, grid)

    def forward_features_with_map(self, x: torch.Tensor) -> tuple[EncoderOutput, torch.Tensor]:
        """``forward_features(x)`` (no token dropped) and the encoder's feature map on its input's grid, for heads
        that score places (sound-source localisation, :mod:`avformer.models.localization`).

        The map is, for a CNN stem (``frame_cnn`` video, ``cnn`` spectrogram), the stem's map before its pooling
        into tokens: ``(B, width, T, h, w)`` for video, ``(B, width, F', T')`` for a spectrogram (computed once and
        shared with the tokens); for patch / tubelet stems, the output patch tokens laid out on their grid:
        ``(B, D, t, h, w)`` for video, ``(B, D, F', T')`` for a spectrogram, ``(B, D, S')`` for a waveform.
        """
        pe = self.patch_embed
        if not isinstance(pe, CNNTokenEmbed):
            out = self.forward_features(x)
            B, _, D = out.tokens.shape
            return out, out.tokens.transpose(1, 2).reshape(B, D, *out.grid)  # tokens are in row-major grid order
        fmap = pe.feature_map(x)  # (B, width, T, h, w) | (B, width, F', T')
        tokens = pe.tokens_from_map(fmap)  # (B, N, D)
        grid = (tokens.shape[1],)
        seq = self._with_prefix(tokens + self._patch_pos(grid).to(tokens.dtype))
        bias = self.attn_bias(x)
        for i in range(len(self.blocks)):
            seq, grid = self.forward_block(i, seq, grid, attn_bias=bias)
        return self._split(self.norm(seq), grid), fmap

    def map_places(self) -> Places:
        """Where the places of :meth:`forward_features_with_map`'s map sit on the input, one entry per axis of the
        map after its channels (:func:`~avformer.layers.conv_embed.conv_places` of the stem or patch embedding; a
        per-frame CNN map keeps every frame, stride 1). A heatmap over the places is laid over the input with it
        (:func:`avformer.eval.localization.upsample`)."""
        pe = self.patch_embed
        if isinstance(pe, CNNTokenEmbed):
            places = conv_places(pe.stem)
            return Places((1.0, *places.stride), (0.5, *places.first)) if pe.per == "frame" else places
        return conv_places(pe)

    def forward_head(self, feats: EncoderOutput) -> torch.Tensor:
        """Logits (B, num_classes), or ``pooled`` (B, D) itself when ``num_classes == 0``."""
        return self.head(feats.pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ---- AST ----------------------------------------------------------------------------------------------------------
class AudioSpectrogramTransformer(ViTEncoder):
    """AST on a log-mel spectrogram.

    Args:
        cfg: architecture.
        num_classes: head outputs; 0 = no head (``forward`` returns ``pooled``).
        drop_path_rate: stochastic depth of the last block (linear from 0).
        fused: SDPA attention (True) or the eager reference path (False).
        grad_checkpointing: recompute each block in backward (training only).

    ``forward_features``: ``(B, 1, F, T)`` log-mel (mel bins first) -> tokens ``(B, F'·T', D)`` in freq-major order,
    pooled ``(B, D)``, grid ``(F', T')`` with ``F' = (F - patch) // freq_stride + 1``,
    ``T' = (T - patch) // time_stride + 1``.
    """

    config_class = ASTConfig
    input_kind = "spectrogram"
    _no_wd_names = ("pos_embed", "pos_embed_freq", "pos_embed_time", "cls_token", "dist_token")

    def _build_embedding(self, cfg: ASTConfig) -> None:
        D = cfg.embed_dim
        if cfg.stem == "cnn":
            self.patch_embed = CNNTokenEmbed(1, D, cfg.stem_stride, cfg.stem_width, per="band")
        else:
            self.patch_embed = PatchEmbed2d(1, D, cfg.patch, stride=(cfg.freq_stride, cfg.time_stride))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.dist_token else None
        if cfg.pos_embed == "joint":
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_prefix_tokens + math.prod(cfg.grid), D))
        else:  # a table per axis of the grid: frequency (patches or CNN bands), then time (patches only)
            self.pos_embed_freq = nn.Parameter(torch.zeros(1, cfg.grid[0], D))
            if len(cfg.grid) == 2:
                self.pos_embed_time = nn.Parameter(torch.zeros(1, cfg.grid[1], D))

    def _build_head(self, cfg: ASTConfig) -> None:
        # ASTMLPHead: LayerNorm + Linear over the pooled feature; absent without classes (strict ASTModel loading)
        self.head_norm: nn.Module = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if self.num_classes else nn.Identity()
        super()._build_head(cfg)

    def _patch_pos(self, grid: tuple[int, ...]) -> torch.Tensor:
        cfg, mode = self.cfg, self.cfg.pos_embed_resize
        if cfg.pos_embed == "joint":
            table = self.pos_embed[:, self.num_prefix_tokens :]  # (1, F'·T', D), freq-major
            return _resize_pos_table(table, cfg.grid, grid, mode)
        pf = _resize_pos_table(self.pos_embed_freq, cfg.grid[:1], grid[:1], mode)  # (1, F', D)
        if len(grid) == 1:  # CNN bands
            return pf
        Fp, Tp = grid
        pt = _resize_pos_table(self.pos_embed_time, cfg.grid[1:], (Tp,), mode)  # (1, T', D)
        return (pf[:, :, None, :] + pt[:, None, :, :]).reshape(1, Fp * Tp, -1)  # (1, F'·T', D)

    def _prefix(self, batch: int) -> torch.Tensor | None:
        toks = [t for t in (self.cls_token, self.dist_token) if t is not None]
        if not toks:
            return None
        prefix = torch.cat(toks, dim=1)  # (1, P, D)
        if self.cfg.pos_embed == "joint":
            prefix = prefix + self.pos_embed[:, : self.num_prefix_tokens]
        return prefix.expand(batch, -1, -1)

    def forward_head(self, feats: EncoderOutput) -> torch.Tensor:
        return self.head(self.head_norm(feats.pooled))


# ---- video --------------------------------------------------------------------------------------------------------
class VideoViT(ViTEncoder):
    """ViT over video tubelets with VATT's separable (t, h, w) position embedding.

    ``forward_features``: ``(B, C, T, H, W)`` -> tokens ``(B, t·h·w, D)``, pooled ``(B, D)``,
    grid ``(t, h, w) = (T // t0, H // p, W // p)``. Constructor args as ``AudioSpectrogramTransformer``.
    """

    config_class = VideoViTConfig
    input_kind = "video"
    _no_wd_names = ("pos_embed_t", "pos_embed_h", "pos_embed_w", "cls_token")

    def _build_embedding(self, cfg: VideoViTConfig) -> None:
        D = cfg.embed_dim
        if cfg.stem == "frame_cnn":
            self.patch_embed = CNNTokenEmbed(cfg.in_chans, D, cfg.stem_stride, cfg.stem_width, per="frame")
        elif cfg.stem == "conv":
            self.patch_embed = ConvStemEmbed(cfg.in_chans, D, cfg.tubelet_size)
        else:
            self.patch_embed = TubeletEmbed3d(cfg.in_chans, D, cfg.tubelet_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self.pos_embed_t = nn.Parameter(torch.zeros(1, cfg.grid[0], D))  # frames with frame_cnn
        if cfg.stem != "frame_cnn":
            self.pos_embed_h = nn.Parameter(torch.zeros(1, cfg.grid[1], D))
            self.pos_embed_w = nn.Parameter(torch.zeros(1, cfg.grid[2], D))

    def _patch_pos(self, grid: tuple[int, ...]) -> torch.Tensor:
        mode = self.cfg.pos_embed_resize
        pt = _resize_pos_table(self.pos_embed_t, self.cfg.grid[:1], grid[:1], mode)[0]  # (t, D)
        if len(grid) == 1:  # one token per frame
            return pt[None]
        t, h, w = grid
        h0, w0 = self.cfg.grid[1:]
        ph = _resize_pos_table(self.pos_embed_h, (h0,), (h,), mode)[0]  # (h, D)
        pw = _resize_pos_table(self.pos_embed_w, (w0,), (w,), mode)[0]  # (w, D)
        pos = pt[:, None, None] + ph[None, :, None] + pw[None, None, :]  # (t, h, w, D)
        return pos.reshape(1, t * h * w, -1)


# ---- waveform -----------------------------------------------------------------------------------------------------
class WaveformViT(ViTEncoder):
    """Transformer on raw-waveform patches (VATT's audio encoder).

    ``forward_features``: ``(B, C, S)`` -> tokens ``(B, S', D)``, pooled ``(B, D)``, grid ``(S' = S // patch_size,)``
    (trailing samples that do not fill a patch are dropped). Constructor args as ``AudioSpectrogramTransformer``.
    """

    config_class = WaveformViTConfig
    input_kind = "waveform"
    _no_wd_names = ("pos_embed", "cls_token")

    def _build_embedding(self, cfg: WaveformViTConfig) -> None:
        D = cfg.embed_dim
        self.patch_embed = WaveformPatchEmbed(cfg.in_chans, D, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid[0], D))

    def _patch_pos(self, grid: tuple[int, ...]) -> torch.Tensor:
        return _resize_pos_table(self.pos_embed, self.cfg.grid, tuple(grid), self.cfg.pos_embed_resize)


# ---- variants -----------------------------------------------------------------------------------------------------
# name -> (encoder class, config): each variant is its family's default config with a few sizes replaced, built by
# ``cls.from_config(cfg, **overrides)``.
_VARIANTS: dict[str, tuple[type[ViTEncoder], ASTConfig | VideoViTConfig | WaveformViTConfig]] = {
    # AST sizes follow the AST repo's DeiT starting points (tiny224 / small224 / base384), all 12 layers, stride 10.
    "ast_tiny": (AudioSpectrogramTransformer, ASTConfig(embed_dim=192, num_heads=3)),
    "ast_small": (AudioSpectrogramTransformer, ASTConfig(embed_dim=384, num_heads=6)),
    # Published AST-Base: 12 × 101 = 1212 patches of a 128 × 1024 input (+2 prefix tokens), 86.6 M params with the
    # 527-class AudioSet head.
    "ast_base": (AudioSpectrogramTransformer, ASTConfig()),
    # VATT video encoders: 32 × 224² input, 4×16×16 tubelets -> 8 × 14 × 14 = 1568 tokens. VATT-Base: 12 layers,
    # 768 wide, 12 heads; VATT-Medium: 12 layers, 1024 wide, 16 heads; VATT-Large: 24 layers, 1024 wide, 16 heads.
    "vit_video_tiny_t4p16": (VideoViT, VideoViTConfig(embed_dim=192, num_heads=3)),
    "vit_video_base_t4p16": (VideoViT, VideoViTConfig()),
    "vit_video_medium_t4p16": (VideoViT, VideoViTConfig(embed_dim=1024, num_heads=16)),
    "vit_video_large_t4p16": (VideoViT, VideoViTConfig(embed_dim=1024, depth=24, num_heads=16)),
    # VATT audio encoders: 128-sample patches of the raw waveform. VATT-Base: 12 layers, 768 wide, 12 heads.
    "vit_wave_tiny_p128": (WaveformViT, WaveformViTConfig(embed_dim=192, num_heads=3)),
    "vit_wave_base_p128": (WaveformViT, WaveformViTConfig()),
}
for _name, (_cls, _cfg) in _VARIANTS.items():
    register_model(_name)(functools.partial(_cls.from_config, _cfg))


# ---- weight conversion --------------------------------------------------------------------------------------------
_LAYER = r"^(?:layers|encoder\.layer)\.(\d+)\."  # transformers >= 5 | transformers 4.x (and the hub checkpoints)
_AST_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.distillation_token$", "dist_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (_LAYER + r"layernorm_before\.", r"blocks.\1.norm1."),
    (_LAYER + r"layernorm_after\.", r"blocks.\1.norm2."),
    (_LAYER + r"attention\.(?:o_proj|output\.dense)\.", r"blocks.\1.attn.proj."),
    (_LAYER + r"(?:mlp\.fc1|intermediate\.dense)\.", r"blocks.\1.mlp.fc1."),
    (_LAYER + r"(?:mlp\.fc2|output\.dense)\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.layernorm\.", "head_norm."),
    (r"^classifier\.dense\.", "head."),
)
_AST_QKV = re.compile(_LAYER + r"attention\.(?:(q|k|v)_proj|attention\.(query|key|value))\.(weight|bias)$")


def convert_transformers_ast_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a ``transformers`` ``ASTModel`` / ``ASTForAudioClassification`` state dict onto
    ``AudioSpectrogramTransformer`` (``pos_embed="joint"``, ``class_token=dist_token=True``).

    Accepts both transformers >= 5 names (``layers.i.attention.q_proj``) and 4.x / hub-checkpoint names
    (``encoder.layer.i.attention.attention.query``); q, k, v are concatenated into ``qkv``. Build the model with the
    same geometry (``embed_dim``/``depth``/``num_heads``/strides/``num_mel_bins``/``num_frames = max_length``),
    ``num_classes = num_labels`` for the classifier (0 for a bare ``ASTModel``) and, for the closest match,
    ``norm_eps = layer_norm_eps``; then ``load_state_dict(..., strict=True)``.

    Raises:
        KeyError: a key that has no counterpart here (nothing is dropped silently).
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        k = key.removeprefix("audio_spectrogram_transformer.")
        if m := _AST_QKV.match(k):
            layer, short, long, kind = m.groups()
            which = short or {"query": "q", "key": "k", "value": "v"}[long]
            qkv.setdefault((layer, kind), {})[which] = value
            continue
        for pattern, repl in _AST_RENAMES:
            new, n = re.subn(pattern, repl, k)
            if n:
                out[new] = value
                break
        else:
            raise KeyError(f"no avformer counterpart for transformers AST key {key!r}")
    for (layer, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise KeyError(f"layer {layer}: incomplete q/k/v {kind} ({sorted(parts)})")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out
