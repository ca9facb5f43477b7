"""Configs of the plain ViT encoders of ``avformer.models.vit``: ASTConfig, VideoViTConfig, WaveformViTConfig; and of
the text transformer of ``avformer.models.text_encoder`` (TextTransformerConfig).

Frozen dataclasses of architecture fields only (runtime knobs such as ``num_classes`` are constructor arguments of
the models), validated on construction, with the derived default input shape and patch grid of each. The models and
their registered variants are in ``avformer.models.vit``, which re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avformer.layers.conv_embed import conv_out_size, stem_grid, stem_strides

__all__ = ["ASTConfig", "TextTransformerConfig", "TrunkConfig", "VideoViTConfig", "WaveformViTConfig"]

_POS_RESIZE = ("interpolate", "crop")


# ---- configs ------------------------------------------------------------------------------------------------------
def _check_trunk(cfg: Any) -> None:
    """Validation shared by the three configs (fields embed_dim, depth, num_heads, mlp_ratio, norm_eps)."""
    for name in ("embed_dim", "depth", "num_heads"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a positive int, got {v!r}")
    if cfg.embed_dim % cfg.num_heads != 0:
        raise ValueError(f"embed_dim {cfg.embed_dim} is not divisible by num_heads {cfg.num_heads}")
    if cfg.mlp_ratio <= 0 or cfg.norm_eps <= 0:
        raise ValueError(f"mlp_ratio and norm_eps must be > 0, got {cfg.mlp_ratio}, {cfg.norm_eps}")
    if cfg.layer_scale is not None and cfg.layer_scale <= 0:
        raise ValueError(f"layer_scale must be None or > 0, got {cfg.layer_scale}")


def _check_stem(cfg: Any, choices: tuple[str, ...]) -> None:
    """``stem`` is one of ``choices``; a CNN stem (``stem_stride`` a power of 2 > 1, ``stem_width >= 8``)."""
    _check_choice(cfg, "stem", choices)
    if cfg.stem in ("frame_cnn", "cnn"):
        stem_strides((cfg.stem_stride,))  # raises unless a power of 2 > 1
        if cfg.stem_width < 8:
            raise ValueError(f"{type(cfg).__name__}.stem_width must be >= 8, got {cfg.stem_width}")


def _check_choice(cfg: Any, name: str, choices: tuple[str, ...]) -> None:
    v = getattr(cfg, name)
    if v not in choices:
        raise ValueError(f"{type(cfg).__name__}.{name} must be one of {choices}, got {v!r}")


@dataclass(frozen=True)
class TrunkConfig:
    """The transformer trunk every ViT-family config starts with (defaults: ViT-Base); the families add their
    tokenizer and pooling fields after these."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    layer_scale: float | None = None  # LayerScale init of every block (CaiT); None = off (ViT, AST, VATT)


class _ClassTokenPool:
    """What the configs that pool the class token (``pool="cls"``: VATT's [AGG] token) or the mean of the other tokens
    (``pool="mean"``) share: the class token is their only prefix token."""

    class_token: bool
    pool: str

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token)

    def _check_cls_pool(self) -> None:
        if self.pool == "cls" and not self.class_token:
            raise ValueError('pool="cls" needs class_token=True; use pool="mean"')


