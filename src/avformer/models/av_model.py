"""Audio-visual model: an audio encoder, a video encoder, a fusion module, a classifier and projection heads.

Papers:
    Zhu (2024), "Efficient Multiscale Multimodal Bottleneck Transformer for Audio-Video Classification" (MMT),
    https://arxiv.org/abs/2401.04023: MAT (audio) + MViTv2 (video) + AVBottleneck fusion, trained with cross-entropy
    plus AVC (supervised contrastive across audio and video) and IMC (within each modality).
    Nagrani et al., "Attention Bottlenecks for Multimodal Fusion" (MBT), https://arxiv.org/abs/2107.00135.

Composition (any registered encoders; a registered fusion decides whether and where they interact)::

    audio (B, 1, F, T) ---- audio_encoder --.                      .--> audio_pooled --audio_proj--> audio_emb (B, E)
                                            +-- fusion(...) -------+
    video (B, 3, T, H, W) - video_encoder --'  late: independent   '--> video_pooled --video_proj--> video_emb (B, E)
                                               bottleneck: through      |
                                               n_b tokens, last blocks  '--> head (FusionHead): logits (B, K),
                                                                             audio_logits, video_logits

The fusion is named in ``AVModelConfig.fusion`` and built from :mod:`avformer.fusion.registry`; the classifier head
(:class:`~avformer.fusion.head.FusionHead`, ``AVModelConfig.head``) is the same for every fusion.

Missing modalities are (B,) bool masks: ``has_audio=False`` for a sample means its audio input is ignored by the
fused prediction (and, with bottleneck fusion, by its video tokens); ``has_audio=torch.zeros(B, dtype=bool)`` is
video-only evaluation. The output type never changes: ``AVOutput``, whose ``audio_logits`` / ``video_logits`` are
None only when the fusion head has no per-modality heads (late ``mean`` / ``concat``).

What differs from MMT: losses (AVC, IMC, cross-entropy) live outside the model (``avformer.losses``); the model
returns the unnormalised projections ``audio_emb`` / ``video_emb`` they need. The projection heads (Linear-GELU-Linear
to ``proj_dim``, or one Linear) and the per-modality classifiers are our choices where the paper gives no details.
The registered ``mmt_*`` sizes are ours too (``mmt_base`` is the paper's pairing, MAT-Base with MViTv2-B).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from avformer.fusion.base import FusionResult, LatentMix, Mask, presence_mask
from avformer.fusion.bottleneck import BottleneckFusionConfig
from avformer.fusion.head import FusionHead, FusionLogits, HeadConfig
from avformer.fusion.registry import FusionEntry, get_fusion, list_fusions
from avformer.models.base import EncoderOutput
from avformer.models.registry import check_field_types, create_model, register_model

__all__ = ["AVFeatures", "AVModel", "AVModelConfig", "AVOutput", "build_with_overrides", "input_modality"]

# the classifier settings that configs written before the head was separate kept in fusion_config, per fusion
_OLD_HEAD_KEYS = {
    "late": {"mode": "mode", "drop_rate": "drop_rate"},
    "bottleneck": {"head": "mode", "drop_rate": "drop_rate"},
}


@dataclass
class AVOutput:
    """What ``AVModel.forward`` returns.

    Attributes:
        logits: (B, K) fused prediction from the present modalities.
        audio_logits: (B, K) audio-only prediction, None for fusion heads without per-modality heads.
        video_logits: (B, K) video-only prediction, likewise.
        audio_emb: (B, E) audio projection for contrastive losses (AVC / IMC), not normalised; None when the
            model was called with ``embed=False``.
        video_emb: (B, E) video projection, not normalised; None with ``embed=False``.
        audio_pooled: (B, D_a) audio encoder pooled feature (after fusion).
        video_pooled: (B, D_v) video encoder pooled feature.
        has_audio: (B,) bool mask used (all True when none was given).
        has_video: (B,) bool mask used.
        audio_alone_logits: (B, K) prediction from audio with video masked for every sample, as audio-only
            evaluation computes it; only with ``forward(alone=True)``, else None. Unlike ``audio_logits`` under
            bottleneck fusion, no video information reaches it.
        video_alone_logits: (B, K) likewise from video with audio masked.
        mix: the fusion mixed samples in training (SFT's latent mixup): ``logits`` (and the pooled features and
            embeddings) of sample ``i`` belong to ``lam[i]`` of it and ``1 - lam[i]`` of ``index[i]``.

    Per-modality outputs of a sample whose modality is absent are computed from whatever input was passed and carry
    no meaning: mask them with ``has_audio`` / ``has_video``.
    """

    logits: Tensor
    audio_logits: Tensor | None
    video_logits: Tensor | None
    audio_emb: Tensor | None
    video_emb: Tensor | None
    audio_pooled: Tensor
    video_pooled: Tensor
    has_audio: Tensor
    has_video: Tensor
    audio_alone_logits: Tensor | None = None
    video_alone_logits: Tensor | None = None
    mix: LatentMix | None = None


@dataclass
class AVFeatures:
    """Encoder outputs after fusion (``AVModel.forward_features``) with the resolved presence masks; with
    ``alone=True`` also each modality's outputs with the other one masked (``audio_alone`` / ``video_alone``)."""

    audio: EncoderOutput
    video: EncoderOutput
    has_audio: Tensor
    has_video: Tensor
    audio_alone: EncoderOutput | None = None
    video_alone: EncoderOutput | None = None
    mix: LatentMix | None = None
    fused: Tensor | None = None  # (B, D) the fusion's joint clip embedding, when it makes one (agnostic)


