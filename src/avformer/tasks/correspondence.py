"""Audio-visual correspondence (AVC) and sound-source localisation: "Objects that Sound" (AVE-Net and AVOL-Net).

Paper: Arandjelović & Zisserman, "Objects that Sound", ECCV 2018, https://arxiv.org/abs/1712.06651; the task is
the audio-visual correspondence of "Look, Listen and Learn" (Arandjelović & Zisserman, ICCV 2017). No official code;
the heads are :mod:`avformer.models.localization`.

Each training clip is paired with its own audio (a positive) or with the audio of another clip of the batch (a
negative); the model says whether they belong together. No label and no box is read: the pairing is the only
supervision. Two heads learn from the same pairs (``heads``):

* ``ave``: AVE-Net's distance head on the two encoders' pooled features; cross-entropy over [mismatch, match].
* ``avol``: AVOL-Net's localisation head on the encoders' feature maps (the video's map per place and frame, the
  audio's over time); the clip logit is the maximum over places (multiple-instance learning), binary cross-entropy.
  Its map of place logits is the localisation heatmap (:meth:`CorrespondenceTask.localize`,
  :mod:`avformer.eval.localization`, ``avformer localize``).

The default is ``both`` (the loss is ``ave_weight · CE + avol_weight · BCE``): the two heads share the encoders and
each is reported on its own. On the synthetic event data (sound bursts on the frames of one object's visual
events), only the place-wise AVOL head can tell which object's events the bursts follow; the pooled AVE features see
every object's events at once (docs/localization.md).

Pairs (``correspondence_pairs``): exactly ``round(negative_fraction · n)`` of the ``n`` usable clips of a batch
(both streams present) get another usable clip's audio, chosen at random among the others, never their own; the
draw is a function of ``seed`` and the batch's clip indices (``batch["index"]``) only, so a validation set always
gets the same pairs and a training batch the same pairs in every run. Validation reports the accuracy of each
trained head (``ave_acc``, ``avol_acc``; chance 0.5) and ``acc`` of the mean of their match probabilities.

Model: a VATT with one trunk per modality whose encoders give feature maps
(:meth:`~avformer.models.vit.ViTEncoder.forward_features_with_map`): a per-frame CNN video stem (``video_stem:
frame_cnn``, map ``(B, width, T, h, w)`` before the max over space) and a CNN spectrogram stem (``audio_stem: cnn``,
map ``(B, width, F', T')``, max over frequency gives the audio's time course), or patch stems (their output tokens on
the grid). The VATT's own projection heads get no gradient; DropToken is not applied (the map needs every frame).
One process only (the heads run outside the model's forward; :func:`~avformer.tasks.base.two_tower_vatt`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.layers.conv_embed import Places
from avformer.models.base import EncoderOutput
from avformer.models.localization import AVOL_NORMS, AVOL_TIMES, AVEHead, AVOLHead, AVOLOutput
from avformer.models.task_heads import attach_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.base import Batch, av_present, one_view_keys, two_tower_vatt
from avformer.tasks.registry import TaskData, register_task

__all__ = ["CorrespondenceOptions", "CorrespondenceTask", "audio_time_course", "correspondence_pairs"]

HEADS = ("ave", "avol", "both")


@dataclass(frozen=True)
class CorrespondenceOptions:
    """Options of the ``av_correspondence`` task (see the module docstring)."""

    heads: str = "both"  # ave | avol | both
    ave_weight: float = 1.0
    avol_weight: float = 1.0
    embed_dim: int = 128  # shared embedding width of both heads (paper: 128)
    avol_time: str = "aligned"  # aligned: compare time courses (event timing; ours) | pooled: time averages (paper)
    avol_norm: str = "clip"  # clip: one norm per clip (ours) | location: per place (the paper's cosine)
    temporal_kernel: int = 3  # temporal extent of the AVOL embeddings' first layer (1 = the paper's 1×1)
    spatial_kernel: int = 1  # spatial extent of AVOL's video embedding's first layer (1 = the paper's 1×1)
    negative_fraction: float = 0.5  # share of each batch's clips paired with another clip's audio
    seed: int = 0  # of the pairing (with the batch's clip indices)

    def __post_init__(self) -> None:
        if self.heads not in HEADS:
            raise ValueError(f"heads must be one of {HEADS}, got {self.heads!r}")
        if self.avol_time not in AVOL_TIMES:
            raise ValueError(f"avol_time must be one of {AVOL_TIMES}, got {self.avol_time!r}")
        if self.avol_norm not in AVOL_NORMS:
            raise ValueError(f"avol_norm must be one of {AVOL_NORMS}, got {self.avol_norm!r}")
        if self.ave_weight < 0 or self.avol_weight < 0:
            raise ValueError("ave_weight and avol_weight must be >= 0")
        if self.embed_dim < 1 or any(k < 1 or k % 2 == 0 for k in (self.temporal_kernel, self.spatial_kernel)):
            raise ValueError("embed_dim must be >= 1, temporal_kernel and spatial_kernel odd and >= 1")
        if not 0.0 < self.negative_fraction < 1.0:
            raise ValueError(f"negative_fraction must be in (0, 1), got {self.negative_fraction}")

    @property
    def uses(self) -> tuple[str, ...]:
        """The heads that train: ``("ave",)``, ``("avol",)`` or both."""
        return ("ave", "avol") if self.heads == "both" else (self.heads,)


def correspondence_pairs(
    index: Tensor, usable: Tensor, seed: int, negative_fraction: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Which audio each clip of a batch is paired with.

    Args:
        index: (B,) int clip indices (``batch["index"]``): with ``seed`` they fix the draw.
        usable: (B,) bool: the clip has both streams (only usable clips lend or borrow audio).
        seed: seed of the draw.
        negative_fraction: share of the usable clips that get another clip's audio (rounded; none when fewer than
            two clips are usable).

    Returns:
        ``(partner, target)``: (B,) long, the row whose audio clip ``i`` is paired with (``i`` itself for a
        positive and for an unusable clip), and (B,) float, 1 for a positive, 0 for a negative. A negative's partner is
        always another usable row.
    """
    B = index.shape[0]
    key = zlib.crc32(f"{seed}:".encode() + index.detach().cpu().to(torch.int64).numpy().tobytes())
    gen = torch.Generator().manual_seed(key)
    rows = torch.arange(B)
    partner = rows.clone()
    ok = torch.nonzero(usable.detach().cpu().bool()).flatten()
    n = ok.numel()
    if n >= 2:
        k = min(round(negative_fraction * n), n)
        neg = ok[torch.randperm(n, generator=gen)[:k]]  # rows that get another clip's audio
        pos_in_ok = {int(r): j for j, r in enumerate(ok)}
        for r in neg.tolist():
            j = pos_in_ok[r]
            shift = int(torch.randint(1, n, (1,), generator=gen))  # another usable clip, never itself
            partner[r] = ok[(j + shift) % n]
    target = (partner == rows).float()
    return partner.to(index.device), target.to(index.device)