@dataclass(frozen=True)
class ASTConfig(TrunkConfig):
    """AST architecture (defaults: AST-Base as published, AudioSet 10 s clips). Runtime knobs are constructor args."""

    num_mel_bins: int = 128  # F of the default input (Kaldi fbank, 25 ms window)
    num_frames: int = 1024  # T of the default input: 10.24 s at a 10 ms hop
    patch_size: int | tuple[int, int] = 16  # square patches, or (F, T) sides
    freq_stride: int = 10  # < patch_size: overlapping patches (AST: 10 on both axes)
    time_stride: int = 10
    class_token: bool = True
    dist_token: bool = True  # DeiT distillation token; AST-Base starts from distilled DeiT and keeps it
    pool: str = "prefix"  # "prefix": mean of the prefix tokens, (cls + dist) / 2 as in AST | "mean": of patches
    pos_embed: str = "joint"  # "joint": one table over prefix + F'·T' (transformers layout) | "separable": F + T
    pos_embed_resize: str = "interpolate"  # how the table meets another input length: "interpolate" | "crop"
    stem: str = "linear"  # "linear": patches | "cnn" (ours): one token per frequency band of a CNN's map, max over
    # time (:class:`~avformer.layers.conv_embed.CNNTokenEmbed`; needs pos_embed="separable", no time table)
    stem_width: int = 128  # CNN stem: channels of its last conv layer
    stem_stride: int = 8  # CNN stem: total stride on both axes

    def __post_init__(self) -> None:
        if not isinstance(self.patch_size, int):
            object.__setattr__(self, "patch_size", tuple(self.patch_size))  # YAML gives lists
        _check_trunk(self)
        _check_choice(self, "pool", ("prefix", "mean"))
        _check_choice(self, "pos_embed", ("joint", "separable"))
        _check_choice(self, "pos_embed_resize", _POS_RESIZE)
        _check_stem(self, ("linear", "cnn"))
        if len(self.patch) != 2 or min(*self.patch, self.freq_stride, self.time_stride) < 1:
            raise ValueError("patch_size (one side or two), freq_stride and time_stride must be >= 1")
        if self.num_mel_bins < self.patch[0] or self.num_frames < self.patch[1]:
            raise ValueError(
                f"input ({self.num_mel_bins} mel × {self.num_frames} frames) is smaller than one patch "
                f"({self.patch_size})"
            )
        if self.stem == "cnn" and self.pos_embed != "separable":
            raise ValueError('stem="cnn" needs pos_embed="separable" (a table over frequency bands)')
        if self.dist_token and not self.class_token:
            raise ValueError("dist_token=True needs class_token=True")
        if self.pool == "prefix" and not self.class_token:
            raise ValueError('pool="prefix" needs class_token=True; use pool="mean"')

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.dist_token)

    @property
    def patch(self) -> tuple[int, int]:
        """(F, T) sides of a patch."""
        p = self.patch_size
        return (p, p) if isinstance(p, int) else (p[0], p[1])

    @property
    def grid(self) -> tuple[int, ...]:
        """(F', T') patch grid of the default input; (F',) frequency bands with ``stem="cnn"``."""
        size = (self.num_mel_bins, self.num_frames)
        if self.stem == "cnn":
            return stem_grid(size, (self.stem_stride,) * 2)[:1]
        return conv_out_size(size, self.patch, (self.freq_stride, self.time_stride), (0, 0))

    @property
    def default_input(self) -> tuple[int, int, int]:
        """One sample's shape: (1, F, T)."""
        return (1, self.num_mel_bins, self.num_frames)


