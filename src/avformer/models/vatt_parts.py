"""VATT's building blocks: the per-modality tokenizers, the trunk, the common-space heads, weight init helpers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avformer.layers.conv_embed import ConvStemEmbed
from avformer.layers.patch_embed import PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed
from avformer.layers.vit_block import Block
from avformer.models.vatt_config import VATTConfig

__all__ = [
    "AudioTokenizer",
    "CNNTokenizer",
    "TextTokenizer",
    "Trunk",
    "VideoTokenizer",
    "build_tokenizer",
    "head",
    "trunc_normal",
]


# ---- pieces -------------------------------------------------------------------------------------------------------
def trunc_normal(t: torch.Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


def _resize_1d(table: torch.Tensor, n: int) -> torch.Tensor:
    """(1, N0, D) learned table -> (1, n, D), linear interpolation when the length differs."""
    if table.shape[1] == n:
        return table
    return F.interpolate(table.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)


class Trunk(nn.Module):
    """Pre-norm blocks + final norm over ``(B, N, D)``, with an optional additive attention bias."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, cfg: VATTConfig, drop_path_rate: float, fused: bool
    ) -> None:
        super().__init__()
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, cfg.mlp_ratio, cfg.qkv_bias, dpr[i], fused, cfg.norm_eps, cfg.layer_scale)
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, attn_bias, use_reentrant=False)
            else:
                x = blk(x, attn_bias)
        return self.norm(x)