def audio_time_course(audio_map: Tensor) -> Tensor:
    """The audio feature map as a sequence over time, (B, C, T'): a spectrogram map (B, C, F', T') is max-pooled
    over frequency; a sequence map (B, C, T') is returned as it is."""
    if audio_map.ndim == 4:
        return audio_map.amax(2)
    if audio_map.ndim == 3:
        return audio_map
    raise ValueError(f"audio feature map must be (B, C, F', T') or (B, C, T'), got shape {tuple(audio_map.shape)}")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the rows of ``mask``; an attached zero when no row counts."""
    if not mask.any():
        return values.sum() * 0.0
    return values[mask].mean()


class CorrespondenceTask:
    """AVE-Net / AVOL-Net correspondence on a two-tower VATT (see the module docstring).

    Args:
        model: a VATT with one trunk per modality; the heads are attached to it as ``model.task_heads``
            (``ave``, ``avol``), so they train, checkpoint and resume with it.
        options: see :class:`CorrespondenceOptions`.
    """

    def __init__(self, model: VisionAudioTextTransformer, options: CorrespondenceOptions) -> None:
        self.model = model
        self.options = options
        video_enc, audio_enc = model.encoders["video"], model.encoders["audio"]
        heads: dict[str, nn.Module] = {}
        if "ave" in options.uses:
            heads["ave"] = AVEHead(video_enc.num_features, audio_enc.num_features, options.embed_dim)
        if "avol" in options.uses:
            heads["avol"] = AVOLHead(
                _map_channels(video_enc),
                _map_channels(audio_enc),
                options.embed_dim,
                time=options.avol_time,
                norm=options.avol_norm,
                temporal_kernel=options.temporal_kernel,
                spatial_kernel=options.spatial_kernel,
            )
        self.heads = attach_task_heads(model, heads)
        self.unused_parameters = True  # the text trunk and VATT's projection heads get no gradient
        self.last_outputs: dict[str, Tensor] | None = None

    def encode_video(self, video: Tensor) -> tuple[EncoderOutput, Tensor]:
        """The video encoder's features and its feature map (B, C, T, h, w).

        Raises:
            ValueError: the video encoder has no places (a per-frame token stem without a map).
        """
        fv, vmap = self.model.encoders["video"].forward_features_with_map(video)
        if vmap.ndim != 5:
            raise ValueError(
                f"the video encoder's map is {tuple(vmap.shape)}, not (B, C, T, h, w): AVOL needs a video stem with "
                "places (video_stem frame_cnn, conv or linear tubelets)"
            )
        return fv, vmap

    def video_places(self) -> Places:
        """Where the places of AVOL's heatmap (the video map's last two axes, height and width) sit on the frame."""
        p = self.model.encoders["video"].map_places()
        return Places(p.stride[-2:], p.first[-2:])

    def encode_audio(self, audio: Tensor) -> tuple[EncoderOutput, Tensor]:
        """The audio encoder's features and its time course (B, C, T') (:func:`audio_time_course` of its map)."""
        fa, amap = self.model.encoders["audio"].forward_features_with_map(audio)
        return fa, audio_time_course(amap)

    def pair_logits(self, batch: Batch, partner: Tensor) -> dict[str, Tensor]:
        """Per-row match logits of each head for the pairs (row i's video, row partner[i]'s audio)."""
        fv, vmap = self.encode_video(batch["video"])
        fa, aseq = self.encode_audio(batch["audio"])
        out: dict[str, Tensor] = {}
        if "ave" in self.heads:
            logits = self.heads["ave"](fv.pooled, fa.pooled[partner]).logits  # (B, 2)
            out["ave"] = logits[:, 1] - logits[:, 0]
        if "avol" in self.heads:
            head = self.heads["avol"]
            v = head.embed_video(vmap)  # every clip's video and audio embedded once, then paired
            a = head.embed_audio(aseq, v.shape[2])[partner]
            out["avol"] = head.score(v, a).logit
        return out

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if "index" not in batch:
            raise ValueError("av_correspondence draws its pairs from the batch's clip indices (batch['index'])")
        has_audio, has_video = av_present(batch)
        usable = has_audio & has_video
        partner, target = correspondence_pairs(
            batch["index"], usable, self.options.seed, self.options.negative_fraction
        )
        scores = self.pair_logits(batch, partner)
        weights = {"ave": self.options.ave_weight, "avol": self.options.avol_weight}
        loss = torch.zeros((), device=target.device)
        logs: dict[str, float] = {}
        for name, logit in scores.items():
            # AVE: cross-entropy over [mismatch, match] == BCE on their logit difference
            term = _masked_mean(F.binary_cross_entropy_with_logits(logit.float(), target, reduction="none"), usable)
            loss = loss + weights[name] * term
            logs[f"loss_{name}"] = float(term.detach())
            if usable.any():
                logs[f"{name}_acc"] = float(((logit > 0).float() == target)[usable].float().mean())
        return loss, logs

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, "av_correspondence")
        usable = res["has_audio"] & res["has_video"]
        partner, target = correspondence_pairs(
            batch["index"], usable, self.options.seed, self.options.negative_fraction
        )
        scores = self.pair_logits(batch, partner)
        return res | {"target": target, "usable": usable} | {f"{k}_logit": v.float() for k, v in scores.items()}

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        usable = outputs["usable"].bool()
        target = outputs["target"][usable]
        res: dict[str, float] = {"pairs": float(usable.sum()), "positive_fraction": float(target.mean())}
        probs = []
        for name in self.options.uses:
            logit = outputs[f"{name}_logit"][usable]
            res[f"{name}_acc"] = float(((logit > 0).float() == target).float().mean())
            probs.append(torch.sigmoid(logit))
        res["acc"] = float(((torch.stack(probs).mean(0) > 0.5).float() == target).float().mean())
        return res

    def chance_losses(self, batch_size: int) -> dict[str, float]:
        """A balanced binary decision learned nothing: ``ln 2`` per head."""
        return {f"loss_{name}": math.log(2.0) for name in self.options.uses}

    def avol(self, video: Tensor, audio: Tensor) -> AVOLOutput:
        """AVOL's output for each clip with its own audio: ``logit_map`` (B, h, w) over the video map's places (the
        heatmap), ``logit`` (B,) the clip's correspondence logit (with autograd, for gradient heatmaps).

        Raises:
            ValueError: the task was trained without the AVOL head (``heads: ave``).
        """
        if "avol" not in self.heads:
            raise ValueError("this run trained no localisation head (task.options.heads: ave); train avol or both")
        return self.heads["avol"](self.encode_video(video)[1], self.encode_audio(audio)[1])

    @torch.no_grad()
    def localize(self, video: Tensor, audio: Tensor) -> AVOLOutput:
        """:meth:`avol` without autograd."""
        return self.avol(video, audio)


def _map_channels(encoder: nn.Module) -> int:
    """Channels of an encoder's feature map: the CNN stem's width, else the token width."""
    stem = getattr(getattr(encoder, "patch_embed", None), "stem", None)
    width = getattr(stem, "width", None)
    return int(width) if width is not None else int(encoder.num_features)  # type: ignore[arg-type]


@register_task("av_correspondence", options=CorrespondenceOptions, supervised=False)
def build_av_correspondence(model: nn.Module, options: CorrespondenceOptions, data: TaskData) -> CorrespondenceTask:
    """Objects that Sound: audio-visual correspondence (AVE-Net) and sound-source localisation (AVOL-Net)."""
    if data.num_views != 1:
        raise ValueError(
            f"av_correspondence takes one view per clip: set data.views.num_views to 1 (got {data.num_views})"
        )
    return CorrespondenceTask(two_tower_vatt(model, "av_correspondence", data.modalities), options)