@dataclass(frozen=True)
class VideoViTConfig(TrunkConfig, _ClassTokenPool):
    """Video ViT over tubelets with VATT's separable position embedding (defaults: VATT-Base video encoder)."""

    in_chans: int = 3
    num_frames: int = 32  # VATT: 32 frames at 10 fps (3.2 s)
    img_size: int = 224  # square frames
    tubelet_size: tuple[int, int, int] = (4, 16, 16)  # (t, p, p); VATT 4×16×16, ViViT 2×16×16
    class_token: bool = True  # VATT's [AGG] token
    pool: str = "cls"  # "cls" | "mean" (of patch tokens)
    pos_embed_resize: str = "interpolate"
    stem: str = "linear"  # "linear": VATT's tubelet projection | "conv": a conv stem, same grid (tubelet sides powers
    # of 2) | "frame_cnn": one token per frame, a 2-D CNN's map max-pooled over space (the last two are ours)
    stem_width: int = 128  # frame_cnn: channels of the CNN's last conv layer
    stem_stride: int = 8  # frame_cnn: total stride on both axes of a frame

    def __post_init__(self) -> None:
        object.__setattr__(self, "tubelet_size", tuple(self.tubelet_size))  # YAML gives lists
        _check_trunk(self)
        _check_choice(self, "pool", ("cls", "mean"))
        _check_choice(self, "pos_embed_resize", _POS_RESIZE)
        _check_stem(self, ("linear", "conv", "frame_cnn"))
        if len(self.tubelet_size) != 3 or min(self.tubelet_size) < 1:
            raise ValueError(f"tubelet_size must be 3 positive ints (t, p, p), got {self.tubelet_size}")
        if self.stem == "conv":
            stem_strides(self.tubelet_size)  # raises unless every tubelet side is a power of 2
        t, ph, pw = self.tubelet_size
        if self.num_frames < t or self.img_size < max(ph, pw):
            raise ValueError(
                f"input {self.num_frames}×{self.img_size}² is smaller than one tubelet {self.tubelet_size}"
            )
        self._check_cls_pool()

    @property
    def grid(self) -> tuple[int, ...]:
        """(t, h, w) tubelet grid of the default input; (frames,) with ``stem="frame_cnn"``."""
        if self.stem == "frame_cnn":
            return (self.num_frames,)
        t, ph, pw = self.tubelet_size
        return (self.num_frames // t, self.img_size // ph, self.img_size // pw)

    @property
    def default_input(self) -> tuple[int, int, int, int]:
        """One sample's shape: (C, T, H, W)."""
        return (self.in_chans, self.num_frames, self.img_size, self.img_size)


@dataclass(frozen=True)
class WaveformViTConfig(TrunkConfig, _ClassTokenPool):
    """Transformer on raw-waveform patches (defaults: VATT-Base audio encoder)."""

    in_chans: int = 1
    num_samples: int = 153_600  # VATT: 3.2 s at 48 kHz (9.6 s at our 16 kHz) -> 1200 patches
    patch_size: int = 128  # samples per patch (VATT)
    class_token: bool = True
    pool: str = "cls"  # "cls" | "mean"
    pos_embed_resize: str = "interpolate"

    def __post_init__(self) -> None:
        _check_trunk(self)
        _check_choice(self, "pool", ("cls", "mean"))
        _check_choice(self, "pos_embed_resize", _POS_RESIZE)
        if self.patch_size < 1 or self.num_samples < self.patch_size:
            raise ValueError(f"num_samples {self.num_samples} must be >= patch_size {self.patch_size} >= 1")
        self._check_cls_pool()

    @property
    def grid(self) -> tuple[int]:
        return (self.num_samples // self.patch_size,)

    @property
    def default_input(self) -> tuple[int, int]:
        """One sample's shape: (C, S)."""
        return (self.in_chans, self.num_samples)


@dataclass(frozen=True)
class TextTransformerConfig(TrunkConfig, _ClassTokenPool):
    """Transformer over word ids (VATT's text encoder; defaults: VATT-Base width, 16 words of a 2^16 hashed
    vocabulary, 300-d word embeddings as word2vec's)."""

    vocab_size: int = 65_536  # word ids, 0 = padding
    max_tokens: int = 16  # words per text (VATT: 16); the position table's length
    word_dim: int = 300  # word-embedding width before the linear projection to embed_dim
    class_token: bool = True  # VATT's [AGG] token, the pooled feature
    pool: str = "cls"  # "cls" | "mean" (of the word tokens, padding included)

    def __post_init__(self) -> None:
        _check_trunk(self)
        _check_choice(self, "pool", ("cls", "mean"))
        if self.vocab_size < 2 or self.max_tokens < 1 or self.word_dim < 1:
            raise ValueError("TextTransformerConfig: need vocab_size >= 2, max_tokens >= 1, word_dim >= 1")
        self._check_cls_pool()

    @property
    def grid(self) -> tuple[int]:
        return (self.max_tokens,)

    @property
    def default_input(self) -> tuple[int]:
        """One sample's shape: (L,) word ids."""
        return (self.max_tokens,)
