"""CrissCross: audio-visual self-supervision without negatives, with relaxed cross-modal synchronicity.

Paper: Sarkar & Etemad 2023, "Self-Supervised Audio-Visual Representation Learning with Relaxed Cross-Modal
Synchronicity" (AAAI), https://arxiv.org/abs/2111.05329; official code pritamqu/CrissCross
(``crisscross/train/models/crisscross.py``, ``configs/pretext/kinetics400/crisscross.yaml``). Two views of one clip
(``data.views.num_views: 2``, placed by ``data.views.view_gap``), each through its modality's encoder, a projector
``g`` and a predictor ``h`` (SimSiam, Chen & He 2021)::

    z = g(f(x)),  p = h(z),  D(p, z) = -cos(p, stopgrad(z)),  S(x, y) = D(p_x, z_y) / 2 + D(p_y, z_x) / 2

    loss = ( intra_weight · (S(v1, v2) + S(a1, a2))           intra-modal
           + sync_weight  · (S(v1, a1) + S(v2, a2))           synchronous cross-modal
           + async_weight · (S(v1, a2) + S(a1, v2)) ) / n     asynchronous cross-modal (views of other times)

with ``n`` = 2 × the number of relation groups whose weight is > 0 (the official code's ``num_loss``; with every
weight 1 the loss is the mean of the six symmetrised terms). A cross-modal term uses the predictor of the modality it
predicts from (``D(p_v1, z_a2)``: the video predictor on video view 1 against audio view 2's stopped projection).

As in the official code: one projector and one predictor per modality, projector = ``proj_layers`` × (Linear, BN,
ReLU) with no ReLU after the last BN, predictor = Linear, BN, ReLU, Linear (a bottleneck of ``pred_hidden``), no
normalisation before the predictor, no momentum encoder. Widths are options (the paper: 512-d features, 2048-d
projections, 512-d predictor bottleneck; defaults here: ``proj_dim`` 256, ``pred_hidden`` = proj_dim / 4, for the
tiny encoders). Not reproduced: the paper's LARC-wrapped Adam and its constant 10× learning rate for the predictors
(the trainer's AdamW and one schedule drive every parameter).

Collapse monitor: the per-dimension standard deviation of the L2-normalised projections (SimSiam's diagnostic; ≈
1/√d for well-spread embeddings, → 0 when they collapse to a point), in training logs (``std_video``,
``std_audio``) and validation (``embed_std_video``, ``embed_std_audio``). Validation embeds one view per clip and
reports audio↔video retrieval in the projection space (``a2v_mAP`` with labels, for diagnosis only).

Batch contract: ``video`` (B, V, C, T, H, W) and ``audio`` (B, V, ...) with V = 2 views in training, optional
``has_video`` / ``has_audio`` (B, V); validation batches hold one view. Labels are never read in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.metrics.retrieval import retrieval_report
from avformer.models.task_heads import attach_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.base import Batch, one_view_keys, two_tower_vatt
from avformer.tasks.registry import TaskData, register_task

__all__ = [
    "CrissCrossOptions",
    "CrissCrossTask",
    "embedding_std",
    "negative_cosine",
    "predictor",
    "projector",
    "retrieval_and_spread",
]

_MODALITIES = ("video", "audio")


@dataclass(frozen=True)
class CrissCrossOptions:
    """Options of the ``crisscross`` task (see the module docstring)."""

    intra_weight: float = 1.0  # v1-v2 and a1-a2
    sync_weight: float = 1.0  # v1-a1 and v2-a2
    async_weight: float = 1.0  # v1-a2 and a1-v2
    proj_dim: int = 256  # projector width and output
    proj_layers: int = 3  # (Linear, BN, ReLU) blocks of the projector (official config: 3)
    pred_hidden: int = 0  # predictor bottleneck (0: proj_dim // 4)

    def __post_init__(self) -> None:
        weights = (self.intra_weight, self.sync_weight, self.async_weight)
        if min(weights) < 0:
            raise ValueError("intra_weight, sync_weight and async_weight must be >= 0")
        if max(weights) <= 0:
            raise ValueError("intra_weight, sync_weight and async_weight are all 0: nothing to train")
        if self.proj_dim < 1 or self.proj_layers < 1 or self.pred_hidden < 0:
            raise ValueError("proj_dim and proj_layers must be >= 1, pred_hidden >= 0")


def projector(dim: int, out: int, layers: int) -> nn.Sequential:
    """CrissCross's projection MLP: ``layers`` × (Linear, BN, ReLU), the last one without ReLU."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(dim if i == 0 else out, out), nn.BatchNorm1d(out)]
        if i < layers - 1:
            mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


