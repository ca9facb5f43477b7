"""VATT self-supervised pretraining task: NCE between video and audio, MIL-NCE between video and text.

Paper: Akbari et al. 2021 (VATT), https://arxiv.org/abs/2104.11178; losses in ``avformer.losses.contrastive``::

    loss = nce_weight     · NCE(z_v,va, z_a,va)                    symmetric InfoNCE, the clip's own pair positive
         + mil_nce_weight · MIL-NCE(z_v,vt, z_t,vt segments)       every text segment of the clip is a positive

Batch contract (:func:`avformer.data.collate`): ``video`` (B, 3, T, H, W), ``audio`` (B, 1, S) or (B, 1, F, T),
``has_video`` / ``has_audio`` (B,) bool, optional ``text`` (list of str | None), ``label`` only at validation.
Labels are never read by :meth:`training_step`.

Choices:
    * A clip without audio (or video) is neither anchor nor candidate in NCE; a clip without text is not an anchor
      of MIL-NCE (its video is still a candidate of nothing: the default, non-symmetric MIL-NCE scores videos
      against texts only). A batch without any text gives an exact, attached zero MIL-NCE term.
    * Temperature: fixed ``temperature``, or learned per space (``learnable_temperature``) as the model's
      ``logit_scale_va`` / ``logit_scale_vt`` (log of 1/T, initialised from ``temperature``, capped at 100).
    * Negatives are gathered across processes (``gather=True``; a no-op in one process).
    * Validation: the val set's embeddings; ``validation_end`` reports audio→video and video→audio R@1/5/10,
      median rank, class-relevance mAP (when the val rows have labels: ``a2v_mAP``) and, with text, text→video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from avformer.losses import info_nce, mil_nce
from avformer.metrics.retrieval import retrieval_report
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.base import Batch, av_present, one_view_keys
from avformer.tasks.registry import TaskData, register_task

__all__ = ["VATTPretrainOptions", "VATTPretrainTask"]


@dataclass(frozen=True)
class VATTPretrainOptions:
    """Options of the ``vatt_pretrain`` task."""

    nce_weight: float = 1.0  # video-audio NCE
    mil_nce_weight: float = 1.0  # video-text MIL-NCE (clips without text are masked out)
    temperature: float = 0.07  # softmax temperature of both spaces
    learnable_temperature: bool = False  # learn log(1/T) per space (CLIP style, capped at 100), starting at T
    max_text_segments: int = 4  # text segments (MIL-NCE positives) kept per clip

    def __post_init__(self) -> None:
        if self.nce_weight < 0 or self.mil_nce_weight < 0:
            raise ValueError("nce_weight and mil_nce_weight must be >= 0")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.max_text_segments < 1:
            raise ValueError(f"max_text_segments must be >= 1, got {self.max_text_segments}")


_MAX_LOGIT_SCALE = 100.0


class VATTPretrainTask:
    """A :class:`VisionAudioTextTransformer` trained with NCE (video-audio) + MIL-NCE (video-text).

    Args:
        model: the VATT model (its ``logit_scale_*`` are re-initialised from ``temperature`` here).
        options: ``nce_weight``, ``mil_nce_weight``, ``temperature``, ``learnable_temperature``, ``max_text_segments``.
    """

    def __init__(self, model: VisionAudioTextTransformer, options: VATTPretrainOptions) -> None:
        if not isinstance(model, VisionAudioTextTransformer):
            raise TypeError(f"VATTPretrainTask needs a VATT model, got {type(model).__name__}")
        if options.nce_weight <= 0 and options.mil_nce_weight <= 0:
            raise ValueError("task.options nce_weight and mil_nce_weight are both 0: nothing to train")
        self.model = model  # the trainer swaps in its DDP wrapper while training: keep what it hides
        self.tokenizer = model.tokenizer
        self.options = options
        # under DDP some parameters get no gradient in a step (the text trunk with nce only, the audio side with
        # MIL-NCE only, classifier heads): let DDP look for them instead of stopping at the next step
        self.unused_parameters = True
        with torch.no_grad():  # before any resume: a checkpoint's values replace these
            model.logit_scale_va.fill_(math.log(1.0 / options.temperature))
            model.logit_scale_vt.fill_(math.log(1.0 / options.temperature))
        model.logit_scale_va.requires_grad_(options.learnable_temperature)
        model.logit_scale_vt.requires_grad_(options.learnable_temperature)
        self.last_outputs: dict[str, Tensor] | None = None

    def chance_losses(self, batch_size: int) -> dict[str, float]:
        """Each term at chance: ``ln B`` (InfoNCE: one positive among ``B`` gathered candidates; MIL-NCE: a clip's
        segments against every clip's), times its weight."""
        cfg, log_b = self.options, math.log(max(batch_size, 2))
        out = {"nce": cfg.nce_weight * log_b} if cfg.nce_weight > 0 else {}
        return out | ({"mil_nce": cfg.mil_nce_weight * log_b} if cfg.mil_nce_weight > 0 else {})

    def _temperature(self, logit_scale: Tensor) -> Tensor | float:
        if not self.options.learnable_temperature:
            return self.options.temperature
        return 1.0 / logit_scale.exp().clamp(max=_MAX_LOGIT_SCALE)

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        cfg = self.options
        video, audio = batch["video"], batch["audio"]
        n, device = video.shape[0], video.device
        has_a, has_v = av_present(batch)
        text_ids = seg_mask = None
        if cfg.mil_nce_weight > 0:
            texts = batch.get("text") or [None] * n
            text_ids, seg_mask = self.tokenizer(texts, max_segments=cfg.max_text_segments, device=device)
        out = self.model(video, audio if cfg.nce_weight > 0 else None, text_ids)
        terms: dict[str, Tensor] = {}
        if cfg.nce_weight > 0:
            assert out.video_va is not None and out.audio_va is not None
            t_va = self._temperature(out.logit_scale_va)
            nce = info_nce(out.video_va, out.audio_va, t_va, a_mask=has_v, b_mask=has_a, gather=True)
            terms["nce"] = cfg.nce_weight * nce
        if cfg.mil_nce_weight > 0:
            assert out.video_vt is not None and out.text_vt is not None and seg_mask is not None
            t_vt = self._temperature(out.logit_scale_vt)
            mil = mil_nce(out.video_vt, out.text_vt, t_vt, text_mask=seg_mask, video_mask=has_v, gather=True)
            terms["mil_nce"] = cfg.mil_nce_weight * mil
        loss = torch.stack(list(terms.values())).sum()
        logs = {k: float(v.detach()) for k, v in terms.items()}
        if seg_mask is not None:
            logs["text_clips"] = float(seg_mask.any(dim=1).float().mean())
        if cfg.learnable_temperature:
            logs["temperature_va"] = float(1.0 / out.logit_scale_va.detach().exp().clamp(max=_MAX_LOGIT_SCALE))
        return loss, logs

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, "VATT")
        out = self.model(batch["video"], batch["audio"])
        assert out.video_va is not None and out.audio_va is not None
        return res | {"video_va": out.video_va.float(), "audio_va": out.audio_va.float()}

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        return retrieval_report(
            outputs["video_va"],
            outputs["audio_va"],
            outputs.get("label"),
            has_video=outputs["has_video"],
            has_audio=outputs["has_audio"],
        )


@register_task("vatt_pretrain", options=VATTPretrainOptions, supervised=False, reads_text=True)
def build_vatt_pretrain(model: nn.Module, options: VATTPretrainOptions, data: TaskData) -> VATTPretrainTask:
    """VATT: NCE between video and audio, MIL-NCE between video and text, without labels."""
    if not isinstance(model, VisionAudioTextTransformer):
        raise TypeError(
            f"task vatt_pretrain needs a VATT model (`avformer models --filter vatt`), got {type(model).__name__}"
        )
    if set(data.modalities) != {"video", "audio"}:
        raise ValueError("VATT pretraining reads video and audio: set data.modalities to [video, audio]")
    return VATTPretrainTask(model, options)
