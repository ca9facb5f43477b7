"""XKD: masked reconstruction + cross-modal knowledge distillation with domain alignment, as a self-supervised task.

Paper: Sarkar & Etemad 2024, "XKD: Cross-modal Knowledge Distillation with Domain Alignment for Video Representation
Learning" (AAAI), https://arxiv.org/abs/2211.13929; official code pritamqu/XKD (``codes/train/models/xkd.py``,
``xkd_mats.py``, ``models/modules/loss.py``, ``projector.py``, ``main_xkd.py``,
``configs/pretext/kinetics400/xkd.yaml``), read for the details below, not copied. Per step, for each clip::

    student (trained)                                       teacher (EMA of the student, no gradient)
    video ─ mask 85 % ─ encoder ─┬─ decoder ─▶ recon_v      video (full) ─ encoder' ─ refine ─ mean ─ head' ─▶ t_v
                                 └─ mean ─ head ─▶ s_v,masked
    video (full) ─ encoder ─ mean ─ head ─▶ s_v,full         audio (full) ─ encoder' ─ refine ─ mean ─ head' ─▶ t_a
    audio: the same with 80 % masked                         (refine: XKD's attention-based feature refinement)

    kd_v→a = mean over the audio student's views of CE(softmax((t_v - c_v) / τ_v), s_a / τ_s)   video teaches audio
    kd_a→v = mean over the video student's views of CE(softmax((t_a - c_a) / τ_a), s_v / τ_s)   audio teaches video
    align  = (MMD(s_v, s_a) + MMD(t_v, t_a)) / 2          the teacher term carries no gradient (as in the code)
    loss   = (recon_weight · (recon_v + recon_a) / 2 + kd_weight · (kd_v→a + kd_a→v) / 2 + align_weight · align)
             / (recon_weight + kd_weight + align_weight)

The distillation parts (projection head, centring, sharpening, soft CE, momentum update, MMD, refinement) are in
:mod:`avformer.losses.distill`; masking, patch targets, decoders and the reconstruction loss in
:mod:`avformer.models.masked`.

Taken from the official code (``xkd.yaml`` unless said otherwise):
    * Mask ratios 0.85 (video) and 0.80 (audio); per-patch normalised reconstruction targets (``norm_pix_loss``).
    * One DINO head per modality and role (student, teacher) on the *mean of the output tokens* (not a CLS token),
      ``2048-gelu-3-256-8192-norm3``: 3 Linear layers with LayerNorm + GELU, bottleneck 256, L2-norm, unit-row last
      layer to K = 8192, affine-free LayerNorm on the output (the widths are options; smaller defaults here).
    * One centre per teacher modality, momentum 0.9, starting at 0, updated from the raw teacher outputs after the
      loss. Teacher temperatures 0.1 (video) and 0.07 (audio), with a linear warmup option (the official warmup is
      from the same values, i.e. constant); student temperature 0.1 in both directions (the code passes the audio
      student's temperature to both losses; both are 0.1).
    * The teacher's targets for one modality serve *every* student view of the other (the masked view, whose
      latent is shared with reconstruction, and the unmasked view): the CE is averaged over those pairs.
    * EMA momentum: a cosine from 0.997 to 1 over training (``vid_ema`` / ``aud_ema``); the teacher starts as a
      copy of the student; parameters only (their ViTs have no BatchNorm).
    * MMD with DomainBed's multi-bandwidth Gaussian kernel (γ ∈ 1e-3 … 1e3), biased estimator, on the student
      head outputs of both views (video vs audio) and on the teacher head outputs; weight 1, KD weight 1,
      reconstruction weight 5, the sum divided by the sum of the weights.
    * Refinement (``cm_attn_mode: mean``): the teacher's output tokens are weighted by the attention they receive in
      its last block combined with the other modality's (see :func:`avformer.losses.distill.refine_by_attention`),
      rescaled to the energy of the plain mean, then mean-pooled before the head. Without a CLS token (these
      recipes pool the mean), the attention a token receives is the mean over all queries of the last block, as in
      the code's no-CLS branch; in ``mean`` mode the other modality's factor then cancels exactly.
    * Agnostic variant (``xkd_mats``): one shared backbone for both modalities in the student *and* the teacher,
      with tokenizers, position tables, decoders and heads per modality: ``agnostic: true`` with a shared-backbone
      VATT (``vatt_ma_tiny``). The teacher copies the student's sharing, and the EMA moves the shared trunk once per
      step (the official code updates it twice, once with each modality's momentum; they are equal).

Differences from the official code, and choices:
    * Views: the official data gives a global view (masked, for the student's reconstruction) and a shorter,
      differently augmented local view (to the teacher and, unmasked, to the student). With
      ``data.views.num_views: 2`` view 0 plays the global and view 1 the local role (the same two clips,
      without the shorter duration); with one view per clip the masked student, the unmasked student and the
      teacher all read the same clip (the teacher of the *other* modality makes the targets, so the task is not
      trivial). ``student_full_view: false`` drops the unmasked student view (one less encoder pass per modality).
    * Momentum and teacher temperature follow their schedules per *epoch* (set in :meth:`on_epoch_start`; the
      official code moves the momentum every step): with ~20 steps an epoch the difference is small, and a resumed
      run gets exactly the values it had.
    * The teacher is updated lazily: at the start of each training step, from the student as the previous optimizer
      step left it. That is the official order (update after the step, use at the next), and a checkpoint taken
      between two steps resumes to the same teacher. With gradient accumulation (``optim.accum_steps > 1``) the
      teacher moves once per micro-batch, i.e. with momentum m^accum per optimizer step.
    * The teacher runs without drop-path but with its BatchNorm layers (the CNN tokenizers have some) on batch
      statistics, as the student's: XKD's and DINO's teachers run in training mode, and running statistics that
      lag the student (BatchNorm's own momentum, then the EMA) gave the teacher one output for every clip at the
      start (its running statistics, averaged like the weights, are not used).
    * DINO's ``freeze_last_layer`` and gradient clipping per parameter are not reproduced (XKD sets the former to
      0; the trainer clips the global norm with ``optim.grad_clip``), nor the local views' shorter duration and
      stronger augmentation (the data layer's augmentations apply).
    * Clips without a stream: left out of the reconstruction, distillation, centre and MMD terms that read that
      stream; the teacher still encodes the zero input (its attention enters the other modality's refinement, a
      factor that ``mean`` mode removes).

Collapse monitor (training logs, every step, averaged per epoch): ``teacher_entropy_video`` / ``_audio`` (mean
entropy of the teacher's sharpened, centred distributions; ln K = uniform), ``teacher_batch_entropy_*`` (entropy of
their batch mean: near 0 when every clip gets the same target), ``spread_video`` / ``_audio`` (mean per-dimension
std of the student's L2-normalised pooled features, about 1/√D when spread, 0 for a point). ``chance_losses`` puts
the distillation terms at ln K (a student that predicts the uniform distribution), so the trainer warns when they
stay there. Validation reports audio→video retrieval between the students' head outputs (``a2v_mAP`` when the val
rows have labels), the same spread and teacher entropies on the val clips.

Batch contract: ``video`` (B, C, T, H, W) or (B, 2, C, T, H, W), ``audio`` (B, 1, F, T) / (B, 1, S) or with a view
axis, optional ``has_video`` / ``has_audio`` ((B,) or (B, V)). Labels are never read in training. The model: a VATT
whose video and audio towers can be masked (:func:`avformer.models.masked.check_maskable`: linear patches, or the
per-frame / per-band CNN tokenizers of the AV-Digits recipes).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from avformer.losses.distill import (
    Centre,
    ProjectionHead,
    cosine_momentum,
    distill_cross_entropy,
    entropy,
    mmd,
    momentum_update_,
    refine_by_attention,
    teacher_distribution,
    warmup_value,
)
from avformer.models.masked import (
    DecoderConfig,
    MaskedDecoder,
    check_maskable,
    encode_masked,
    patch_geometry,
    patch_targets,
    reconstruction_loss,
    unpatchify,
)
from avformer.models.task_heads import attach_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.models.vit import ViTEncoder
from avformer.tasks.base import Batch, EpochContext, one_view_keys
from avformer.tasks.crisscross import embedding_std, retrieval_and_spread
from avformer.tasks.masked import Reconstruction
from avformer.tasks.registry import TaskData, register_task
from avformer.utils.distributed import world_size

__all__ = ["XKDOptions", "XKDTask"]

_MODALITIES = ("video", "audio")
_OTHER = {"video": "audio", "audio": "video"}
_REFINE = ("mean", "softmax", "none")


@dataclass(frozen=True)
class XKDOptions:
    """Options of the ``xkd`` task (see the module docstring; official values in the comments)."""

    agnostic: bool = False  # one shared backbone for both modalities (needs a shared-backbone VATT: vatt_ma_*)
    video_mask_ratio: float = 0.85  # XKD: 0.85
    audio_mask_ratio: float = 0.80  # XKD: 0.80
    norm_pix: bool = True  # per-patch normalised reconstruction targets (XKD: true)
    decoder_dim: int = 128  # decoder width (XKD: 384 for ViT-Base)
    decoder_depth: int = 2  # decoder blocks (XKD: 4)
    decoder_heads: int = 4  # decoder heads (XKD: 12)
    out_dim: int = 1024  # K, the head's outputs (XKD: 8192)
    head_hidden: int = 512  # head MLP width (XKD: 2048)
    head_bottleneck: int = 128  # head bottleneck (XKD: 256)
    head_layers: int = 3  # Linear layers of the head MLP (XKD: 3)
    student_temp: float = 0.1  # XKD: 0.1
    teacher_temp_video: float = 0.1  # sharpening of the video teacher (XKD: 0.1)
    teacher_temp_audio: float = 0.07  # sharpening of the audio teacher (XKD: 0.07)
    warmup_teacher_temp_video: float = 0.1  # start of the linear warmup (XKD: 0.1, i.e. none)
    warmup_teacher_temp_audio: float = 0.07  # (XKD: 0.07)
    warmup_teacher_temp_epochs: int = 0  # epochs of the warmup (XKD: 30, between equal values)
    center_momentum: float = 0.9  # XKD: 0.9 for both teachers
    momentum: float = 0.997  # EMA momentum at the start of training, cosine to momentum_final (XKD: 0.997)
    momentum_final: float = 1.0  # XKD: 1
    recon_weight: float = 5.0  # XKD: 5
    kd_weight: float = 1.0  # XKD: 1
    align_weight: float = 1.0  # XKD: 1
    refine: str = "mean"  # teacher refinement by attention: mean (XKD) | softmax | none
    student_full_view: bool = True  # the student also encodes the unmasked view (XKD: yes, its local view)

    def __post_init__(self) -> None:
        for name in ("video_mask_ratio", "audio_mask_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        sizes = (self.decoder_dim, self.decoder_heads, self.out_dim, self.head_hidden, self.head_bottleneck)
        if min(sizes) < 1 or self.head_layers < 1 or self.decoder_depth < 0:
            raise ValueError("decoder/head sizes must be >= 1 (decoder_depth >= 0)")
        temps = (self.student_temp, self.teacher_temp_video, self.teacher_temp_audio)
        if min(*temps, self.warmup_teacher_temp_video, self.warmup_teacher_temp_audio) <= 0:
            raise ValueError("temperatures must be > 0")
        if self.warmup_teacher_temp_epochs < 0:
            raise ValueError("warmup_teacher_temp_epochs must be >= 0")
        if not 0.0 <= self.center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {self.center_momentum}")
        if not 0.0 <= self.momentum <= self.momentum_final <= 1.0:
            raise ValueError("need 0 <= momentum <= momentum_final <= 1")
        weights = (self.recon_weight, self.kd_weight, self.align_weight)
        if min(weights) < 0 or max(weights) <= 0:
            raise ValueError("recon_weight, kd_weight and align_weight must be >= 0, and one of them > 0")
        if self.refine not in _REFINE:
            raise ValueError(f"refine must be one of {_REFINE}, got {self.refine!r}")

    @property
    def mask_ratio(self) -> dict[str, float]:
        return {"video": self.video_mask_ratio, "audio": self.audio_mask_ratio}

    def teacher_temp(self, epoch: int) -> dict[str, float]:
        """Each teacher's temperature at ``epoch`` (linear warmup, then constant)."""
        n = self.warmup_teacher_temp_epochs
        return {
            "video": warmup_value(self.warmup_teacher_temp_video, self.teacher_temp_video, n, epoch),
            "audio": warmup_value(self.warmup_teacher_temp_audio, self.teacher_temp_audio, n, epoch),
        }