def predictor(dim: int, hidden: int) -> nn.Sequential:
    """SimSiam's bottleneck predictor: Linear, BN, ReLU, Linear (no BN on the output)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


def negative_cosine(p: Tensor, z: Tensor, mask: Tensor | None = None) -> Tensor:
    """SimSiam's ``D(p, z) = -cos(p, stopgrad(z))``, the mean over the rows of ``mask`` (all by default); an attached
    zero when no row counts."""
    cos = F.cosine_similarity(p.float(), z.detach().float(), dim=-1)
    if mask is None:
        return -cos.mean()
    if not mask.any():
        return cos.sum() * 0.0
    return -cos[mask].mean()


class CrissCrossTask:
    """SimSiam-style intra-modal, synchronous and asynchronous cross-modal prediction on two views of a clip.

    Args:
        model: a two-tower VATT (its trunks are trained; the projectors and predictors are attached to it as
            ``model.task_heads``, see :mod:`avformer.models.task_heads`).
        options: see :class:`CrissCrossOptions`.
    """

    def __init__(self, model: VisionAudioTextTransformer, options: CrissCrossOptions) -> None:
        self.model = model
        self.options = options
        dim, out = model.cfg.embed_dim, options.proj_dim
        hidden = options.pred_hidden or max(1, out // 4)
        heads: dict[str, nn.Module] = {}
        for m in _MODALITIES:
            heads[f"proj_{m}"] = projector(dim, out, options.proj_layers)
            heads[f"pred_{m}"] = predictor(out, hidden)
        self.heads = attach_task_heads(model, heads)
        self.unused_parameters = True  # the text trunk and VATT's own projection heads get no gradient
        self.last_outputs: dict[str, Tensor] | None = None

    def project(self, modality: str, x: Tensor) -> Tensor:
        """``z``: the projection of one view batch of ``modality``."""
        return self.heads[f"proj_{modality}"](self.model.encode(modality, x).pooled)

    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        video, audio = batch["video"], batch["audio"]
        if video.ndim != 6 or video.shape[1] != 2:
            raise ValueError("CrissCross trains on two views per clip: set data.views.num_views to 2")
        n, device = video.shape[0], video.device
        has_a = batch.get("has_audio")
        has_v = batch.get("has_video")
        present = {
            "video": torch.ones(n, 2, dtype=torch.bool, device=device) if has_v is None else has_v.bool().view(n, 2),
            "audio": torch.ones(n, 2, dtype=torch.bool, device=device) if has_a is None else has_a.bool().view(n, 2),
        }
        z: dict[tuple[str, int], Tensor] = {}
        p: dict[tuple[str, int], Tensor] = {}
        for m, x in (("video", video), ("audio", audio)):
            for i in range(2):  # each view through the BN layers on its own, as in the official code
                z[m, i] = self.project(m, x[:, i])
                p[m, i] = self.heads[f"pred_{m}"](z[m, i])

        def sym(x: tuple[str, int], y: tuple[str, int]) -> Tensor:
            mask = present[x[0]][:, x[1]] & present[y[0]][:, y[1]]
            return negative_cosine(p[x], z[y], mask) / 2 + negative_cosine(p[y], z[x], mask) / 2

        cfg = self.options
        groups = {
            "intra": (cfg.intra_weight, (("video", 0), ("video", 1)), (("audio", 0), ("audio", 1))),
            "sync": (cfg.sync_weight, (("video", 0), ("audio", 0)), (("video", 1), ("audio", 1))),
            "async": (cfg.async_weight, (("video", 0), ("audio", 1)), (("audio", 0), ("video", 1))),
        }
        terms: dict[str, Tensor] = {}
        total = torch.zeros((), device=device)
        used = 0
        for name, (weight, first, second) in groups.items():
            if weight <= 0:
                continue
            term = sym(*first) + sym(*second)
            terms[name] = term
            total = total + weight * term
            used += 2
        loss = total / used
        logs = {f"loss_{k}": float(v.detach()) / 2 for k, v in terms.items()}
        for m in _MODALITIES:
            logs[f"std_{m}"] = float(embedding_std(z[m, 0].detach()))
        return loss, logs

    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, "CrissCross")
        return res | {f"{m}_z": self.project(m, batch[m]).float() for m in _MODALITIES}

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        return retrieval_and_spread(outputs, spread_of="z")


def embedding_std(z: Tensor) -> Tensor:
    """The mean over dimensions of the per-dimension std of the L2-normalised rows of ``z`` (SimSiam's collapse
    monitor: about 1/√d for spread embeddings, 0 for a collapsed one); NaN for fewer than 2 rows."""
    if z.shape[0] < 2:
        return torch.tensor(float("nan"))
    return F.normalize(z.float(), dim=1).std(dim=0).mean()


def retrieval_and_spread(outputs: dict[str, Tensor], spread_of: str) -> dict[str, float]:
    """Validation metrics of a two-tower self-supervised task: audio-video retrieval of the ``video_z`` /
    ``audio_z`` embeddings (:func:`~avformer.metrics.retrieval.retrieval_report`) and, per modality,
    ``embed_std_<m>`` (:func:`embedding_std` of ``outputs["<m>_<spread_of>"]`` over the clips with that stream)."""
    out = retrieval_report(
        outputs["video_z"],
        outputs["audio_z"],
        outputs.get("label"),
        has_video=outputs["has_video"],
        has_audio=outputs["has_audio"],
    )
    for m in _MODALITIES:
        keep = outputs[f"has_{m}"].bool()
        out[f"embed_std_{m}"] = float(embedding_std(outputs[f"{m}_{spread_of}"][keep]))
    return out


@register_task("crisscross", options=CrissCrossOptions, supervised=False)
def build_crisscross(model: nn.Module, options: CrissCrossOptions, data: TaskData) -> CrissCrossTask:
    """CrissCross: SimSiam-style intra-modal, synchronous and asynchronous audio-video prediction, no negatives."""
    if data.num_views != 2:
        raise ValueError(
            f"CrissCross trains on two views per clip: set data.views.num_views to 2 (got {data.num_views})"
        )
    return CrissCrossTask(two_tower_vatt(model, "crisscross", data.modalities), options)