@dataclass(frozen=True)
class AVModelConfig:
    """An audio-visual model by names: encoders from the registry, a fusion kind with its settings, the heads.

    Attributes:
        audio_encoder: registered encoder name for the audio input (e.g. ``mat_tiny``, ``ast_base``).
        video_encoder: registered encoder name for the video input (e.g. ``mvit_v2_s_16x4``).
        audio_overrides: overrides for the audio encoder (config fields and runtime keys such as
            ``drop_path_rate``; not ``num_classes``: the heads belong to the AV model).
        video_overrides: the same for the video encoder.
        fusion: a registered fusion (``avformer.fusion.list_fusions()``: ``late``, ``bottleneck``, ...).
        fusion_config: the fusion's settings: its config instance, a mapping of its fields (YAML), or None for its
            defaults. Normalised to the config instance. (Old configs kept the head's ``mode`` / ``drop_rate``, or
            ``head`` / ``drop_rate`` for bottleneck, here; they are moved to ``head``.)
        head: the classifier over the pooled features (``HeadConfig``: ``mode`` logits / mean / concat, dropout),
            a mapping of its fields, or None for the defaults.
        num_classes: classifier outputs ``K`` (default: VGGSound's 309).
        proj_dim: width ``E`` of the contrastive projections.
        proj_mlp: Linear-GELU-Linear projection heads (hidden width = encoder width) if True, one Linear if False.
    """

    audio_encoder: str = "mat_tiny"
    video_encoder: str = "mvit_v2_s_16x4"
    audio_overrides: Mapping[str, Any] = field(default_factory=dict)
    video_overrides: Mapping[str, Any] = field(default_factory=dict)
    fusion: str = "bottleneck"
    fusion_config: Any = None
    head: HeadConfig | Mapping[str, Any] | None = None
    num_classes: int = 309
    proj_dim: int = 128
    proj_mlp: bool = True

    def __post_init__(self) -> None:
        check_field_types(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        entry = get_fusion(self.fusion)
        fc, head = self.fusion_config, self.head
        old_head: dict[str, Any] = {}
        if isinstance(fc, Mapping):
            fc = dict(fc)
            for old, new in _OLD_HEAD_KEYS.get(self.fusion, {}).items():
                if old in fc:
                    old_head[new] = fc.pop(old)
        if isinstance(head, HeadConfig):
            head = dataclasses.asdict(head)
        head = HeadConfig(**{**old_head, **dict(head or {})})
        object.__setattr__(self, "fusion_config", entry.make_config(fc))
        object.__setattr__(self, "head", head)
        for name in ("audio_overrides", "video_overrides"):
            ov = getattr(self, name)
            if "num_classes" in ov:
                raise ValueError(f"{name} must not set num_classes: the AV model owns the heads (use num_classes)")
            object.__setattr__(self, name, dict(ov))
        if self.num_classes < 1 or self.proj_dim < 1:
            raise ValueError(f"num_classes and proj_dim must be >= 1, got {self.num_classes}, {self.proj_dim}")


def _fusion_entry_of(cfg: Any) -> FusionEntry:
    """The registered fusion whose config type ``cfg`` is."""
    for entry in list_fusions():
        if type(cfg) is entry.config:
            return entry
    raise TypeError(f"{type(cfg).__name__} is not the config of a registered fusion")


def _head_keys_of_old_checkpoints(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Rename the classifier's keys of checkpoints written when the fusion module owned it: ``fusion.head.X``
    (bottleneck) or ``fusion.X`` (late) become ``head.X``, so runs trained before the head was separate still load."""
    own = set(module.state_dict())
    fusion_own = {k.removeprefix("fusion.") for k in own if k.startswith("fusion.")}
    for key in [k for k in state_dict if k.startswith(prefix + "fusion.")]:
        rest = key[len(prefix) + len("fusion.") :]
        if rest in fusion_own:
            continue  # a parameter of the fusion itself
        for new in (rest.removeprefix("head."), rest):
            if f"head.{new}" in own:
                state_dict[f"{prefix}head.{new}"] = state_dict.pop(key)
                break


def _projection(dim: int, proj_dim: int, mlp: bool) -> nn.Module:
    if mlp:
        return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, proj_dim))
    return nn.Linear(dim, proj_dim)


class AVModel(nn.Module):
    """Two encoders, a fusion module (interaction + classifier) and per-modality projection heads.

    Args:
        audio_encoder: a headless encoder (``num_classes == 0``) of the audio input; for bottleneck fusion it must
            follow ``avformer.fusion.bottleneck.STAGED_ENCODER_API`` (every multiscale and ViT encoder does).
        video_encoder: the same for video.
        fusion: a registered fusion's config instance (the module is built to fit the encoders), or a built fusion
            module (see :mod:`avformer.fusion.base`). Its ``init_weights()`` runs once the head is built.
        num_classes: classifier outputs ``K``.
        head: the classifier's settings (default ``HeadConfig()``: per-modality logits averaged).
        proj_dim: width ``E`` of ``audio_emb`` / ``video_emb``.
        proj_mlp: Linear-GELU-Linear projection heads (True) or one Linear (False).
    """

    input_kind = "audio+video"

    def __init__(
        self,
        audio_encoder: nn.Module,
        video_encoder: nn.Module,
        fusion: Any,
        num_classes: int,
        *,
        head: HeadConfig | None = None,
        proj_dim: int = 128,
        proj_mlp: bool = True,
    ) -> None:
        super().__init__()
        for enc, role in ((audio_encoder, "audio"), (video_encoder, "video")):
            if getattr(enc, "num_classes", 0):
                raise ValueError(f"the {role} encoder has a classifier (num_classes > 0); build it with num_classes=0")
        if num_classes < 1 or proj_dim < 1:
            raise ValueError(f"num_classes and proj_dim must be >= 1, got {num_classes}, {proj_dim}")
        self.audio_encoder = audio_encoder
        self.video_encoder = video_encoder
        da, dv = int(audio_encoder.num_features), int(video_encoder.num_features)
        if isinstance(fusion, nn.Module):
            self.fusion: nn.Module = fusion
        elif dataclasses.is_dataclass(fusion) and not isinstance(fusion, type):
            self.fusion = _fusion_entry_of(fusion).build(audio_encoder, video_encoder, fusion)
        else:
            raise TypeError(f"fusion must be a registered fusion's config or a module, got {type(fusion).__name__}")
        # the head is built before the fusion's init_weights(): the order that fixes the initial weights (and the
        # order the bottleneck fusion had when it owned the head)
        self.head = FusionHead(da, dv, num_classes, head or HeadConfig())
        init = getattr(self.fusion, "init_weights", None)
        if init is not None:
            init()
        self.num_classes = num_classes
        self.num_features = proj_dim  # width of audio_emb / video_emb
        self.audio_proj = _projection(da, proj_dim, proj_mlp)
        self.video_proj = _projection(dv, proj_dim, proj_mlp)
        self.cfg: AVModelConfig | None = None  # set by from_config
        self._register_load_state_dict_pre_hook(_head_keys_of_old_checkpoints, with_module=True)
        for proj in (self.audio_proj, self.video_proj):
            for m in proj.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    nn.init.zeros_(m.bias)

    # -- construction
    @classmethod
    def from_config(cls, cfg: AVModelConfig) -> AVModel:
        """Build the encoders by name (headless) and the fusion and heads from ``cfg``."""
        audio = create_model(cfg.audio_encoder, **cfg.audio_overrides, num_classes=0)
        video = create_model(cfg.video_encoder, **cfg.video_overrides, num_classes=0)
        head = cfg.head if isinstance(cfg.head, HeadConfig) else HeadConfig()  # normalised in the config
        model = cls(
            audio, video, cfg.fusion_config, cfg.num_classes, head=head, proj_dim=cfg.proj_dim, proj_mlp=cfg.proj_mlp
        )
        model.cfg = cfg
        return model

    @classmethod
    def from_names(cls, audio_encoder: str, video_encoder: str, **fields: Any) -> AVModel:
        """``from_config(AVModelConfig(audio_encoder, video_encoder, **fields))``: the encoders by registered name,
        any other field of :class:`AVModelConfig` by keyword (``fusion``, ``fusion_config``, ``num_classes``, ...)."""
        return cls.from_config(AVModelConfig(audio_encoder, video_encoder, **fields))

    # -- runtime switches
    def no_weight_decay(self) -> set[str]:
        """The encoders' (class tokens, position tables), the fusion's (bottleneck tokens) and the head's (absent-
        modality vectors), with their prefixes."""
        names: set[str] = set()
        for prefix, module in (
            ("audio_encoder", self.audio_encoder),
            ("video_encoder", self.video_encoder),
            ("fusion", self.fusion),
            ("head", self.head),
        ):
            names |= {f"{prefix}.{n}" for n in getattr(module, "no_weight_decay", set)()}
        return names

    def set_fused(self, fused: bool) -> None:
        """SDPA (True) or eager attention (False) in both encoders."""
        for enc in (self.audio_encoder, self.video_encoder):
            enc.set_fused(fused)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each encoder block in backward."""
        for enc in (self.audio_encoder, self.video_encoder):
            enc.set_grad_checkpointing(enable)

    # -- forward
    def forward_features(
        self, audio: Tensor, video: Tensor, has_audio: Mask = None, has_video: Mask = None, *, alone: bool = False
    ) -> AVFeatures:
        """Run the encoders through the fusion; see ``forward`` for the arguments."""
        B = audio.shape[0]
        has_a = presence_mask(has_audio, B, audio.device)
        has_v = presence_mask(has_video, B, audio.device)
        res: FusionResult = self.fusion(self.audio_encoder, self.video_encoder, audio, video, has_a, has_v, alone=alone)
        has_a = has_a if res.has_audio is None else res.has_audio  # a fusion that trains on one modality (UAVM)
        has_v = has_v if res.has_video is None else res.has_video
        return AVFeatures(res.audio, res.video, has_a, has_v, res.audio_alone, res.video_alone, res.mix, res.fused)

    def forward_head(self, feats: AVFeatures, *, embed: bool = True) -> AVOutput:
        """Classifier(s) and, with ``embed``, the contrastive projections on the pooled features."""
        out: FusionLogits = self.head(feats.audio.pooled, feats.video.pooled, feats.has_audio, feats.has_video)
        alone_a = alone_v = None
        if feats.audio_alone is not None and feats.video_alone is not None:
            on, off = torch.ones_like(feats.has_audio), torch.zeros_like(feats.has_audio)
            a1, v1 = feats.audio_alone.pooled, feats.video_alone.pooled
            alone_a = self.head(a1, v1, on, off).logits  # the fused head with one modality present, as in eval
            alone_v = self.head(a1, v1, off, on).logits
        return AVOutput(
            logits=out.logits,
            audio_logits=out.audio_logits,
            video_logits=out.video_logits,
            audio_emb=self.audio_proj(feats.audio.pooled) if embed else None,
            video_emb=self.video_proj(feats.video.pooled) if embed else None,
            audio_pooled=feats.audio.pooled,
            video_pooled=feats.video.pooled,
            has_audio=feats.has_audio,
            has_video=feats.has_video,
            audio_alone_logits=alone_a,
            video_alone_logits=alone_v,
            mix=feats.mix,
        )

    represent_modalities = ("video", "audio")

    def represent(
        self, video: Tensor, audio: Tensor, has_video: Mask = None, has_audio: Mask = None
    ) -> dict[str, Tensor]:
        """Per-clip representations for probes and retrieval, each from its own modality alone (the other masked
        for every sample, so no video reaches an audio representation through the fusion and retrieval cannot
        cheat): ``audio_pooled`` / ``video_pooled`` (encoder features) and ``audio_va`` / ``video_va`` (the
        contrastive projections AVC aligns, the audio-video common space); and ``av_fused``, the joint embedding of
        the present modalities together, for a fusion that makes one (Everything-at-Once's ``agnostic``)."""
        feats = self.forward_features(audio, video, has_audio, has_video, alone=True)
        assert feats.audio_alone is not None and feats.video_alone is not None
        a, v = feats.audio_alone.pooled, feats.video_alone.pooled
        out = {"audio_pooled": a, "video_pooled": v, "audio_va": self.audio_proj(a), "video_va": self.video_proj(v)}
        if feats.fused is not None:
            out["av_fused"] = feats.fused
        return out

    def forward(
        self,
        audio: Tensor,
        video: Tensor,
        has_audio: Mask = None,
        has_video: Mask = None,
        *,
        embed: bool = True,
        alone: bool = False,
    ) -> AVOutput:
        """Classify and embed a batch of clips.

        Args:
            audio: the audio encoder's input, e.g. (B, 1, F, T) log-mel. For samples without audio pass anything of
                that shape (zeros) and mark them in ``has_audio``.
            video: the video encoder's input, e.g. (B, 3, T, H, W).
            has_audio: (B,) bool, False where the clip has no audio; None = all present. All False = video only.
            has_video: (B,) bool, likewise for video. All False = audio only.
            embed: compute ``audio_emb`` / ``video_emb``; False skips the projection heads (a loss without AVC/IMC
                must, under DDP: parameters that reach the output but get no gradient are an error there).
            alone: also compute ``audio_alone_logits`` / ``video_alone_logits`` (each modality with the other masked;
                under bottleneck fusion each encoder's fused blocks run once more).
        """
        feats = self.forward_features(audio, video, has_audio, has_video, alone=alone)
        return self.forward_head(feats, embed=embed)


# ---- variants ----------------------------------------------------------------------------------------------------
#
# mmt_tiny pairs mat_tiny (8 blocks, widths 32-256, 1.7M params) with a tiny MViTv2 on 8 frames x 64²: patch stride
# (2, 4, 4) -> 4 x 16 x 16 tokens, 5 blocks (stages 1-1-2-1), widths 32-64-128-256, heads 1-2-4-8, kv_stride (1, 4, 4)
# (kv grid 4 x 4 x 4, as MViTv2-S keeps 8 x 7 x 7 at 224²). Both end at 256 wide; the last 2 blocks of each are fused
# (stage 3's last block at 128 and stage 4's widening block 128 -> 256), through 4 bottleneck tokens 256 wide.
# mmt_small / mmt_base fuse the last 4 blocks (MBT's best L_f = 8 of 12 fuses 4 layers).

_MVIT_TINY_8X64: dict[str, Any] = {
    "input_size": (8, 64, 64),
    "embed_dim": 32,
    "num_heads": 1,
    "stages": ((1, (1, 1, 1), 1, 1), (1, (1, 2, 2), 2, 2), (2, (1, 2, 2), 4, 4), (1, (1, 2, 2), 8, 8)),
    "kv_stride": (1, 4, 4),
}


def _with_overrides(base: AVModelConfig, overrides: Mapping[str, Any]) -> AVModelConfig:
    """``base`` with ``overrides``; mappings given for ``audio_overrides`` / ``video_overrides`` / ``fusion_config``
    update the variant's own key by key (a config instance replaces it). Unknown keys raise ``TypeError``."""
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise TypeError(
            f"unknown override(s) {unknown} for AVModelConfig; valid config fields: {sorted(fields)}; encoder "
            "architecture fields (embed_dim, depth, stages, ...) go into audio_overrides={...} / video_overrides={...}"
        )
    new = dict(overrides)
    for key in ("audio_overrides", "video_overrides"):
        if isinstance(new.get(key), Mapping):
            new[key] = {**getattr(base, key), **new[key]}
    fc = new.get("fusion_config")
    if isinstance(fc, Mapping) and new.get("fusion", base.fusion) == base.fusion:
        new["fusion_config"] = {**dataclasses.asdict(base.fusion_config), **fc}
    if isinstance(new.get("head"), Mapping):
        assert isinstance(base.head, HeadConfig)  # normalised in __post_init__
        new["head"] = {**dataclasses.asdict(base.head), **new["head"]}
    return dataclasses.replace(base, **new)


def build_with_overrides(base: AVModelConfig, overrides: Mapping[str, Any]) -> AVModel:
    """The model of ``base`` updated by a variant's ``overrides`` (see ``_with_overrides``)."""
    return AVModel.from_config(_with_overrides(base, overrides))


def _mmt(
    audio_encoder: str, video_encoder: str, fusion_layers: int, overrides: Mapping[str, Any], **fields: Any
) -> AVModel:
    """An MMT variant: the two encoders fused through 4 bottleneck tokens over their last ``fusion_layers`` blocks."""
    fusion_config = BottleneckFusionConfig(num_bottleneck_tokens=4, fusion_layers=fusion_layers)
    base = AVModelConfig(audio_encoder, video_encoder, fusion="bottleneck", fusion_config=fusion_config, **fields)
    return build_with_overrides(base, overrides)


@register_model("mmt_tiny")
def mmt_tiny(**overrides: Any) -> AVModel:
    """MMT-Tiny: mat_tiny + a 5-block MViTv2 on 8 x 64² frames, bottleneck over the last 2 blocks; CPU-trainable."""
    return _mmt("mat_tiny", "mvit_v2_s_16x4", 2, overrides, video_overrides=dict(_MVIT_TINY_8X64))


@register_model("mmt_small")
def mmt_small(**overrides: Any) -> AVModel:
    """MMT-Small: mat_small + MViTv2-S (16 x 224²), 4 bottleneck tokens over the last 4 blocks (768 wide)."""
    return _mmt("mat_small", "mvit_v2_s_16x4", 4, overrides)


@register_model("mmt_base")
def mmt_base(**overrides: Any) -> AVModel:
    """MMT-Base: mat_base + MViTv2-B (32 x 224²), the paper's pairing; bottleneck over the last 4 blocks."""
    return _mmt("mat_base", "mvit_v2_b_32x3", 4, overrides)


@register_model("av_late_tiny")
def av_late_tiny(**overrides: Any) -> AVModel:
    """Late-fusion baseline at mmt_tiny's size: the same encoders, no interaction, averaged per-modality logits."""
    base = AVModelConfig(
        audio_encoder="mat_tiny",
        video_encoder="mvit_v2_s_16x4",
        video_overrides=dict(_MVIT_TINY_8X64),
        fusion="late",
        head=HeadConfig(mode="logits"),
    )
    return build_with_overrides(base, overrides)


def input_modality(model: nn.Module) -> str:
    """``"av"`` for an :class:`AVModel`, else the batch key a single encoder reads (``"audio"`` / ``"video"``)."""
    if isinstance(model, AVModel):
        return "av"
    kind = getattr(model, "input_kind", None)
    if kind in ("spectrogram", "waveform"):
        return "audio"
    if kind == "video":
        return "video"
    raise TypeError(f"{type(model).__name__} declares no input_kind ('spectrogram', 'waveform' or 'video')")
