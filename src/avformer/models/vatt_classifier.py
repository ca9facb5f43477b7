"""Fine-tuning a (pretrained) VATT: one of its encoders, video or audio, with a linear classifier on its pooled output.

    avformer train --config configs/experiment/av_digits_vatt_tiny_finetune_video.yaml

``vatt_classifier`` is an ordinary single-encoder model for ``avformer train`` / ``eval`` / ``predict`` (``input_kind``
``video``, or ``spectrogram`` / ``waveform`` after the VATT's audio input). With ``init_from`` (a run folder of
``avformer pretrain`` or a checkpoint) the architecture *and* the weights come from that run (its EMA weights when
it kept them); the other overrides are applied on top (e.g. ``drop_path_rate``) and must keep the weights' shapes.
Without ``init_from`` it is the same architecture from random initialisation (``base`` + overrides), the baseline
that shows what pretraining buys.

Choices (VATT fine-tunes its backbones for classification; the details here are ours):
    * Only the chosen modality's tokenizer, AGG token and trunk are kept (the shared trunk for the
      modality-agnostic variant); the other towers, the common-space heads and the temperatures are dropped, so the
      parameter count, the optimizer and DDP see just the encoder and the new head.
    * DropToken is off while fine-tuning (``drop_token_rate=0`` unless set): every token is seen.
    * The classifier is a fresh ``Linear(D, num_classes)`` (zero bias, truncated-normal weight, std 0.02).
    * A fine-tuned run stands on its own: the variant is registered with the overrides that rebuild its architecture
      without ``init_from`` (the pretraining run's model name as ``base``, its overrides, then these; see
      :func:`avformer.models.registry.standalone_overrides`), each checkpoint stores them (``model_overrides``), and
      ``load_run`` builds from them, so ``avformer eval`` / ``predict`` work after the pretraining run is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from avformer.config import from_dict
from avformer.models.base import EncoderOutput
from avformer.models.registry import create_model, register_model
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.utils.checkpoint import find_checkpoint, load_checkpoint

__all__ = ["VATTClassifier", "vatt_classifier"]


class VATTClassifier(nn.Module):
    """One VATT encoder (``video`` or ``audio``) + a linear head: the encoder API of every single-encoder model.

    Args:
        vatt: a VATT model; it is pruned in place to the encoder of the modality (tokenizer, AGG token, trunk).
        modality: ``video`` or ``audio``.
        num_classes: classifier outputs (0: ``forward`` returns the pooled features).
    """

    def __init__(self, vatt: VisionAudioTextTransformer, modality: str, num_classes: int = 0) -> None:
        super().__init__()
        if modality not in ("video", "audio"):
            raise ValueError(f"modality must be 'video' or 'audio', got {modality!r}")
        if not isinstance(vatt, VisionAudioTextTransformer):
            raise TypeError(f"VATTClassifier wraps a VATT model, got {type(vatt).__name__}")
        self.modality = modality
        self.input_kind = "video" if modality == "video" else vatt.cfg.audio_input
        _prune(vatt, modality)
        self.vatt = vatt
        self.num_features = vatt.cfg.trunk(modality)[0]
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    @property
    def default_input(self) -> tuple[int, ...]:
        """One sample's shape at the configured size: (C, T, H, W) video or the VATT's audio input shape."""
        c = self.vatt.cfg
        if self.modality == "video":
            return (c.in_chans, c.num_frames, c.img_size, c.img_size)
        return c.audio_input_shape

    def forward_features(self, x: torch.Tensor) -> EncoderOutput:
        return self.vatt.encode(self.modality, x)

    def forward_head(self, feats: EncoderOutput) -> torch.Tensor:
        return self.head(feats.pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def no_weight_decay(self) -> set[str]:
        return {f"vatt.{n}" for n in self.vatt.no_weight_decay()}

    def set_fused(self, fused: bool) -> None:
        self.vatt.set_fused(fused)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vatt.set_grad_checkpointing(enable)


def _prune(vatt: VisionAudioTextTransformer, modality: str) -> None:
    """Drop everything ``vatt.encode(modality, ·)`` does not use (other towers, heads, temperatures)."""
    for other in ("video", "audio", "text"):
        if other == modality:
            continue
        if other in vatt.encoders:
            del vatt.encoders[other]
    for name in ("head_video_va", "head_audio_va", "head_video_vt", "head_text_vt", "classifiers"):
        delattr(vatt, name)
    for name in ("logit_scale_va", "logit_scale_vt"):
        delattr(vatt, name)


def _architecture(
    init_from: str | None, base: str, overrides: dict[str, Any], *, weights: bool = True
) -> tuple[str, dict[str, Any], VisionAudioTextTransformer | None, Path | None]:
    """``(VATT variant, its overrides, the pretrained model or None, its checkpoint or None)``; with
    ``weights=False`` only the pretraining run's config is read (no model is built)."""
    overrides = {"drop_token_rate": 0.0, **overrides}
    if init_from is None:
        return base, overrides, None, None
    from avformer.models.loading import load_vatt_run  # here: loading imports this family through the table

    if not Path(init_from).exists():
        raise ValueError(f"init_from: no such run folder or checkpoint: {init_from}")
    pretrained = path = None
    try:
        if weights:
            cfg, pretrained, path = load_vatt_run(init_from)
        else:
            cfg = from_dict(load_checkpoint(find_checkpoint(init_from))["config"])
    except (FileNotFoundError, TypeError) as e:
        raise ValueError(f"init_from {init_from}: {e}") from e
    return cfg.model.name, {**dict(cfg.model.overrides), **overrides}, pretrained, path


def _standalone(
    *, init_from: str | None = None, base: str = "vatt_tiny", modality: str = "video", **overrides: Any
) -> dict[str, Any] | None:
    """The overrides of the same architecture without ``init_from``: what a fine-tuned checkpoint carries."""
    if init_from is None:
        return None
    overrides.pop("num_classes", None)
    name, kwargs, _, _ = _architecture(init_from, base, overrides, weights=False)
    return {"base": name, **kwargs, "modality": modality}


@register_model("vatt_classifier", standalone=_standalone)
def vatt_classifier(
    *,
    init_from: str | None = None,
    base: str = "vatt_tiny",
    modality: str = "video",
    num_classes: int = 0,
    **overrides: Any,
) -> VATTClassifier:
    """A VATT encoder + linear classifier; pretrained weights from ``init_from`` (see the module docstring).

    Raises:
        ValueError: ``init_from`` does not exist, is not a VATT run, or an override changes a weight's shape.
    """
    name, kwargs, pretrained, path = _architecture(init_from, base, overrides)
    vatt = create_model(name, **kwargs)
    if pretrained is not None:
        try:
            vatt.load_state_dict(pretrained.state_dict())
        except RuntimeError as e:
            raise ValueError(f"init_from {path}: the overrides change the pretrained architecture: {e}") from e
    if not isinstance(vatt, VisionAudioTextTransformer):
        raise ValueError(f"base {base!r} is not a VATT model")
    return VATTClassifier(vatt, modality, num_classes)
