"""Classification tasks: what a batch means to a classifier and which objectives train it.

:class:`AVClassificationTask` trains an :class:`~avformer.models.av_model.AVModel` (MMT and relatives) with the MMT
objective (Zhu 2024, https://arxiv.org/abs/2401.04023)::

    loss = ce_weight          · CE(fused logits, y)                   (BCE for multi-label data)
         + modality_ce_weight · [CE(audio-alone logits, y) + CE(video-alone logits, y)]   (our option; 0 = off)
         + avc_weight         · AVC(audio_emb, video_emb, y)          (supervised contrastive across modalities)
         + imc_weight         · IMC(audio_emb, video_emb, y)          (supervised contrastive within each modality)

:class:`ClassificationTask` trains one encoder (audio-only or video-only, read from the model's ``input_kind``)
with CE / BCE. Both validate through :func:`avformer.tasks.inference.predict_batch`, so training, ``avformer eval``
and ``avformer predict`` score a model the same way (multi-view batches pooled there), and score each view (fused,
audio-only, video-only) with :func:`avformer.metrics.classification.score_outputs` over the clips the rule of
:mod:`avformer.metrics.classification` counts: the fused view every labelled clip, the audio-only view those with
audio, the video-only view those with video. The validation outputs say which clips a view does not see by NaN rows
(``audio_logits`` of the clips without audio, ...), so ``report.md``, which reads the same outputs, counts alike.

Batch contract (the dicts of :func:`avformer.data.collate`): ``audio`` (B, 1, F, T) or (B, 1, S), ``video``
(B, 3, T, H, W), ``has_audio`` / ``has_video`` (B,) bool, ``label`` (B,) int64 (-1 = unlabeled) or (B, K) float
multi-hot. Keys that a model does not read may be absent.

Choices (where MMT is silent or our data differs):
    * Missing modalities: a clip without audio (``has_audio`` False) is masked out of the fused prediction by the
      model, out of the audio CE, and is neither anchor nor candidate in AVC / IMC; its zero-filled spectrogram is
      never treated as silence. Unlabeled rows (label -1) are masked out of every term.
    * Mixup (``mixup_alpha > 0``): one λ and one permutation for audio and video, drawn from torch's global RNG
      (the trainer checkpoints it, so resume stays exact). A mixed clip keeps a modality only if both of its sources
      had it. Contrastive terms take the label of the dominant source (λ ≥ 0.5), as hard labels are what SupCon needs.
    * What the fusion decides (``AVOutput``): the presence masks it used (UAVM feeds one modality per batch and
      reports the other absent) replace the batch's in every term; a fusion that mixed hidden states (SFT's latent
      mixup, ``AVOutput.mix``) gets its fused CE against the targets mixed the same way, per sample, and the
      contrastive terms take the dominant source's label.
    * Multi-label data: contrastive positives are only the clip's own pair (instance discrimination, the sample
      index as label), since "same class" is ill-defined for label sets.
    * Modality dropout (``modality_dropout > 0``, our option): after mixup, a clip with both streams loses one of
      them (audio or video, even odds) with that probability, drawn from torch's global CPU RNG; the dropped
      stream is then treated exactly like a missing one (fused prediction, per-modality CE, AVC / IMC).
    * Per-modality CE (``modality_ce_weight > 0``, our option; MMT has none): each modality is also classified with
      the other one masked for every sample (``AVModel.forward(alone=True)``), the prediction that audio-only and
      video-only evaluation score. Unimodal auxiliary losses counter the imbalance of joint training (Wang et al.,
      "What Makes Training Multi-Modal Classification Networks Hard?", CVPR 2020): once the faster modality (here
      usually audio) fits a clip, the fused loss stops teaching the other one. Under bottleneck fusion the plain
      per-modality head of the fused pass would not do: its video tokens have read the audio through the
      bottleneck. The fused blocks therefore run once more per modality (+34 % step time on the AV-Digits recipe).
    * SpecAugment is applied per sample by the training dataset (``DataConfig.spec_augment``), not here.
    * Distributed training: AVC / IMC use candidates gathered from every rank with gradients
      (``gather=True``; see :mod:`avformer.losses.contrastive`), so N processes with batch B train like one process
      with batch N·B. Ranks must then hold the same number of clips per micro-batch (all_gather needs equal shapes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.fusion.base import LatentMix
from avformer.losses import AVCLoss, IMCLoss, binary_cross_entropy, cross_entropy, mixup
from avformer.metrics.classification import hide_absent, labeled_rows, score_outputs
from avformer.models.av_model import AVModel
from avformer.tasks.base import Batch, av_present, present_mask
from avformer.tasks.inference import input_modality, predict_batch
from avformer.tasks.registry import TaskData, register_task
from avformer.utils.distributed import rank_offset

__all__ = [
    "AVClassificationOptions",
    "AVClassificationTask",
    "ClassificationOptions",
    "ClassificationTask",
    "drop_modality",
]


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


@dataclass(frozen=True)
class ClassificationOptions:
    """Options of the ``classification`` task (one encoder, CE / BCE)."""

    ce_weight: float = 1.0  # weight of the cross-entropy (BCE for multi-label data)
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # 0 = no mixup

    def __post_init__(self) -> None:
        _check(self.ce_weight >= 0, f"ce_weight must be >= 0, got {self.ce_weight}")
        _check(self.mixup_alpha >= 0, f"mixup_alpha must be >= 0, got {self.mixup_alpha}")
        _check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class AVClassificationOptions(ClassificationOptions):
    """Options of the ``av_classification`` task (MMT's objective; see the module docstring)."""

    modality_ce_weight: float = 0.0  # CE / BCE on each modality alone (the other masked, as in eval), summed
    avc_weight: float = 0.0  # audio-video supervised contrastive
    imc_weight: float = 0.0  # intra-modal supervised contrastive
    temperature: float = 0.07  # contrastive softmax temperature
    # our option (0 = off, as MMT): each training clip that has both streams loses one of them (audio or video, even
    # odds) with this probability, exactly as if the file lacked it
    modality_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("modality_ce_weight", "avc_weight", "imc_weight"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _check(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        _check(0 <= self.modality_dropout <= 1, f"modality_dropout must be in [0, 1], got {self.modality_dropout}")


def drop_modality(has_audio: Tensor, has_video: Tensor, p: float) -> tuple[Tensor, Tensor]:
    """Presence masks after modality dropout: each clip with both streams loses audio or video (even odds) with
    probability ``p``; clips with one stream keep it. Random numbers from torch's global CPU RNG (checkpointed)."""
    n = has_audio.shape[0]
    u = torch.rand(2, n).to(has_audio.device)
    drop = (u[0] < p) & has_audio & has_video
    audio_goes = u[1] < 0.5
    return has_audio & ~(drop & audio_goes), has_video & ~(drop & ~audio_goes)


def _labeled(label: Tensor, multilabel: bool) -> Tensor:
    """(B,) bool: rows with a usable target (single-label: ``label >= 0``; multi-label: every row)."""
    return labeled_rows(label, multilabel)


class _ClassifierBase:
    """Shared target handling, mixup and metrics of the two tasks."""

    model: nn.Module

    def __init__(self, options: ClassificationOptions, num_classes: int, multilabel: bool) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.options = options
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.last_outputs: dict[str, Tensor] | None = None  # the latest validation outputs (for reports)

    # -- targets ---------------------------------------------------------------------------------------------------
    def _targets(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(target, labeled mask). Single-label targets of unlabeled rows become class 0 (they are masked)."""
        label = batch["label"]
        keep = _labeled(label, self.multilabel)
        if not self.multilabel:
            label = torch.where(keep, label, torch.zeros_like(label))
        return label, keep

    def _classification_loss(self, logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        if self.multilabel:
            return binary_cross_entropy(logits, target.float(), mask=mask)
        return cross_entropy(logits, target, label_smoothing=self.options.label_smoothing, mask=mask)

    def _latent_mix(self, target: Tensor, mix: LatentMix) -> Tensor:
        """Soft (B, K) targets mixed as the fusion mixed the samples: ``lam * t + (1 - lam) * t[index]``."""
        soft = target.float() if target.is_floating_point() else F.one_hot(target.long(), self.num_classes).float()
        lam = mix.lam.to(soft)[:, None]
        return lam * soft + (1.0 - lam) * soft[mix.index]

    def _mix(
        self, inputs: dict[str, Tensor], target: Tensor, keep: Tensor
    ) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, float]:
        """Mixup when enabled: (inputs, soft or hard target, kept rows, source permutation, λ)."""
        index = torch.arange(target.shape[0], device=target.device)
        if self.options.mixup_alpha <= 0:
            return inputs, target, keep, index, 1.0
        mixed = mixup(inputs, target, alpha=self.options.mixup_alpha, num_classes=self.num_classes)
        return mixed.inputs, mixed.targets, keep & keep[mixed.index], mixed.index, mixed.lam

    # -- validation ------------------------------------------------------------------------------------------------
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        """``label`` and each view's logits: an AV model's ``logits`` (fused), ``audio_logits`` and ``video_logits``;
        a single encoder's ``audio_logits`` or ``video_logits``. Rows of the clips a view does not see (no audio for
        the audio-only view, ...) are NaN (:func:`~avformer.metrics.classification.hide_absent`)."""
        scores = predict_batch(self.model, batch, multilabel=self.multilabel)
        if not isinstance(self.model, AVModel):
            modality = input_modality(self.model)
            logits = scores[modality]
            present = present_mask(batch, f"has_{modality}", logits.shape[0], logits.device)
            return {f"{modality}_logits": hide_absent(logits, present), "label": batch["label"]}
        has_audio, has_video = av_present(batch)
        out = {"logits": scores["fused"], "label": batch["label"]}
        for name, present in (("audio", has_audio), ("video", has_video)):
            if name in scores:
                out[f"{name}_logits"] = hide_absent(scores[name], present)
        return out

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        """Metrics of the model's own view (an AV model's fused one, a single encoder's only one): ``top1``,
        ``top5``, ``mean_class_acc``, ``loss`` (multi-label: ``mAP``, ``AUC``, ``d_prime``, ``loss``) and, for AV
        models, the audio-only / video-only headline (``audio_top1``, ``video_top1``; multi-label ``audio_mAP``,
        ``video_mAP``). Every number is :func:`~avformer.metrics.classification.score_outputs`' over the clips its
        view counts (the rule of :mod:`avformer.metrics.classification`), as ``report.md`` and ``avformer eval``."""
        self.last_outputs = outputs
        label = outputs["label"]
        views = score_outputs(outputs, num_classes=self.num_classes, multilabel=self.multilabel)
        main, *others = views
        keys = ("mAP", "AUC", "d_prime") if self.multilabel else ("top1", "top5", "mean_class_acc")
        metrics = {k: views[main][k] for k in keys}
        logits = outputs["logits" if main == "fused" else f"{main}_logits"]
        rows = torch.ones(label.shape[0], dtype=torch.bool, device=label.device)
        if main != "fused":  # a single encoder: the loss over the clips that have its stream
            rows = ~logits.isnan().all(dim=1)
        target, keep = self._targets({"label": label[rows]})
        metrics["loss"] = float(self._classification_loss(logits[rows], target, keep))
        headline = keys[0]
        for name in others:
            metrics[f"{name}_{headline}"] = views[name][headline]
        return metrics


class AVClassificationTask(_ClassifierBase):
    """An :class:`AVModel` trained with CE (+ per-modality CE) + AVC + IMC; see the module docstring.

    Args:
        model: the audio-visual model.
        options: objective weights and settings.
        num_classes: ``K``.
        multilabel: BCE and mAP instead of CE and accuracy.
    """

    def __init__(
        self, model: AVModel, options: AVClassificationOptions, *, num_classes: int, multilabel: bool = False
    ) -> None:
        if not isinstance(model, AVModel):
            raise TypeError(f"AVClassificationTask needs an AVModel, got {type(model).__name__}")
        super().__init__(options, num_classes, multilabel)
        self.model = model
        # gather: under torchrun the candidates come from every rank (a no-op in one process)
        self.avc = AVCLoss(options.temperature, gather=True)
        self.imc = IMCLoss(options.temperature, gather=True)
        # without AVC and IMC the contrastive projection heads are not run (forward(embed=False)) and get no
        # gradient: DDP must be told (the Trainer reads this flag); so must a fusion that leaves an encoder out of some
        # steps (UAVM feeds one modality per batch)
        self.embed = options.avc_weight > 0 or options.imc_weight > 0
        self.unused_parameters = not self.embed or bool(getattr(model.fusion, "skips_parameters", False))

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        cfg = self.options
        audio, video = batch["audio"], batch["video"]
        n, device = audio.shape[0], audio.device
        has_a, has_v = av_present(batch)
        target, keep = self._targets(batch)
        inputs, target, keep, index, lam = self._mix({"audio": audio, "video": video}, target, keep)
        if lam < 1.0:  # a mixed clip has a stream only if both of its sources had it
            has_a, has_v = has_a & has_a[index], has_v & has_v[index]
        if cfg.modality_dropout > 0:
            has_a, has_v = drop_modality(has_a, has_v, cfg.modality_dropout)
        alone = cfg.modality_ce_weight > 0
        out = self.model(inputs["audio"], inputs["video"], has_a, has_v, embed=self.embed, alone=alone)
        has_a, has_v = out.has_audio, out.has_video  # the fusion's: UAVM trains on one modality and masks the other
        fused_target, fused_keep = target, keep & (has_a | has_v)
        con_labels = batch["label"] if lam >= 0.5 else batch["label"][index]
        if out.mix is not None:  # the fusion mixed hidden states (SFT's latent mixup): mix the targets alike
            fused_target, fused_keep = self._latent_mix(target, out.mix), fused_keep & fused_keep[out.mix.index]
            if not self.multilabel:  # contrastive terms: the label of the dominant source, as with input mixup
                con_labels = torch.where(out.mix.lam >= 0.5, con_labels, con_labels[out.mix.index])

        terms: dict[str, Tensor] = {}
        if cfg.ce_weight > 0:
            terms["ce"] = cfg.ce_weight * self._classification_loss(out.logits, fused_target, fused_keep)
        if alone:
            assert out.audio_alone_logits is not None and out.video_alone_logits is not None
            w = cfg.modality_ce_weight
            terms["ce_audio"] = w * self._classification_loss(out.audio_alone_logits, target, keep & has_a)
            terms["ce_video"] = w * self._classification_loss(out.video_alone_logits, target, keep & has_v)
        if cfg.avc_weight > 0 or cfg.imc_weight > 0:
            if self.multilabel:  # instance discrimination: the clip's own pair is its only positive
                con_labels = torch.arange(n, device=device) + rank_offset(n, device)  # unique across ranks
            a_mask, v_mask = keep & has_a, keep & has_v
            assert out.audio_emb is not None and out.video_emb is not None  # embed=True whenever AVC/IMC are on
            if cfg.avc_weight > 0:
                avc = self.avc(out.audio_emb, out.video_emb, con_labels, audio_mask=a_mask, video_mask=v_mask)
                terms["avc"] = cfg.avc_weight * avc
            if cfg.imc_weight > 0:
                imc = self.imc(out.audio_emb, out.video_emb, con_labels, audio_mask=a_mask, video_mask=v_mask)
                terms["imc"] = cfg.imc_weight * imc
        if not terms:
            raise ValueError("every loss weight is 0: set task.options.ce_weight (or avc / imc / modality_ce) > 0")
        loss = torch.stack(list(terms.values())).sum()
        logs = {k: float(v.detach()) for k, v in terms.items()}
        if target.ndim == 1:  # hard labels: not mixed (mixup gives soft (B, K) targets even when λ rounds to 1)
            hit = (out.logits.detach().argmax(-1) == target) & keep
            logs["top1"] = float(hit.sum()) / max(int(keep.sum()), 1)
        return loss, logs


class ClassificationTask(_ClassifierBase):
    """One encoder (audio-only or video-only) trained with CE / BCE.

    The batch key it reads follows the model: :func:`avformer.tasks.inference.input_modality` (``input_kind``
    ``spectrogram`` / ``waveform`` -> ``audio``, ``video`` -> ``video``). Clips without that stream are masked out.
    """

    def __init__(
        self, model: nn.Module, options: ClassificationOptions, *, num_classes: int, multilabel: bool = False
    ) -> None:
        super().__init__(options, num_classes, multilabel)
        modality = input_modality(model)
        if modality == "av":
            raise TypeError("ClassificationTask takes a single encoder; use AVClassificationTask for an AVModel")
        if options.ce_weight <= 0:
            raise ValueError("task.options.ce_weight must be > 0 for a single-encoder classifier")
        self.model = model
        self.modality = modality

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        x = batch[self.modality]
        present = present_mask(batch, f"has_{self.modality}", x.shape[0], x.device)
        target, keep = self._targets(batch)
        inputs, target, keep, index, lam = self._mix({"x": x}, target, keep)
        if lam < 1.0:
            present = present & present[index]
        logits = self.model(inputs["x"])
        keep = keep & present
        loss = self.options.ce_weight * self._classification_loss(logits, target, keep)
        logs = {"ce": float(loss.detach())}
        if target.ndim == 1:  # hard labels: not mixed (mixup gives soft (B, K) targets even when λ rounds to 1)
            hit = (logits.detach().argmax(-1) == target) & keep
            logs["top1"] = float(hit.sum()) / max(int(keep.sum()), 1)
        return loss, logs


@register_task("classification", options=ClassificationOptions)
def build_classification(model: nn.Module, options: ClassificationOptions, data: TaskData) -> ClassificationTask:
    """One encoder (audio or video, read from its ``input_kind``) trained with CE / BCE."""
    return ClassificationTask(model, options, num_classes=data.num_classes, multilabel=data.multilabel)


@register_task("av_classification", options=AVClassificationOptions)
def build_av_classification(model: nn.Module, options: AVClassificationOptions, data: TaskData) -> AVClassificationTask:
    """An audio-visual model trained with CE (+ per-modality CE) + AVC + IMC (MMT)."""
    if not isinstance(model, AVModel):
        raise TypeError(
            f"task av_classification needs an audio-visual model (AVModel), got {type(model).__name__}; "
            "use task: {name: classification} for one encoder"
        )
    return AVClassificationTask(model, options, num_classes=data.num_classes, multilabel=data.multilabel)
