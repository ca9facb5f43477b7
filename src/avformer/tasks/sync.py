"""Audio-visual synchronisation: classify the temporal offset of the audio against the video.

Paper: Chen et al. 2021, "Audio-Visual Synchronisation in the Wild" (BMVC), https://arxiv.org/abs/2112.04432:
a transformer over audio and video tokens predicts the offset between the two streams as one of a grid of classes.
The closest public code is its follow-up SparseSync (Iashin et al. 2022, v-iashin/SparseSync,
``configs/sparse_sync.yaml``: 21 classes over ±2.0 s, 5-s windows on VGGSound-Sparse).

Here the data makes the target (``supervised=False``: no manifest label is read in training): with
``data.views.audio_offset_grid`` each sample's audio and video windows are placed ``o`` seconds apart inside the
decoded file, ``o`` one offset of the grid (:class:`~avformer.data.config.ViewConfig`; real media of the file, never
padding), and the sample carries its class ``audio_offset_class``. The model is any
:class:`~avformer.models.av_model.AVModel` whose fusion mixes the two token sequences (the recipes: cross-attention,
TCaF-style, with time-aligned embeddings), built with ``num_classes`` = the grid size. Two heads score the offsets
(``head``), trained with cross-entropy:

* ``correlation`` (default): per class ``k``, the mean over the overlap of ``<W_a a_tau, W_v v_(tau + s_k)>`` on
  per-time features of the *fused* tokens (:class:`CorrelationHead`, attached as a task head), ``s_k`` the class's
  offset in time steps; the comparison across offsets is built in, the transformer learns what to compare;
* ``cls``: the model's own classifier on its pooled (cls) feature, as Chen et al. It stayed at chance within our CPU
  budgets (docs/sync.md).

Validation reports, on the same clips: exact accuracy (``sync_acc``), accuracy within one class (``sync_acc_pm1``),
the envelope-correlation baseline's two numbers (``baseline_acc``, ``baseline_acc_pm1``;
:mod:`avformer.metrics.sync`), chance (``chance`` = 1 / K) and the loss.

What differs from Chen et al. / SparseSync: tiny encoders on log-mel and on frames trained from scratch (no
pretrained backbones, no selector tokens), the correlation head, and a window and grid chosen to fit short clips
(docs/sync.md). The anchor stream's window lies in the same place whatever the offset
(``ViewConfig.grid_anchor``), and ``grid_margin`` keeps windows off the file's first and last frames.

Batch contract: ``video`` (B, C, T, H, W), ``audio`` (B, 1, F, T) log-mel, ``audio_offset_class`` (B,) int64,
``audio_offset`` (B,) seconds (checked against the task's grid), optional ``has_video`` / ``has_audio``. Clips without
one of the streams are left out of the loss and the metrics.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.metrics.sync import envelope_baseline_scores, offset_accuracy, offset_grid, offset_shifts
from avformer.models.av_model import AVModel
from avformer.models.base import EncoderOutput
from avformer.models.task_heads import attach_task_heads
from avformer.tasks.base import Batch, av_present, one_view_keys
from avformer.tasks.registry import TaskData, register_task

__all__ = ["CorrelationHead", "SyncOptions", "SyncTask", "time_sequence"]

DEFAULT_OFFSETS = offset_grid(0.5, 9)  # -0.5, -0.375, ..., +0.5 s
HEADS = ("correlation", "cls")


@dataclass(frozen=True)
class SyncOptions:
    """Options of the ``av_sync`` task.

    Attributes:
        offsets: the offset classes in seconds; must equal ``data.views.audio_offset_grid`` (every batch is checked).
        window_seconds: the window length (``data.clip_seconds``); offsets become time steps (video frames,
            tokens) with ``steps / window_seconds``, and must be whole steps.
        head: ``correlation`` or ``cls`` (see the module docstring).
        head_dim: the correlation head's feature width ``E``.
        label_smoothing: of the cross-entropy.
        baseline: compute the envelope-correlation baseline in validation.
    """

    offsets: tuple[float, ...] = DEFAULT_OFFSETS
    window_seconds: float = 2.0
    head: str = "correlation"  # "correlation" (per-offset similarity of the fused time tokens) | "cls" (model head)
    head_dim: int = 64  # correlation head: width of the audio / video time features it compares
    label_smoothing: float = 0.0
    baseline: bool = True

    def __post_init__(self) -> None:
        offsets = tuple(float(x) for x in self.offsets)
        object.__setattr__(self, "offsets", offsets)
        if len(offsets) < 2 or any(b <= a for a, b in itertools.pairwise(offsets)):
            raise ValueError(f"offsets must hold >= 2 ascending values, got {offsets}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.head_dim < 1:
            raise ValueError(f"head_dim must be >= 1, got {self.head_dim}")
        if not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {self.window_seconds}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


def time_sequence(out: EncoderOutput, input_kind: str) -> Tensor:
    """(B, T, D) one feature per time step of an encoder output: a spectrogram grid (F', T') averaged over its
    frequency bands, a video grid (t, h, w) (or (t,)) over space, a waveform grid (N,) as it is.

    Raises:
        ValueError: a spectrogram grid without a time axis (a CNN stem that pooled time away) or dropped tokens.
    """
    tokens, grid = out.tokens, tuple(out.grid)
    B, N, D = tokens.shape
    if math.prod(grid) != N:
        raise ValueError(f"the correlation head needs every token (grid {grid}, {N} tokens)")
    if input_kind == "spectrogram":
        if len(grid) != 2:
            raise ValueError(
                f"the audio encoder's tokens have no time axis (grid {grid}): use patches over time, e.g. "
                "stem: linear, patch_size: [num_mel_bins, 4]"
            )
        return tokens.view(B, grid[0], grid[1], D).mean(dim=1)  # (B, T', D)
    return tokens.view(B, grid[0], -1, D).mean(dim=2)  # (B, t, D)


class CorrelationHead(nn.Module):
    """Per offset class ``k``: the mean over the overlap of ``<W_a a_tau, W_v v_(tau + s_k)> / sqrt(E)``, plus a
    bias per class, on per-time features of the fused audio and video tokens (a learned version of the envelope
    baseline's correlation; SyncNet-style distances over offsets, Chung & Zisserman 2016).

    Args:
        audio_dim, video_dim: widths of the fused tokens.
        dim: ``E``, the width of the compared features.
        num_offsets: ``K``.
    """

    def __init__(self, audio_dim: int, video_dim: int, dim: int, num_offsets: int) -> None:
        super().__init__()
        self.audio_proj = nn.Sequential(nn.LayerNorm(audio_dim), nn.Linear(audio_dim, dim))
        self.video_proj = nn.Sequential(nn.LayerNorm(video_dim), nn.Linear(video_dim, dim))
        self.bias = nn.Parameter(torch.zeros(num_offsets))
        self.dim = dim

    def forward(self, audio: Tensor, video: Tensor, shifts: list[int]) -> Tensor:
        """``audio`` (B, T_a, D_a) and ``video`` (B, T, D_v) per-time features -> (B, K) scores; the audio is
        resampled to the video's T steps; ``shifts[k]``: the offset of class ``k`` in those steps."""
        T = video.shape[1]
        if max(abs(s) for s in shifts) >= T:
            raise ValueError(f"an offset of {max(abs(s) for s in shifts)} steps leaves no overlap of {T} time steps")
        if audio.shape[1] != T:
            audio = F.adaptive_avg_pool1d(audio.transpose(1, 2), T).transpose(1, 2)
        pa, pv = self.audio_proj(audio), self.video_proj(video)  # (B, T, E)
        sim = torch.einsum("bie,bje->bij", pa, pv) / math.sqrt(self.dim)  # (B, T, T): audio tau x video j
        # class k reads the diagonal j = tau + s_k (the module docstring of avformer.metrics.sync has the sign)
        scores = [torch.diagonal(sim, offset=s, dim1=1, dim2=2).mean(dim=-1) for s in shifts]
        return torch.stack(scores, dim=1) + self.bias.to(sim.dtype)


def _fused_width(model: AVModel) -> tuple[int, int]:
    """Widths of the fused audio and video tokens: the fusion's own width for the token fusions, else the encoders'."""
    joint = getattr(model.fusion, "joint", None)
    if joint is not None and isinstance(getattr(joint, "dim", None), int):
        return joint.dim, joint.dim
    return int(model.audio_encoder.num_features), int(model.video_encoder.num_features)


class SyncTask:
    """Offset classification with cross-entropy (see the module docstring).

    Args:
        model: an :class:`AVModel` with ``num_classes == len(options.offsets)``.
        options: see :class:`SyncOptions`. With ``head="correlation"`` the task attaches its
            :class:`CorrelationHead` to the model (``model.task_heads``; :mod:`avformer.models.task_heads`).
    """

    def __init__(self, model: AVModel, options: SyncOptions) -> None:
        self.model = model
        self.options = options
        self.num_classes = len(options.offsets)
        self.unused_parameters = True  # the contrastive projections (embed=False) get no gradient
        self.last_outputs: dict[str, Tensor] | None = None
        self.head: CorrelationHead | None = None
        if options.head == "correlation":
            da, dv = _fused_width(model)
            heads = attach_task_heads(model, {"sync": CorrelationHead(da, dv, options.head_dim, self.num_classes)})
            head = heads["sync"]
            assert isinstance(head, CorrelationHead)
            self.head = head

    def scores(self, batch: Batch) -> Tensor:
        """(B, K) offset logits of a batch."""
        has_a, has_v = av_present(batch)
        if self.head is None:
            return self.model(batch["audio"], batch["video"], has_a, has_v, embed=False).logits
        feats = self.model.forward_features(batch["audio"], batch["video"], has_a, has_v)
        audio = time_sequence(feats.audio, str(getattr(self.model.audio_encoder, "input_kind", "spectrogram")))
        video = time_sequence(feats.video, "video")
        shifts = offset_shifts(self.options.offsets, video.shape[1] / self.options.window_seconds)
        return self.head(audio, video, shifts)

    def _target(self, batch: Batch) -> Tensor:
        target = batch.get("audio_offset_class")
        if not isinstance(target, Tensor):
            raise ValueError("av_sync needs samples with audio_offset_class: set data.views.audio_offset_grid")
        offsets = torch.tensor(self.options.offsets, device=target.device)
        if (target < 0).any() or (target >= len(offsets)).any():
            raise ValueError(f"audio_offset_class outside the task's {len(offsets)} offsets")
        got = batch.get("audio_offset")
        if isinstance(got, Tensor) and not torch.allclose(got.float(), offsets[target].float(), atol=1e-4):
            raise ValueError(
                "the samples' audio offsets differ from task.options.offsets: make data.views.audio_offset_grid "
                f"and task.options.offsets the same list (task: {list(self.options.offsets)})"
            )
        return target.long()

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        target = self._target(batch)
        logits = self.scores(batch)
        has_a, has_v = av_present(batch)
        keep = has_a & has_v
        if not keep.any():
            loss = logits.sum() * 0.0
            return loss, {"ce": 0.0}
        loss = F.cross_entropy(logits[keep].float(), target[keep], label_smoothing=self.options.label_smoothing)
        acc = offset_accuracy(logits[keep].detach().argmax(dim=1), target[keep])
        return loss, {"ce": float(loss.detach()), "acc": acc}

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, "av_sync")
        res["target"] = self._target(batch)
        res["logits"] = self.scores(batch).float()
        if self.options.baseline and batch["audio"].ndim == 4:
            fps = batch["video"].shape[2] / self.options.window_seconds
            shifts = offset_shifts(self.options.offsets, fps)
            res["baseline_scores"] = envelope_baseline_scores(batch["audio"], batch["video"], shifts)
        return res

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        keep = outputs["has_audio"].bool() & outputs["has_video"].bool()
        target, logits = outputs["target"][keep], outputs["logits"][keep]
        pred = logits.argmax(dim=1)
        metrics = {
            "sync_acc": offset_accuracy(pred, target),
            "sync_acc_pm1": offset_accuracy(pred, target, 1),
            "chance": 1.0 / self.num_classes,
            "loss": float(F.cross_entropy(logits, target)) if target.numel() else float("nan"),
            "clips": float(target.numel()),
        }
        if "baseline_scores" in outputs:
            base = outputs["baseline_scores"][keep].argmax(dim=1)
            metrics["baseline_acc"] = offset_accuracy(base, target)
            metrics["baseline_acc_pm1"] = offset_accuracy(base, target, 1)
        return metrics

    def chance_losses(self, batch_size: int) -> dict[str, float]:
        """Cross-entropy of a uniform guess over the offsets."""
        return {"ce": math.log(self.num_classes)}


@register_task("av_sync", options=SyncOptions, supervised=False)
def build_sync(model: nn.Module, options: SyncOptions, data: TaskData) -> SyncTask:
    """Audio-visual synchronisation: the audio's offset against the video as a class of a grid (data.views)."""
    if not isinstance(model, AVModel):
        raise TypeError(
            f"av_sync needs an audio-visual model (AVModel, e.g. xattn_tiny), got {model.__class__.__name__}"
        )
    if set(data.modalities) != {"video", "audio"}:
        raise ValueError("av_sync reads video and audio: set data.modalities to [video, audio]")
    if data.num_views != 1:
        raise ValueError(f"av_sync takes one view per clip (data.views.num_views = 1), got {data.num_views}")
    if model.num_classes != len(options.offsets):
        raise ValueError(
            f"the model has {model.num_classes} outputs but the task {len(options.offsets)} offsets: set "
            f"model.overrides.num_classes: {len(options.offsets)}"
        )
    return SyncTask(model, options)
