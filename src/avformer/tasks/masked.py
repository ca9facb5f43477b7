"""Masked audio-video pretraining tasks: ``mae`` (reconstruction only), ``cav_mae`` (reconstruction + audio-video
InfoNCE) and ``mavil`` (MAViL, stage 1 or 2).

Papers:
    MAE: He et al. 2022, https://arxiv.org/abs/2111.06377 (code facebookresearch/mae).
    CAV-MAE: Gong et al., ICLR 2023, https://arxiv.org/abs/2210.07839 (code YuanGongND/cav-mae).
    MAViL: Huang et al., "MAViL: Masked Audio-Video Learners", NeurIPS 2023, https://arxiv.org/abs/2212.08071
        (no official code was released).
The masking, patch targets, decoders and reconstruction loss are :mod:`avformer.models.masked`; the contrastive terms
are :func:`avformer.losses.info_nce`.

The model is a VATT (``vatt_*``) with patch tokenizers that can be masked (``video_stem: linear``, ``audio_input:
spectrogram`` or waveform, ``audio_stem: linear``); its two towers are the modality-specific encoders. The task
attaches its own modules as ``model.task_heads`` (:mod:`avformer.models.task_heads`): a decoder per modality and,
with ``fusion_depth > 0``, joint blocks. A probe, ``embed`` or fine-tuning reads the towers only::

    audio ─ mask (audio_mask_ratio) ─ audio tower ─ visible tokens ─┐       ┌─ audio decoder ─ patches (B, Na, P_a)
                                                pooled ─ va head ─ z_a  │       │
                                                             joint blocks ─┤   (fusion_depth; 0: none)
    video ─ mask (video_mask_ratio) ─ video tower ─ visible tokens ─┘       └─ video decoder ─ patches (B, Nv, P_v)
                                                pooled ─ va head ─ z_v

    mae:      loss = recon_weight · (L_rec(audio) + L_rec(video))
    cav_mae:  loss = recon_weight · (L_rec(audio) + L_rec(video)) + inter_weight · InfoNCE(z_a, z_v)
    mavil 1:  loss = recon_weight · (L_rec(a1) + L_rec(v1)) + inter_weight · (InfoNCE(z_a1, z_v1) + InfoNCE(z_a2,
              z_v2)) / 2 + intra_weight · (InfoNCE(z_a1, z_a2) + InfoNCE(z_v1, z_v2)) / 2
              (a1 / a2: two independently masked views of the same audio; v1 / v2 of the same video; with
              intra_weight 0 there is no second view and the inter-modal term is view 1's alone)
    mavil 2:  as stage 1, but the decoders predict the contextualised features of a frozen teacher (the stage-1 model)
              that sees the whole, unmasked clip: its joint blocks' output per token (its towers' tokens when
              ``fusion_depth: 0``), instead of raw patches; MSE on the masked tokens.

Stage 2 gets its teacher from the previous stage of a multi-stage config (``stages:``, see
:mod:`avformer.config`): the composition loads the previous stage's final weights into the model and calls the task's
``from_previous_stage(state)``, which freezes a copy (towers + joint blocks) as the teacher. The student starts from
the same weights (decoder blocks included; the decoders' last Linear is new: it predicts features, not patches).
A resumed stage 2 rebuilds the same teacher from the same stage-1 checkpoint.

Choices (MAViL left them open; CAV-MAE / MAE where they decide), each an option:
    * Joint blocks: CAV-MAE's joint layer is one block over the concatenated visible tokens (with modality
      embeddings); MAViL's fusion encoder is a shallow transformer over both. Defaults: ``cav_mae`` 1 block,
      ``mavil`` 2 blocks, ``mae`` 0 (each modality alone).
    * Contrastive features: the towers' pooled outputs of the masked inputs (CAV-MAE: mean of the visible tokens
      after the joint layer run on each modality alone; MAViL: the encoders' pooled outputs). With
      ``projection: va_head`` (default) they go through VATT's video-audio heads (MLP + BN, what the VATT recipe
      needs against collapse and what ``embed`` / retrieval read); ``none`` uses them as they are (CAV-MAE).
      InfoNCE is symmetric (:func:`~avformer.losses.info_nce`; CAV-MAE's default is one direction).
      ``inter_video_mask_ratio`` / ``inter_audio_mask_ratio`` (ours, off by default) move the audio-video term to
      a separate, lighter-masked pass (0: the whole input); MAViL's intra-modal term stays on the masked views.
    * Temperatures and weights: CAV-MAE uses T = 0.05 and a contrastive weight of 0.01 at AudioSet scale; MAViL
      does not give ours. Defaults here: T = 0.1, ``inter_weight`` 0.1 for ``cav_mae``; ``mavil`` the same plus
      ``intra_weight`` 0.1 (tune per data set: the AV-Digits recipes set them).
    * Reconstruction: per-patch normalised targets (``norm_pix``, default True; MAE's ``norm_pix_loss``), the
      audio and video losses summed (CAV-MAE); MAViL reconstructs from view 1 only (view 2 feeds the contrastive
      terms). Stage 2's feature targets are layer-normalised per token (``norm_targets``, as data2vec does; the
      paper does not say) and the loss counts masked tokens only (``feature_loss_on: masked``; ``all`` counts
      every token).
    * Clips missing a modality (``has_audio`` / ``has_video`` False) drop out of that modality's reconstruction
      and of the contrastive pairs; the joint blocks still see their (zero-input) tokens.

Validation: reconstruction losses on the val clips under fixed masks (the same every evaluation), and audio↔video
retrieval (``a2v_mAP`` with labels) on the unmasked clips' embeddings (the va heads' outputs; the pooled features
for ``mae`` or ``projection: none``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.layers.vit_block import Block
from avformer.losses import info_nce
from avformer.metrics.retrieval import retrieval_report
from avformer.models.base import EncoderOutput
from avformer.models.masked import (
    DecoderConfig,
    MaskedDecoder,
    TokenMask,
    check_maskable,
    hide_masked,
    mask_for,
    masked_mse,
    normalize_patches,
    patch_geometry,
    patch_targets,
    reconstruction_loss,
    unpatchify,
)
from avformer.models.task_heads import attach_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.base import Batch, av_present, one_view_keys
from avformer.tasks.registry import TaskData, register_task
from avformer.utils.distributed import world_size

__all__ = [
    "CAVMAEOptions",
    "JointBlocks",
    "MAEOptions",
    "MAViLOptions",
    "MaskedAVTask",
    "Reconstruction",
]

_MODALITIES = ("audio", "video")
_PROJECTIONS = ("va_head", "none")
_FEATURE_LOSS_ON = ("masked", "all")
_VAL_SEED = 1234  # the validation masks: the same clips get the same masks at every evaluation


# ---- options ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MAEOptions:
    """Options of the ``mae`` task (reconstruction of both modalities, no cross-modal term by default)."""

    audio_mask_ratio: float = 0.8  # AudioMAE / MAViL: 0.8
    video_mask_ratio: float = 0.9  # VideoMAE / MAViL: 0.9 (tubelets are redundant in time)
    norm_pix: bool = True  # per-patch normalised targets (MAE's norm_pix_loss)
    recon_weight: float = 1.0  # on L_rec(audio) + L_rec(video)
    decoder_dim: int = 128  # decoder width (MAE: 512)
    decoder_depth: int = 2  # decoder blocks (MAE: 8)
    decoder_heads: int = 4
    fusion_depth: int = 0  # joint blocks over both modalities' visible tokens before the decoders (0: none)

    def __post_init__(self) -> None:
        for name in ("audio_mask_ratio", "video_mask_ratio"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        if self.recon_weight < 0:
            raise ValueError(f"recon_weight must be >= 0, got {self.recon_weight}")
        if self.fusion_depth < 0:
            raise ValueError(f"fusion_depth must be >= 0, got {self.fusion_depth}")
        DecoderConfig(self.decoder_dim, self.decoder_depth, self.decoder_heads)  # raises on a bad size

    @property
    def decoder(self) -> DecoderConfig:
        return DecoderConfig(self.decoder_dim, self.decoder_depth, self.decoder_heads)


@dataclass(frozen=True)
class CAVMAEOptions(MAEOptions):
    """Options of the ``cav_mae`` task: :class:`MAEOptions` plus the audio-video InfoNCE."""

    fusion_depth: int = 1  # CAV-MAE: one joint layer
    inter_weight: float = 0.1  # audio-video InfoNCE (CAV-MAE: 0.01 at AudioSet scale)
    temperature: float = 0.1  # CAV-MAE: 0.05
    projection: str = "va_head"  # "va_head": VATT's video-audio heads | "none": the pooled features (CAV-MAE)
    # the audio-video InfoNCE on a separate pass masked at these ratios (0: unmasked) instead of on the
    # reconstruction view (None, both: CAV-MAE and MAViL); costs one more pass per modality
    inter_video_mask_ratio: float | None = None
    inter_audio_mask_ratio: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        ratios = (self.inter_video_mask_ratio, self.inter_audio_mask_ratio)
        if (ratios[0] is None) != (ratios[1] is None):
            raise ValueError("inter_video_mask_ratio and inter_audio_mask_ratio are set together (or neither)")
        for name, v in zip(("inter_video_mask_ratio", "inter_audio_mask_ratio"), ratios, strict=True):
            if v is not None and not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {v}")
        if self.inter_weight < 0:
            raise ValueError(f"inter_weight must be >= 0, got {self.inter_weight}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.projection not in _PROJECTIONS:
            raise ValueError(f"projection must be one of {_PROJECTIONS}, got {self.projection!r}")


@dataclass(frozen=True)
class MAViLOptions(CAVMAEOptions):
    """Options of the ``mavil`` task: :class:`CAVMAEOptions` plus the intra-modal term and stage 2."""

    stage: int = 1  # 1: raw-patch reconstruction; 2: reconstruct a frozen stage-1 teacher's fused features
    fusion_depth: int = 2  # MAViL's fusion encoder
    intra_weight: float = 0.1  # InfoNCE between two masked views of the same modality (audio and video, averaged)
    intra_temperature: float = 0.1
    norm_targets: bool = True  # stage 2: layer-normalise the teacher's features per token (no affine)
    feature_loss_on: str = "masked"  # stage 2: "masked" tokens only | "all" tokens

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.intra_weight < 0:
            raise ValueError(f"intra_weight must be >= 0, got {self.intra_weight}")
        if self.intra_temperature <= 0:
            raise ValueError(f"intra_temperature must be > 0, got {self.intra_temperature}")
        if self.feature_loss_on not in _FEATURE_LOSS_ON:
            raise ValueError(f"feature_loss_on must be one of {_FEATURE_LOSS_ON}, got {self.feature_loss_on!r}")


# ---- parts --------------------------------------------------------------------------------------------------------
class JointBlocks(nn.Module):
    """Transformer blocks over ``[audio tokens ; video tokens]`` with a learned embedding per modality (CAV-MAE's
    joint layer, MAViL's fusion encoder); the output is split back per modality.

    Args:
        dims: token widths ``(D_audio, D_video)``; a modality of another width than video's is mapped linearly.
        depth, num_heads, mlp_ratio: the blocks.
    """

    def __init__(self, dims: tuple[int, int], depth: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        da, dv = dims
        self.dim = dv
        self.audio_in: nn.Module = nn.Linear(da, dv) if da != dv else nn.Identity()
        self.modality = nn.Parameter(torch.zeros(2, dv))
        self.blocks = nn.ModuleList(Block(dv, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dv, eps=1e-6)
        nn.init.normal_(self.modality, std=0.02)

    def forward(self, audio: Tensor, video: Tensor) -> tuple[Tensor, Tensor]:
        """``audio`` (B, Na, Da), ``video`` (B, Nv, Dv) -> both (B, N*, Dv) after the blocks and a final norm."""
        na = audio.shape[1]
        x = torch.cat([self.audio_in(audio) + self.modality[0], video + self.modality[1]], dim=1)  # (B, Na+Nv, D)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, :na], x[:, na:]


@dataclass
class Reconstruction:
    """One modality's pictures for :mod:`avformer.eval.reconstruction`, each (B, C, *size) on the CPU.

    Attributes:
        modality: ``audio`` or ``video``.
        input: the model's input (normalised, as the encoder saw it).
        masked: the input with the masked patches set to NaN (drawn blank).
        reconstruction: the visible patches of the input, the masked ones predicted (with ``norm_pix`` the
            prediction is de-normalised with the true patch's mean and std, as MAE's visualisation does).
        mask_ratio: the fraction of patches masked.
        norm_pix: the model predicts per-patch normalised values (the masked patches' levels come from the input).
    """

    modality: str
    input: Tensor
    masked: Tensor
    reconstruction: Tensor
    mask_ratio: float
    norm_pix: bool = False


@dataclass
class _View:
    """One masked pass of one modality."""

    out: EncoderOutput
    mask: TokenMask


# ---- the task -----------------------------------------------------------------------------------------------------
class MaskedAVTask:
    """Masked reconstruction of audio and video, with optional InfoNCE terms and MAViL's stage 2.

    Args:
        model: a VATT model whose video and audio towers can be masked (:func:`~avformer.models.masked.check_maskable`).
        options: :class:`MAEOptions`, :class:`CAVMAEOptions` or :class:`MAViLOptions`.
        name: the registered task name (for messages).
    """

    def __init__(self, model: VisionAudioTextTransformer, options: MAEOptions, name: str) -> None:
        self.model = model
        self.options = options
        self.name = name
        self.stage = options.stage if isinstance(options, MAViLOptions) else 1
        enc = {m: model.encoders[m] for m in _MODALITIES}
        for m in _MODALITIES:
            check_maskable(enc[m], f"{m} encoder")
        dims = (enc["audio"].embed_dim, enc["video"].embed_dim)
        heads: dict[str, nn.Module] = {}
        if options.fusion_depth > 0:
            heads["fusion"] = JointBlocks(dims, options.fusion_depth, enc["video"].cfg.num_heads)
        dec_in = {"audio": dims[1] if options.fusion_depth else dims[0], "video": dims[1]}
        for m in _MODALITIES:
            out_dim = dec_in[m] if self.stage == 2 else self._patch_dim(m)
            heads[f"decoder_{m}"] = MaskedDecoder(dec_in[m], out_dim, options.decoder)
        self.heads = attach_task_heads(model, heads)
        self.teacher: nn.ModuleDict | None = None  # stage 2: set by from_previous_stage
        self.unused_parameters = True  # the text tower (and va heads without contrastive terms) get no gradient
        self.last_outputs: dict[str, Tensor] | None = None
        self._val_batches = 0
        # the terms' weights and temperatures (0: the task has no such term)
        self._inter = float(getattr(options, "inter_weight", 0.0))
        self._intra = float(getattr(options, "intra_weight", 0.0))
        self._temperature = float(getattr(options, "temperature", 0.1))
        self._intra_temperature = float(getattr(options, "intra_temperature", 0.1))
        self._projection = str(getattr(options, "projection", "none"))

    # -- geometry
    def _patch_dim(self, modality: str) -> int:
        cfg = self.model.cfg
        shape = cfg.audio_input_shape if modality == "audio" else (cfg.in_chans, cfg.num_frames, *(cfg.img_size,) * 2)
        _, patch = patch_geometry(self.model.encoders[modality], shape)
        return math.prod(patch) * shape[0]

    def _project(self, modality: str, pooled: Tensor) -> Tensor:
        if self._projection == "none":
            return pooled
        head = self.model.head_audio_va if modality == "audio" else self.model.head_video_va
        return head(pooled)

    # -- stage 2
    def from_previous_stage(self, state: Mapping[str, Tensor]) -> None:
        """Called by the composition of a multi-stage run once ``state`` (the previous stage's final weights) is
        loaded into the model: stage 2 freezes a copy of the towers and joint blocks as its teacher."""
        if self.stage != 2:
            return
        parts = {m: (f"encoders.{m}.", self.model.encoders[m]) for m in _MODALITIES}
        if "fusion" in self.heads:
            parts["fusion"] = ("task_heads.fusion.", self.heads["fusion"])
        for prefix, module in parts.values():
            missing = [prefix + k for k in module.state_dict() if prefix + k not in state]
            if missing:  # e.g. another fusion_depth in stage 2: the teacher would be a fresh module
                raise ValueError(
                    f"{self.name} stage 2: the teacher must be the previous stage's model, but {missing[0]} (and "
                    f"{len(missing) - 1} more) did not come from it; keep the architecture (fusion_depth, model) of "
                    "stage 1"
                )
        teacher = nn.ModuleDict({name: copy.deepcopy(module) for name, (_, module) in parts.items()})
        teacher.requires_grad_(False)
        self.teacher = teacher.eval()

    @torch.no_grad()
    def teacher_features(self, audio: Tensor, video: Tensor) -> dict[str, Tensor]:
        """The teacher's contextualised features of the unmasked clip, per token: ``{audio: (B, Na, D), video:
        (B, Nv, D)}`` (layer-normalised per token with ``norm_targets``)."""
        if self.teacher is None:
            raise RuntimeError(
                f"{self.name} stage 2 has no teacher: run it as a later stage of a `stages:` config (the previous "
                "stage trains stage 1), e.g. configs/experiment/ssl/av_digits_mavil.yaml"
            )
        t = self.teacher
        if next(t.parameters()).device != video.device:
            t.to(video.device)
        t.eval()
        a, v = t["audio"].forward_features(audio).tokens, t["video"].forward_features(video).tokens
        if "fusion" in t:
            a, v = t["fusion"](a, v)
        out = {"audio": a.float(), "video": v.float()}
        if getattr(self.options, "norm_targets", True):
            out = {m: F.layer_norm(x, x.shape[-1:]) for m, x in out.items()}
        return out

    # -- forward pieces
    def _masked_view(
        self, modality: str, x: Tensor, generator: torch.Generator | None = None, ratio: float | None = None
    ) -> _View:
        if ratio is None:
            ratio = self.options.audio_mask_ratio if modality == "audio" else self.options.video_mask_ratio
        enc = self.model.encoders[modality]
        m = mask_for(enc, x, ratio, generator=generator, what=f"{modality} encoder")
        return _View(enc.forward_features(hide_masked(enc, x, m.mask), keep=m.keep), m)

    def _inter_features(self, batch: Batch) -> dict[str, Tensor]:
        """The projected features of the audio-video InfoNCE from a separate pass masked at ``inter_*_mask_ratio``
        (0: the whole input)."""
        out = {}
        for m in _MODALITIES:
            r = float(getattr(self.options, f"inter_{m}_mask_ratio"))
            if r == 0.0:
                pooled = self.model.encoders[m].forward_features(batch[m]).pooled
            else:
                pooled = self._masked_view(m, batch[m], ratio=r).out.pooled
            out[m] = self._project(m, pooled)
        return out

    def _decode(self, views: dict[str, _View]) -> dict[str, Tensor]:
        """Decoder predictions (B, N, P) per modality from the visible tokens (through the joint blocks)."""
        tokens = {m: views[m].out.tokens for m in _MODALITIES}
        if "fusion" in self.heads:
            tokens["audio"], tokens["video"] = self.heads["fusion"](tokens["audio"], tokens["video"])
        return {m: self.heads[f"decoder_{m}"](tokens[m], views[m].mask.keep, views[m].out.grid) for m in _MODALITIES}

    def _recon_terms(
        self, batch: Batch, views: dict[str, _View], present: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-modality reconstruction losses (0-d) and the predictions."""
        pred = self._decode(views)
        terms: dict[str, Tensor] = {}
        feats = self.teacher_features(batch["audio"], batch["video"]) if self.stage == 2 else {}
        for m in _MODALITIES:
            mask = views[m].mask.mask & present[m][:, None]  # (B, N): masked tokens of clips that have m
            if self.stage == 2:
                on = mask if getattr(self.options, "feature_loss_on", "masked") == "masked" else present[m][:, None]
                terms[f"feat_{m}"] = masked_mse(pred[m], feats[m], on.expand_as(mask))
            else:
                t = patch_targets(self.model.encoders[m], batch[m])
                terms[f"recon_{m}"] = reconstruction_loss(pred[m], t, mask, norm_pix=self.options.norm_pix)
        return terms, pred

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        opt = self.options
        has_a, has_v = av_present(batch)
        present = {"audio": has_a, "video": has_v}
        views = {m: self._masked_view(m, batch[m]) for m in _MODALITIES}
        rec, _ = self._recon_terms(batch, views, present)
        terms: dict[str, Tensor] = {k: opt.recon_weight * v for k, v in rec.items()}
        logs: dict[str, float] = {k: float(v.detach()) for k, v in rec.items()}
        if self._inter > 0 or self._intra > 0:
            separate = getattr(opt, "inter_video_mask_ratio", None) is not None
            z1 = {m: self._project(m, views[m].out.pooled) for m in _MODALITIES}
            za = self._inter_features(batch) if separate else z1
            t = self._temperature
            inter = [info_nce(za["audio"], za["video"], t, a_mask=has_a, b_mask=has_v)]
            if self._intra > 0:  # MAViL: a second masked view of each modality
                views2 = {m: self._masked_view(m, batch[m]) for m in _MODALITIES}
                z2 = {m: self._project(m, views2[m].out.pooled) for m in _MODALITIES}
                if not separate:  # the second views' pairs too (with a separate pass: that pass's pairs only)
                    inter.append(info_nce(z2["audio"], z2["video"], t, a_mask=has_a, b_mask=has_v))
                t2 = self._intra_temperature
                intra = {m: info_nce(z1[m], z2[m], t2, a_mask=present[m], b_mask=present[m]) for m in _MODALITIES}
                terms["intra"] = self._intra * (intra["audio"] + intra["video"]) / 2
                logs |= {f"intra_{m}": float(v.detach()) for m, v in intra.items()}
            if self._inter > 0:
                nce = torch.stack(inter).mean()
                terms["inter"] = self._inter * nce
                logs["inter"] = float(nce.detach())
        loss = torch.stack(list(terms.values())).sum()
        return loss, logs

    def chance_losses(self, batch_size: int) -> dict[str, float]:
        """The InfoNCE terms at ``ln B`` (one positive among ``B`` candidates). The reconstruction terms have no
        such value (a norm-pix decoder that predicts each patch's mean scores about 1; raw targets depend on the
        data), so they are not listed."""
        log_b = math.log(max(batch_size, 2))
        out = {"inter": log_b} if self._inter > 0 else {}
        return out | ({f"intra_{m}": log_b for m in _MODALITIES} if self._intra > 0 else {})

    # -- validation
    def _val_generator(self) -> torch.Generator:
        self._val_batches += 1
        return torch.Generator().manual_seed(_VAL_SEED + self._val_batches)

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, self.name)
        g = self._val_generator()
        views = {m: self._masked_view(m, batch[m], generator=g) for m in _MODALITIES}
        pred = self._decode(views)
        target = self.teacher_features(batch["audio"], batch["video"]) if self.stage == 2 else None
        for m in _MODALITIES:
            if target is None:
                t = patch_targets(self.model.encoders[m], batch[m]).float()
                if self.options.norm_pix:
                    t = normalize_patches(t)
                name = f"recon_{m}"
            else:
                t, name = target[m], f"feat_{m}"
            per_token = (pred[m].float() - t).pow(2).mean(-1)  # (B, N)
            mask = views[m].mask.mask.float()
            res[name] = (per_token * mask).sum(1) / mask.sum(1)  # (B,) per clip
        feats = {m: self.model.encode(m, batch[m]).pooled for m in _MODALITIES}  # unmasked clips
        use_head = (self._inter > 0 or self._intra > 0) and self._projection != "none"
        for m in _MODALITIES:
            res[f"{m}_emb"] = (self._project(m, feats[m]) if use_head else feats[m]).float()
        return res

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        self._val_batches = 0
        out = retrieval_report(
            outputs["video_emb"],
            outputs["audio_emb"],
            outputs.get("label"),
            has_video=outputs["has_video"],
            has_audio=outputs["has_audio"],
        )
        for m in _MODALITIES:
            for kind in ("recon", "feat"):
                key = f"{kind}_{m}"
                if key in outputs:
                    ok = outputs[f"has_{m}"].bool()
                    out[key] = float(outputs[key][ok].mean()) if ok.any() else math.nan
        return out

    # -- pictures
    @torch.no_grad()
    def reconstruct(self, batch: Batch, seed: int = 0) -> dict[str, Reconstruction]:
        """Input, masked input and reconstruction per modality for the clips of ``batch`` (eval mode, fixed masks
        from ``seed``); empty in stage 2 (its decoders predict features, not patches)."""
        if self.stage == 2:
            return {}
        g = torch.Generator().manual_seed(seed)
        views = {m: self._masked_view(m, batch[m], generator=g) for m in _MODALITIES}
        pred = self._decode(views)
        out: dict[str, Reconstruction] = {}
        for m in _MODALITIES:
            enc, x = self.model.encoders[m], batch[m]
            target = patch_targets(enc, x).float()
            p = pred[m].float()
            if self.options.norm_pix:  # MAE's visualisation: the true patch's statistics
                p = p * (target.var(-1, keepdim=True) + 1e-6).sqrt() + target.mean(-1, keepdim=True)
            mask = views[m].mask.mask[..., None]
            (grid, patch), c = patch_geometry(enc, tuple(x.shape[1:])), x.shape[1]
            out[m] = Reconstruction(
                modality=m,
                input=unpatchify(target, grid, patch, c).cpu(),
                masked=unpatchify(target.masked_fill(mask, math.nan), grid, patch, c).cpu(),
                reconstruction=unpatchify(torch.where(mask, p, target), grid, patch, c).cpu(),
                mask_ratio=float(views[m].mask.mask.float().mean()),
                norm_pix=self.options.norm_pix,
            )
        return out


# ---- registration -------------------------------------------------------------------------------------------------
def _check_model(model: nn.Module, name: str, data: TaskData) -> VisionAudioTextTransformer:
    if world_size() > 1:
        raise ValueError(f"task {name} runs in one process (not under torchrun): its heads run outside forward")
    if not isinstance(model, VisionAudioTextTransformer):
        raise TypeError(
            f"task {name} needs a VATT model with patch tokenizers (e.g. vatt_tiny with video_stem: linear, "
            f"audio_input: spectrogram), got {type(model).__name__}"
        )
    if set(data.modalities) != {"video", "audio"}:
        raise ValueError(f"task {name} reads video and audio: set data.modalities to [video, audio]")
    return model


@register_task("mae", options=MAEOptions, supervised=False)
def build_mae(model: nn.Module, options: MAEOptions, data: TaskData) -> MaskedAVTask:
    """MAE on audio and video: reconstruct the masked patches of each (no cross-modal term)."""
    return MaskedAVTask(_check_model(model, "mae", data), options, "mae")


@register_task("cav_mae", options=CAVMAEOptions, supervised=False)
def build_cav_mae(model: nn.Module, options: CAVMAEOptions, data: TaskData) -> MaskedAVTask:
    """CAV-MAE-style: masked reconstruction through joint blocks + audio-video InfoNCE."""
    return MaskedAVTask(_check_model(model, "cav_mae", data), options, "cav_mae")


@register_task("mavil", options=MAViLOptions, supervised=False)
def build_mavil(model: nn.Module, options: MAViLOptions, data: TaskData) -> MaskedAVTask:
    """MAViL: stage 1 reconstruction + inter/intra-modal InfoNCE; stage 2 reconstructs a frozen teacher's features."""
    return MaskedAVTask(_check_model(model, "mavil", data), options, "mavil")
