"""Audio-visual variants on two plain ViT encoders: the fusion family side by side (``avformer compare``).

Every variant here pairs the same two encoders and changes only the fusion, so that a comparison measures the fusion:

* audio: an AST (:class:`~avformer.models.vit.AudioSpectrogramTransformer`) on a 64-bin x 100-frame log-mel (1 s)
  whose tokens come from a small CNN (``stem="cnn"``): one token per band of 8 mel bins, max over time -> 8 tokens;
* video: a video ViT on 8 frames of 32² whose tokens come from a 2-D CNN per frame (``stem="frame_cnn"``): one
  token per frame, max over space -> 8 tokens;
* both 128 wide, 4 heads, mean pooling, ``depth`` blocks (4 for the fusions that act inside or after full encoders:
  late, bottleneck; 2 for the ones that add their own blocks on top, so that every path from input to head is 4
  blocks deep: concatenation, sparse (SFT), cross-attention, agnostic (Everything-at-Once), UAVM).

The CNN stems (ours, also VATT's AV-Digits recipe) learn this data several times faster than ViT patches: in-memory
runs of the late-fusion pair, 5 epochs, seed 0: 0.883 fused top-1 with the CNN stems, 0.583 with 16 x 10 audio
patches and 2 x 8 x 8 conv-stem tubelets (40 + 64 tokens).

The input sizes are fields of the encoders (``audio_overrides`` / ``video_overrides``: ``num_mel_bins``,
``num_frames``, ``img_size``, ...); keep them equal to what the data config gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avformer.fusion.head import HeadConfig
from avformer.models.av_model import AVModel, AVModelConfig, build_with_overrides
from avformer.models.registry import register_model

__all__: list[str] = []

WIDTH, HEADS = 128, 4


def vit_audio(depth: int, width: int = WIDTH, heads: int = HEADS) -> dict[str, Any]:
    """The AST of the fusion family: 64 x 100 log-mel, a CNN stem with one token per frequency band (8 tokens)."""
    return {
        "embed_dim": width,
        "depth": depth,
        "num_heads": heads,
        "num_mel_bins": 64,
        "num_frames": 100,
        "stem": "cnn",
        "stem_stride": 8,
        "pos_embed": "separable",
        "class_token": False,
        "dist_token": False,
        "pool": "mean",
    }


def vit_video(depth: int, width: int = WIDTH, heads: int = HEADS) -> dict[str, Any]:
    """The video ViT of the fusion family: 8 frames of 32², a 2-D CNN stem with one token per frame, mean pooling."""
    return {
        "embed_dim": width,
        "depth": depth,
        "num_heads": heads,
        "num_frames": 8,
        "img_size": 32,
        "stem": "frame_cnn",
        "class_token": False,
        "pool": "mean",
    }


def _variant(
    fusion: str,
    depth: int,
    overrides: Mapping[str, Any],
    fusion_config: Any = None,
    *,
    width: int = WIDTH,
    heads: int = HEADS,
    **fields: Any,
) -> AVModel:
    base = AVModelConfig(
        audio_encoder="ast_tiny",
        video_encoder="vit_video_tiny_t4p16",
        audio_overrides=vit_audio(depth, width, heads),
        video_overrides=vit_video(depth, width, heads),
        fusion=fusion,
        fusion_config=fusion_config,
        **fields,
    )
    return build_with_overrides(base, overrides)


@register_model("av_vit_tiny")
def av_vit_tiny(**overrides: Any) -> AVModel:
    """Late fusion of a 4-block AST and a 4-block video ViT (128 wide): the fusion family's baseline."""
    return _variant("late", 4, overrides, head=HeadConfig(mode="logits"))


@register_model("av_vit_bottleneck_tiny")
def av_vit_bottleneck_tiny(**overrides: Any) -> AVModel:
    """MBT bottleneck fusion (4 tokens) over the last 2 of the 4 + 4 encoder blocks."""
    return _variant("bottleneck", 4, overrides, {"num_bottleneck_tokens": 4, "fusion_layers": 2})


@register_model("concat_tiny")
def concat_tiny(**overrides: Any) -> AVModel:
    """2 + 2 encoder blocks, then 2 joint blocks over all 8 + 8 tokens (modality embeddings): the dense reference."""
    return _variant("concat", 2, overrides, {"depth": 2})


@register_model("sft_tiny")
def sft_tiny(**overrides: Any) -> AVModel:
    """Sparse Fusion Transformer: 2 + 2 encoder blocks, max pooling (audio 8 -> 2, video 8 -> 2 tokens), 2 joint
    blocks over those 4 and the summed class token, one head on it."""
    cfg = {"depth": 2, "pool": "max", "audio_kernel": 4, "video_kernel": 4}
    return _variant("sparse", 2, overrides, cfg, head=HeadConfig(mode="mean"))


@register_model("xattn_tiny")
def xattn_tiny(**overrides: Any) -> AVModel:
    """Cross-attention fusion (TCaF): 2 + 2 encoder blocks, 2 blocks where each stream attends to the other and a
    cls token to both (time-aligned sinusoids, modality embeddings), one head on the cls token."""
    return _variant("cross_attention", 2, overrides, {"depth": 2}, head=HeadConfig(mode="mean"))


@register_model("eao_tiny")
def eao_tiny(**overrides: Any) -> AVModel:
    """Everything-at-Once's modality-agnostic block: 2 + 2 encoder blocks, 2 blocks over the tokens of whichever
    modalities are present (no position or modality embeddings), MLP ratio 4 like the encoders."""
    return _variant("agnostic", 2, overrides, {"depth": 2, "mlp_ratio": 4.0})


@register_model("uavm_tiny")
def uavm_tiny(**overrides: Any) -> AVModel:
    """UAVM: 2 + 2 modality-specific encoder blocks, 2 shared blocks and one shared head; one modality per training
    batch (audio with probability 0.5)."""
    return _variant("uavm", 2, overrides, {"depth": 2}, head=HeadConfig(mode="mean"))


@register_model("uavm_base")
def uavm_base(**overrides: Any) -> AVModel:
    """UAVM at the paper's scale: 3 modality-specific + 3 shared blocks, 1024 wide, 4 heads (the paper's encoders
    read frozen ConvNeXt features; these read the AST / video-ViT tokens of the fusion family's inputs)."""
    cfg = {"depth": 3, "num_heads": 4}
    return _variant("uavm", 3, overrides, cfg, width=1024, heads=4, head=HeadConfig(mode="mean"))