def _attention_received(block: nn.Module, x: Tensor, bias: Tensor | None, num_prefix: int) -> Tensor:
    """(B, h, N) attention that each patch token receives in ``block`` for its input ``x`` (B, P + N, D): the first
    prefix token's row (a CLS token) when there is one, else the mean over every query (the official code's two
    branches)."""
    attn_mod = block.attn  # type: ignore[union-attr]
    B, L, _ = x.shape
    qkv = attn_mod.qkv(block.norm1(x))  # type: ignore[union-attr,operator]
    qkv = qkv.reshape(B, L, 3, attn_mod.num_heads, attn_mod.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, L, d)
    q, k = qkv[0].float(), qkv[1].float()
    logits = (q * attn_mod.head_dim**-0.5) @ k.transpose(-2, -1)  # (B, h, L, L)
    if bias is not None:
        logits = logits + bias
    probs = logits.softmax(dim=-1)
    if num_prefix > 0:
        return probs[:, :, 0, num_prefix:]
    return probs.mean(dim=2)


def _encode_with_attention(encoder: ViTEncoder, x: Tensor) -> tuple[Tensor, Tensor]:
    """``encoder``'s output tokens (B, N, D) for the whole of ``x`` and the attention they receive in its last
    block (B, h, N), from the staged forward (embed, blocks, finalize)."""
    seq, grid = encoder.embed(x)
    bias = encoder.attn_bias(x)
    depth = len(encoder.blocks)
    for i in range(depth - 1):
        seq, grid = encoder.forward_block(i, seq, grid, attn_bias=bias)
    attn = _attention_received(encoder.blocks[depth - 1], seq, bias, encoder.num_prefix_tokens)
    seq, grid = encoder.forward_block(depth - 1, seq, grid, attn_bias=bias)
    return encoder.finalize(seq, grid).tokens, attn