class VideoTokenizer(nn.Module):
    def __init__(self, cfg: VATTConfig, dim: int) -> None:
        super().__init__()
        self.base_grid = cfg.video_grid
        self.patch_embed: nn.Module
        if cfg.video_stem == "conv":
            self.patch_embed = ConvStemEmbed(cfg.in_chans, dim, cfg.tubelet_size)
        else:
            self.patch_embed = TubeletEmbed3d(cfg.in_chans, dim, cfg.tubelet_size)
        t, h, w = cfg.video_grid
        self.pos_t = nn.Parameter(torch.zeros(1, t, dim))
        self.pos_h = nn.Parameter(torch.zeros(1, h, dim))
        self.pos_w = nn.Parameter(torch.zeros(1, w, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        tokens, grid = self.patch_embed(x)  # (B, t·h·w, D)
        t, h, w = grid
        pt, ph, pw = _resize_1d(self.pos_t, t)[0], _resize_1d(self.pos_h, h)[0], _resize_1d(self.pos_w, w)[0]
        pos = (pt[:, None, None] + ph[None, :, None] + pw[None, None, :]).reshape(1, t * h * w, -1)  # (1, N, D)
        return tokens + pos.to(tokens.dtype), tuple(grid)


class AudioTokenizer(nn.Module):
    def __init__(self, cfg: VATTConfig, dim: int) -> None:
        super().__init__()
        self.kind = cfg.audio_input
        if self.kind == "waveform":
            self.patch_embed: nn.Module = WaveformPatchEmbed(1, dim, cfg.audio_patch_size)
            self.pos = nn.Parameter(torch.zeros(1, cfg.audio_grid[0], dim))
        else:
            self.patch_embed = PatchEmbed2d(1, dim, cfg.spec_patch, stride=cfg.spec_patch)
            f, t = cfg.audio_grid
            self.pos_f = nn.Parameter(torch.zeros(1, f, dim))
            self.pos_t = nn.Parameter(torch.zeros(1, t, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        tokens, grid = self.patch_embed(x)  # (B, N, D)
        if self.kind == "waveform":
            pos = _resize_1d(self.pos, grid[0])
        else:
            f, t = grid
            pf, pt = _resize_1d(self.pos_f, f)[0], _resize_1d(self.pos_t, t)[0]
            pos = (pf[:, None] + pt[None, :]).reshape(1, f * t, -1)  # freq-major, as the conv flattens
        return tokens + pos.to(tokens.dtype), tuple(grid)


class CNNTokenizer(nn.Module):
    """Tokens from a 2-D CNN stem (:class:`ConvStemEmbed` with ``refine``), pooled so that each token is invariant
    to where its content sits: video ``(B, C, T, H, W)`` -> one token per frame (the frame's map, max over space);
    spectrogram ``(B, 1, F, T)`` -> one token per frequency band of the map (max over time: when a sound starts
    does not change its tokens, its pitch does). A learned 1-D position table over frames / bands, linearly
    interpolated for other lengths.
    """

    def __init__(self, cfg: VATTConfig, dim: int, modality: str) -> None:
        super().__init__()
        self.modality = modality
        in_chans = cfg.in_chans if modality == "video" else 1
        s = cfg.stem_stride
        self.stem = ConvStemEmbed(in_chans, dim, (s, s), width=cfg.stem_width, refine=True)
        n = cfg.video_grid[0] if modality == "video" else cfg.audio_grid[0]
        self.pos_t = nn.Parameter(torch.zeros(1, n, dim))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Tokens (B, N, D) with positions and the full grid (N,); ``keep`` (B, N_keep) sorted frame indices encodes
        only those frames (video DropToken before the CNN: the dropped frames cost nothing)."""
        if self.modality == "video":
            B, C, T, H, W = x.shape
            frames = x.transpose(1, 2)  # (B, T, C, H, W)
            if keep is not None:
                frames = frames.gather(1, keep[:, :, None, None, None].expand(-1, -1, C, H, W))
            n = frames.shape[1]
            feats = self.stem.features(frames.reshape(B * n, C, H, W)).amax((2, 3)).view(B, n, -1)  # (B, n, width)
        else:
            if keep is not None:
                raise ValueError("audio CNN tokens are dropped after the stem (drop_tokens), not through keep")
            feats = self.stem.features(x).amax(3).transpose(1, 2)  # (B, F', width)
            B, T = feats.shape[:2]
        tokens = self.stem.project(feats.transpose(1, 2)).transpose(1, 2)  # (B, n, D)
        pos = _resize_1d(self.pos_t, T)[0]  # (T, D)
        pos = pos[None] if keep is None else pos[keep]  # (1 or B, n, D)
        return tokens + pos.to(tokens.dtype), (T,)


class TextTokenizer(nn.Module):
    def __init__(self, cfg: VATTConfig, dim: int) -> None:
        super().__init__()
        self.word_embed = nn.Embedding(cfg.vocab_size, cfg.text_word_dim, padding_idx=0)
        self.proj = nn.Linear(cfg.text_word_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, cfg.max_text_tokens, dim))

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        L = ids.shape[1]
        if self.pos.shape[1] < L:
            raise ValueError(f"text has {L} tokens, more than max_text_tokens={self.pos.shape[1]}")
        tokens = self.proj(self.word_embed(ids)) + self.pos[:, :L]  # (B, L, D)
        return tokens, (L,)


def head(dim: int, out_dim: int, batch_norm: bool, mlp: bool = False) -> nn.Module:
    """Linear projection into a common space, followed by BatchNorm1d when ``batch_norm``; or with ``mlp`` a
    SimCLR-style Linear(dim, dim)-BN-ReLU-Linear(dim, out_dim) (the BN only when ``batch_norm``)."""
    if mlp:
        norm = nn.BatchNorm1d(dim) if batch_norm else nn.Identity()
        return nn.Sequential(nn.Linear(dim, dim), norm, nn.ReLU(inplace=True), nn.Linear(dim, out_dim))
    if not batch_norm:
        return nn.Linear(dim, out_dim)
    return nn.Sequential(nn.Linear(dim, out_dim), nn.BatchNorm1d(out_dim))


def build_tokenizer(cfg: VATTConfig, dim: int, modality: str) -> nn.Module:
    """The tokenizer of ``modality`` that ``cfg`` asks for (CNN stems, tubelets / patches, words)."""
    if (modality == "video" and cfg.video_stem == "frame_cnn") or (modality == "audio" and cfg.audio_stem == "cnn"):
        return CNNTokenizer(cfg, dim, modality)
    kinds: dict[str, type[nn.Module]] = {"video": VideoTokenizer, "audio": AudioTokenizer, "text": TextTokenizer}
    return kinds[modality](cfg, dim)
