"""VATT's architecture config (see :mod:`avformer.models.vatt` for the model and what each option means)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avformer.layers.conv_embed import stem_strides
from avformer.models.vit_config import (
    ASTConfig,
    TextTransformerConfig,
    TrunkConfig,
    VideoViTConfig,
    WaveformViTConfig,
)

__all__ = ["MODALITIES", "VATTConfig"]

MODALITIES = ("video", "audio", "text")
_AUDIO_INPUTS = ("waveform", "spectrogram")
_TEXT_ENCODERS = ("hashed", "minilm")
_VIDEO_STEMS = ("linear", "conv", "frame_cnn")
_AUDIO_STEMS = ("linear", "cnn")
_VA_HEADS = ("linear", "mlp")
_POOLS = ("agg", "mean")


# ---- config -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VATTConfig(TrunkConfig):
    """VATT architecture (defaults: VATT-Base on the paper's 32 × 224² video; audio at our 16 kHz).

    ``embed_dim`` / ``depth`` / ``num_heads`` size the video trunk (and the one shared trunk when ``shared_backbone``);
    ``audio_trunk`` / ``text_trunk`` are ``(embed_dim, depth, num_heads)`` of the other trunks (None: as video).
    """

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

    def encoder_config(self, modality: str) -> TrunkConfig:
        """The config of the ``avformer.models.vit`` / ``text_encoder`` encoder of ``modality`` (VideoViT, WaveformViT
        or AST on log-mel patches / CNN bands, TextTransformer): VATT's [AGG] token is their ``class_token``."""
        d, n, h = self.trunk(modality)
        trunk: dict[str, Any] = {
            "embed_dim": d, "depth": n, "num_heads": h, "mlp_ratio": self.mlp_ratio, "qkv_bias": self.qkv_bias,
            "norm_eps": self.norm_eps, "layer_scale": self.layer_scale,
        }  # fmt: skip
        agg = self.pool == "agg"
        stem = {"stem_width": self.stem_width, "stem_stride": self.stem_stride}
        if modality == "video":
            return VideoViTConfig(
                **trunk, in_chans=self.in_chans, num_frames=self.num_frames, img_size=self.img_size,
                tubelet_size=self.tubelet_size, class_token=agg, pool="cls" if agg else "mean", stem=self.video_stem,
                **stem,
            )  # fmt: skip
        if modality == "audio" and self.audio_input == "waveform":
            return WaveformViTConfig(
                **trunk, in_chans=1, num_samples=self.num_samples, patch_size=self.audio_patch_size, class_token=agg,
                pool="cls" if agg else "mean",
            )  # fmt: skip
        if modality == "audio":
            (f, t), (pf, pt) = self.spec_size, self.spec_patch
            return ASTConfig(
                **trunk, num_mel_bins=f, num_frames=t, patch_size=(pf, pt), freq_stride=pf, time_stride=pt,
                class_token=agg, dist_token=False, pool="prefix" if agg else "mean", pos_embed="separable",
                stem=self.audio_stem, **stem,
            )  # fmt: skip
        if modality == "text":
            return TextTransformerConfig(
                **trunk, vocab_size=self.vocab_size, max_tokens=self.max_text_tokens, word_dim=self.text_word_dim
            )
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")

    def trunk(self, modality: str) -> tuple[int, int, int]:
        """``(embed_dim, depth, num_heads)`` of the trunk that encodes ``modality``."""
        own = {"audio": self.audio_trunk, "text": self.text_trunk}.get(modality)
        return own if own is not None else (self.embed_dim, self.depth, self.num_heads)

    @property
    def video_grid(self) -> tuple[int, ...]:
        """Video token grid: (t, h, w) tubelets, or (frames,) with ``video_stem="frame_cnn"``."""
        return tuple(self.encoder_config("video").grid)  # type: ignore[attr-defined]

    @property
    def audio_grid(self) -> tuple[int, ...]:
        """Audio token grid: (patches,) of a waveform, (F, T) spectrogram patches, or (F,) CNN frequency bands."""
        return tuple(self.encoder_config("audio").grid)  # type: ignore[attr-defined]

    @property
    def audio_input_shape(self) -> tuple[int, ...]:
        """One audio sample's shape: (1, S) waveform or (1, F, T) spectrogram."""
        return (1, self.num_samples) if self.audio_input == "waveform" else (1, *self.spec_size)