class XKDTask:
    """Masked reconstruction per modality, cross-modal distillation from an EMA teacher, MMD alignment.

    Args:
        model: a VATT whose video and audio towers can be masked; the decoders (``dec_*``) and the student heads
            (``proj_*``) are attached to it as ``model.task_heads``. The teacher (a copy of the two towers and the
            two heads) lives in the task and its checkpoint state, not in the model.
        options: see :class:`XKDOptions`.
    """

    def __init__(self, model: VisionAudioTextTransformer, options: XKDOptions) -> None:
        self.model = model
        self.vatt = model  # the trainer may swap task.model for a wrapper while training: keep the plain model
        self.options = options
        heads: dict[str, nn.Module] = {}
        dec_cfg = DecoderConfig(options.decoder_dim, options.decoder_depth, options.decoder_heads)
        for m in _MODALITIES:
            enc = model.encoders[m]
            check_maskable(enc, f"{m} encoder")
            assert isinstance(enc, ViTEncoder)
            patch_dim = patch_targets(enc, torch.zeros(1, *enc.default_input)).shape[-1]
            heads[f"dec_{m}"] = MaskedDecoder(enc.embed_dim, patch_dim, dec_cfg)
            heads[f"proj_{m}"] = ProjectionHead(
                enc.embed_dim,
                options.out_dim,
                hidden_dim=options.head_hidden,
                bottleneck_dim=options.head_bottleneck,
                nlayers=options.head_layers,
            )
        self.heads = attach_task_heads(model, heads)
        self.unused_parameters = True  # the text tower and VATT's own heads get no gradient
        # what the teacher copies: the two towers (one trunk when shared) and the two student heads
        self.student = nn.ModuleDict(
            {
                "encoders": nn.ModuleDict({m: model.encoders[m] for m in _MODALITIES}),
                "heads": nn.ModuleDict({m: self.heads[f"proj_{m}"] for m in _MODALITIES}),
            }
        )
        self.teacher: nn.ModuleDict | None = None  # made from the student at the first step (or a checkpoint)
        self.centres = nn.ModuleDict({m: Centre(options.out_dim, options.center_momentum) for m in _MODALITIES})
        self.momentum = options.momentum
        self.temps = options.teacher_temp(0)
        self.last_outputs: dict[str, Tensor] | None = None

    # -- teacher --------------------------------------------------------------------------------------------------
    def _ensure_teacher(self) -> nn.ModuleDict:
        if self.teacher is None:
            teacher = copy.deepcopy(self.student)  # keeps a shared trunk shared
            teacher.requires_grad_(False)
            teacher.eval()  # no drop-path ...
            for mod in teacher.modules():  # ... but batch statistics in BatchNorm, as the student (see the docstring)
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.train()
            self.teacher = teacher
        return self.teacher

    def _to(self, device: torch.device) -> None:
        teacher = self._ensure_teacher()
        if self.centres["video"].value.device != device:
            self.centres.to(device)
        if next(teacher.parameters()).device != device:
            teacher.to(device)

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher towards the current student (``momentum`` of this epoch)."""
        momentum_update_(self._ensure_teacher(), self.student, self.momentum)

    @torch.no_grad()
    def teacher_outputs(self, video: Tensor, audio: Tensor) -> dict[str, Tensor]:
        """The teacher's head outputs (B, K) per modality on the whole (unmasked) clips, refined by attention."""
        teacher = self._ensure_teacher()
        inputs = {"video": video, "audio": audio}
        tokens: dict[str, Tensor] = {}
        attn: dict[str, Tensor] = {}
        for m in _MODALITIES:
            enc = teacher["encoders"][m]
            assert isinstance(enc, ViTEncoder)
            if self.options.refine == "none":
                tokens[m] = enc.forward_features(inputs[m]).tokens
            else:
                tokens[m], attn[m] = _encode_with_attention(enc, inputs[m])
        out: dict[str, Tensor] = {}
        for m in _MODALITIES:
            t = tokens[m]
            if self.options.refine != "none":
                t = refine_by_attention(t, attn[m], attn[_OTHER[m]], self.options.refine)
            out[m] = teacher["heads"][m](t.mean(dim=1)).float()  # (B, K)
        return out

    # -- schedules ------------------------------------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> None:
        cfg = self.options
        self.momentum = cosine_momentum(cfg.momentum, cfg.momentum_final, ctx.epoch / max(ctx.epochs, 1))
        self.temps = cfg.teacher_temp(ctx.epoch)

    def chance_losses(self, batch_size: int) -> dict[str, float]:
        """The distillation terms at ln K (the CE of a student that predicts the uniform distribution); with
        per-patch normalised targets the reconstruction terms at 1 (predicting every patch's mean, 0, scores
        (P - 1) / P, as in :mod:`avformer.tasks.masked`)."""
        cfg, k = self.options, math.log(self.options.out_dim)
        out = {"kd": k, "kd_video_to_audio": k, "kd_audio_to_video": k} if cfg.kd_weight > 0 else {}
        if cfg.recon_weight > 0 and cfg.norm_pix:
            out |= {"recon_video": 1.0, "recon_audio": 1.0}
        return out

    # -- training -------------------------------------------------------------------------------------------------
    def _views(self, batch: Batch) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, Tensor]]:
        """Per modality ``(masked view, full view)`` inputs and the (B,) presence of that stream in both."""
        views: dict[str, tuple[Tensor, Tensor]] = {}
        present: dict[str, Tensor] = {}
        for m in _MODALITIES:
            x = batch[m]
            enc = self.vatt.encoders[m]
            n = x.shape[0]
            has = batch.get(f"has_{m}")
            if x.ndim == len(enc.default_input) + 2:  # (B, V, ...): view 0 masked, view 1 to the teacher
                if x.shape[1] != 2:
                    raise ValueError(f"XKD takes one or two views per clip, got {x.shape[1]}")
                views[m] = (x[:, 0], x[:, 1])
            else:
                views[m] = (x, x)
            if has is None:
                present[m] = torch.ones(n, dtype=torch.bool, device=x.device)
            else:
                present[m] = has.bool().reshape(n, -1).all(dim=1)
        return views, present

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        cfg = self.options
        device = batch["audio"].device
        self._to(device)
        self.update_teacher()  # the student as the last optimizer step left it (a no-op at the first step)
        views, present = self._views(batch)
        both = present["video"] & present["audio"]

        recon: dict[str, Tensor] = {}
        student: dict[str, list[Tensor]] = {m: [] for m in _MODALITIES}
        pooled: dict[str, Tensor] = {}
        for m in _MODALITIES:
            enc = self.vatt.encoders[m]
            x_masked, x_full = views[m]
            out, tm = encode_masked(enc, x_masked, cfg.mask_ratio[m], what=f"{m} encoder")
            if cfg.recon_weight > 0:
                pred = self.heads[f"dec_{m}"](out.tokens, tm.keep, out.grid)  # (B, N, P)
                target = patch_targets(enc, x_masked)
                recon[m] = reconstruction_loss(pred, target, tm.mask & present[m][:, None], norm_pix=cfg.norm_pix)
            student[m].append(self.heads[f"proj_{m}"](out.tokens.mean(dim=1)))  # the masked view's latent
            if cfg.student_full_view:
                full = enc.forward_features(x_full)
                student[m].append(self.heads[f"proj_{m}"](full.tokens.mean(dim=1)))
                pooled[m] = full.pooled
            else:
                pooled[m] = out.pooled

        teacher = self.teacher_outputs(views["video"][1], views["audio"][1])
        targets = {m: teacher_distribution(teacher[m], self.centres[m].value, self.temps[m]) for m in _MODALITIES}
        kd = {}
        for t_mod in _MODALITIES:  # the teacher of t_mod teaches the student of the other modality
            s_mod = _OTHER[t_mod]
            terms = [distill_cross_entropy(s, targets[t_mod], cfg.student_temp, both) for s in student[s_mod]]
            kd[f"{t_mod}_to_{s_mod}"] = torch.stack(terms).mean()
        for m in _MODALITIES:  # after the loss, from the raw outputs (DINO / XKD)
            self.centres[m].update(teacher[m], present[m])

        n_views = len(student["video"])
        s_video = torch.cat(student["video"])[present["video"].repeat(n_views)]
        s_audio = torch.cat(student["audio"])[present["audio"].repeat(n_views)]
        mmd_student = mmd(s_video, s_audio)
        mmd_teacher = mmd(teacher["video"][present["video"]], teacher["audio"][present["audio"]])
        align = (mmd_student + mmd_teacher.detach()) / 2

        total_w = cfg.recon_weight + cfg.kd_weight + cfg.align_weight
        kd_mean = (kd["video_to_audio"] + kd["audio_to_video"]) / 2
        loss = cfg.kd_weight * kd_mean + cfg.align_weight * align
        logs: dict[str, float] = {}
        if recon:
            recon_mean = (recon["video"] + recon["audio"]) / 2
            loss = loss + cfg.recon_weight * recon_mean
            logs |= {"recon": float(recon_mean.detach())} | {f"recon_{m}": float(v.detach()) for m, v in recon.items()}
        loss = loss / total_w
        logs |= {"kd": float(kd_mean.detach())} | {f"kd_{k}": float(v.detach()) for k, v in kd.items()}
        logs |= {"mmd_student": float(mmd_student.detach()), "mmd_teacher": float(mmd_teacher)}
        logs["momentum"] = self.momentum
        for m in _MODALITIES:
            q = targets[m][present[m]]
            if q.shape[0] > 0:
                logs[f"teacher_entropy_{m}"] = float(entropy(q).mean())
                logs[f"teacher_batch_entropy_{m}"] = float(entropy(q.mean(dim=0)))
            keep = pooled[m][present[m]].detach()
            if keep.shape[0] > 1:
                logs[f"spread_{m}"] = float(embedding_std(keep))
        return loss, logs

    # -- validation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, "XKD")
        self._to(batch["audio"].device)
        for m in _MODALITIES:
            out = self.vatt.encoders[m].forward_features(batch[m])
            res[f"{m}_pooled"] = out.pooled.float()
            res[f"{m}_z"] = self.heads[f"proj_{m}"](out.tokens.mean(dim=1)).float()
        teacher = self.teacher_outputs(batch["video"], batch["audio"])
        for m in _MODALITIES:
            q = teacher_distribution(teacher[m], self.centres[m].value, self.temps[m])
            res[f"teacher_entropy_{m}"] = entropy(q)
        return res

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        out = retrieval_and_spread(outputs, spread_of="pooled")
        for m in _MODALITIES:
            keep = outputs[f"has_{m}"].bool()
            out[f"teacher_entropy_{m}"] = float(outputs[f"teacher_entropy_{m}"][keep].mean())
        return out

    # -- pictures -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, batch: Batch, seed: int = 0) -> dict[str, Reconstruction]:
        """Input, masked input and reconstruction per modality for the clips of ``batch`` (fixed masks from
        ``seed``), for :mod:`avformer.eval.reconstruction` (the run folder's ``reconstruction_*.png``)."""
        g = torch.Generator().manual_seed(seed)
        out: dict[str, Reconstruction] = {}
        for m in _MODALITIES:
            enc, x = self.vatt.encoders[m], batch[m]
            assert isinstance(enc, ViTEncoder)
            feats, tm = encode_masked(enc, x, self.options.mask_ratio[m], generator=g, what=f"{m} encoder")
            pred = self.heads[f"dec_{m}"](feats.tokens, tm.keep, feats.grid).float()
            target = patch_targets(enc, x).float()
            if self.options.norm_pix:  # MAE's visualisation: the true patch's mean and spread
                pred = pred * (target.var(-1, keepdim=True) + 1e-6).sqrt() + target.mean(-1, keepdim=True)
            mask = tm.mask[..., None]
            (grid, patch), c = patch_geometry(enc, tuple(x.shape[1:])), x.shape[1]
            out[m] = Reconstruction(
                modality=m,
                input=unpatchify(target, grid, patch, c).cpu(),
                masked=unpatchify(target.masked_fill(mask, math.nan), grid, patch, c).cpu(),
                reconstruction=unpatchify(torch.where(mask, pred, target), grid, patch, c).cpu(),
                mask_ratio=float(tm.mask.float().mean()),
                norm_pix=self.options.norm_pix,
            )
        return out

    # -- state ----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        teacher = self._ensure_teacher()
        return {
            "teacher": teacher.state_dict(),
            "centres": {m: self.centres[m].value.detach().clone() for m in _MODALITIES},
            "momentum": self.momentum,
            "temps": dict(self.temps),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        teacher = self._ensure_teacher()
        teacher.load_state_dict(state["teacher"])
        for m in _MODALITIES:
            self.centres[m].value.copy_(state["centres"][m])
        self.momentum = float(state["momentum"])
        self.temps = {m: float(v) for m, v in state["temps"].items()}


def _xkd_vatt(model: nn.Module, options: XKDOptions, modalities: tuple[str, ...]) -> VisionAudioTextTransformer:
    """``model`` as the VATT that XKD needs (see :class:`XKDTask`)."""
    if world_size() > 1:
        raise ValueError("task xkd runs in one process (not under torchrun): its heads and teacher run outside the "
                         "model's forward")  # fmt: skip
    if not isinstance(model, VisionAudioTextTransformer):
        raise TypeError(
            f"task xkd needs a VATT model with maskable towers (`avformer models --filter vatt`), "
            f"got {type(model).__name__}"
        )
    if options.agnostic != model.cfg.shared_backbone:
        want = "a shared-backbone VATT (vatt_ma_tiny, vatt_ma_base)" if options.agnostic else "one trunk per modality"
        raise ValueError(
            f"task xkd with agnostic: {str(options.agnostic).lower()} needs {want}; the model "
            f"{'shares' if model.cfg.shared_backbone else 'does not share'} its backbone"
        )
    if set(modalities) != {"video", "audio"}:
        raise ValueError("task xkd reads video and audio: set data.modalities to [video, audio]")
    return model


@register_task("xkd", options=XKDOptions, supervised=False)
def build_xkd(model: nn.Module, options: XKDOptions, data: TaskData) -> XKDTask:
    """XKD: masked reconstruction + cross-modal distillation from an EMA teacher + MMD alignment (and agnostic)."""
    if data.num_views not in (1, 2):
        raise ValueError(f"task xkd takes one or two views per clip (data.views.num_views), got {data.num_views}")
    return XKDTask(_xkd_vatt(model, options, data.modalities), options)
