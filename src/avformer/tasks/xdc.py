"""Cross-modal deep clustering (XDC) and its single-modality relatives, as a self-supervised task.

Paper: Alwassel et al. 2020, "Self-Supervised Learning by Cross-Modal Audio-Video Clustering" (NeurIPS),
https://arxiv.org/abs/1911.12667 (weights published at HumamAlwassel/XDC; no training code was released). Each
round (``cluster_every`` epochs) the task embeds the training set with the current encoders, clusters each
modality's features with k-means, and trains classification heads on the cluster indices as pseudo-labels::

    xdc:  video head <- audio clusters,  audio head <- video clusters      (the other modality supervises)
    sdc:  video head <- video clusters,  audio head <- audio clusters      (single-modality: DeepCluster per tower)
    mdc:  both heads on each encoder (own and other clusters)              (multi-head)
    cdc:  both encoders' heads <- clusters of the concatenated features    (concatenation)

    loss = mean over heads of CE(head(encoder(x)), pseudo-label)

The paper's names (its Table 1): SDC, MDC, CDC, XDC; it reports XDC best and SDC weakest.

Details, as DeepCluster (Caron et al. 2018, which XDC builds on) or as documented choices of ours:
    * Features clustered: the encoders' pooled outputs (VATT's AGG / mean token) of one centre window per training
      clip, without augmentation, the model in eval mode; centred and L2-normalised, then k-means
      (:func:`avformer.metrics.clustering.kmeans`, k-means++ and ``kmeans_init`` restarts). DeepCluster also
      PCA-whitens (4096 -> 256 dimensions); ``whiten_dim`` does that, off by default because whitening all the
      dimensions of a small (128-d) embedding drowned its class structure here (see
      :mod:`avformer.metrics.clustering`). XDC's paper does not say. ``cdc`` clusters the concatenation of the
      two normalised features.
    * After each clustering the heads are re-initialised (weights and their optimizer state), as in DeepCluster.
    * Cluster imbalance: DeepCluster samples images uniformly over pseudo-labels; here (``balance``, default on) the
      cross-entropy weighs each cluster by the inverse of its size instead (same expected gradient, no sampler).
    * Clips missing the modality a head reads, or whose pseudo-label is missing (its clip failed to decode during
      clustering), are left out of that head's loss.
    * Labels: never read by :meth:`training_step` (``avformer pretrain`` drops them). Validation clusters the val
      clips' current features the same way (whitening fitted on them, k-means with the same k) and reports NMI
      against the val labels (``nmi_video``, ``nmi_audio``), for diagnosis: the round's training centroids do not
      fit features that a whole epoch of training has moved (early in training every val clip fell into one or two
      of them). Where an audio head and a video head predict the same clusters (``mdc``: the video clusters;
      ``cdc``: the joint ones), audio->video retrieval by the cosine of their predicted distributions
      (``a2v_mAP``); ``xdc`` and ``sdc`` learn no such joint space.
    * Training logs the heads' accuracy on their pseudo-labels (``acc_video_from_audio``, ...).
    * Every epoch's training log carries the agreement of the current audio and video clusterings on the training
      set (``train_cluster_nmi_av``; not for ``cdc``, which has one clustering): high means the two modalities
      group the clips alike; and the smallest and largest cluster sizes (``train_cluster_min_video``, ...).
    * Several processes (DDP): every process embeds the whole training set and runs the same seeded k-means, so the
      pseudo-labels agree without communication (costs ``world`` times the embedding work).

Batch contract: ``video`` (B, C, T, H, W), ``audio`` (B, 1, F, T) or (B, 1, S), ``index`` (B,) dataset rows,
optional ``has_video`` / ``has_audio``. The model: a two-tower VATT (``avformer models --filter vatt``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.data.config import ViewConfig
from avformer.data.dataset import AVDataset, make_loader
from avformer.metrics.clustering import fit_whitening, kmeans, normalized_mutual_info
from avformer.metrics.retrieval import class_relevance_map, paired_retrieval_metrics
from avformer.models.task_heads import attach_task_heads
from avformer.models.vatt import VisionAudioTextTransformer
from avformer.tasks.base import Batch, EpochContext, av_present, one_view_keys, two_tower_vatt
from avformer.tasks.registry import TaskData, register_task
from avformer.utils.errors import UsageError

__all__ = ["VARIANTS", "XDCOptions", "XDCTask", "embed_training_set"]

# variant -> heads as (encoder modality, modality whose clusters are the targets)
VARIANTS: dict[str, tuple[tuple[str, str], ...]] = {
    "xdc": (("video", "audio"), ("audio", "video")),
    "sdc": (("video", "video"), ("audio", "audio")),
    "mdc": (("video", "video"), ("video", "audio"), ("audio", "audio"), ("audio", "video")),
    "cdc": (("video", "concat"), ("audio", "concat")),
}
_ENCODERS = ("video", "audio")


@dataclass(frozen=True)
class XDCOptions:
    """Options of the ``xdc`` task (see the module docstring)."""

    variant: str = "xdc"  # xdc (cross-modal) | sdc (single-modality) | mdc (multi-head) | cdc (concatenated)
    num_clusters: int = 64  # k of every clustering
    cluster_every: int = 1  # epochs per round: re-cluster at the start of every cluster_every-th epoch
    whiten_dim: int = 0  # > 0: PCA-whiten to this many components before k-means (DeepCluster); 0: centre only
    kmeans_init: int = 3  # k-means++ restarts per clustering (lowest inertia kept)
    kmeans_iter: int = 100  # Lloyd iterations at most
    balance: bool = True  # weigh each cluster's CE by 1 / its size (DeepCluster samples uniformly instead)
    embed_batch_size: int = 64  # clips per batch while embedding the training set

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {self.variant!r}")
        if self.num_clusters < 2:
            raise ValueError(f"num_clusters must be >= 2, got {self.num_clusters}")
        if self.cluster_every < 1 or self.kmeans_init < 1 or self.kmeans_iter < 1 or self.embed_batch_size < 1:
            raise ValueError("cluster_every, kmeans_init, kmeans_iter and embed_batch_size must be >= 1")
        if self.whiten_dim < 0:
            raise ValueError(f"whiten_dim must be >= 0, got {self.whiten_dim}")

    @property
    def heads(self) -> tuple[tuple[str, str], ...]:
        return VARIANTS[self.variant]

    @property
    def clusterings(self) -> tuple[str, ...]:
        """The modalities clustered each round (``concat``: both features side by side)."""
        return tuple(sorted({t for _, t in self.heads}))


def _head_name(encoder: str, target: str) -> str:
    return f"{encoder}_from_{target}"


@torch.no_grad()
def embed_training_set(
    model: VisionAudioTextTransformer, dataset: AVDataset, *, batch_size: int, workers: int, ctx: EpochContext
) -> tuple[dict[str, Tensor], Tensor]:
    """Pooled video and audio features of every loadable row of ``dataset``: one centre window each, evaluation
    transforms, the model in eval mode. Returns ``({"video": (N, D), "audio": (N, D)}, index (N,))``; a clip without
    a stream gets NaN features for it."""
    cfg = dataclasses.replace(dataset.cfg, views=ViewConfig(), num_test_clips=1, num_test_crops=1)
    eval_ds = AVDataset(dataset.manifest, cfg, train=False, seed=dataset.seed)
    loader = make_loader(eval_ds, batch_size=batch_size, shuffle=False, num_workers=workers, pad=False)
    was_training = model.training
    model.eval()
    parts: dict[str, list[Tensor]] = {m: [] for m in _ENCODERS}
    index: list[Tensor] = []
    bf16 = ctx.precision == "bf16"
    try:
        for batch in loader:
            if int(batch["batch_size"]) == 0:
                continue
            batch = {k: v.to(ctx.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            present = dict(zip(("audio", "video"), av_present(batch), strict=True))
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=bf16):
                for m in _ENCODERS:
                    f = model.encode(m, batch[m]).pooled.float()
                    parts[m].append(f.masked_fill(~present[m][:, None], math.nan).cpu())
            index.append(batch["index"].cpu())
    finally:
        model.train(was_training)
    if not index:
        raise RuntimeError("XDC clustering: no training clip could be loaded")
    return {m: torch.cat(p) for m, p in parts.items()}, torch.cat(index)


class XDCTask:
    """Deep clustering of one modality's features as the other's (or its own) classification targets.

    Args:
        model: a two-tower VATT; the heads (one Linear per (encoder, target) of the variant) are attached to it as
            ``model.task_heads`` (:mod:`avformer.models.task_heads`).
        options: see :class:`XDCOptions`.
    """

    def __init__(self, model: VisionAudioTextTransformer, options: XDCOptions) -> None:
        self.model = model
        self.options = options
        dim = model.cfg.embed_dim
        self.heads = attach_task_heads(
            model, {_head_name(e, t): nn.Linear(dim, options.num_clusters) for e, t in options.heads}
        )
        self.unused_parameters = True  # the text trunk and VATT's projection heads get no gradient
        self.round = -1  # clusterings done (-1: none yet)
        self.labels: dict[str, Tensor] = {}  # modality -> (len(dataset),) cluster per row, -1 where unknown
        self.weights: dict[str, Tensor] = {}  # modality -> (k,) CE class weights
        self.stats: dict[str, float] = {}
        self.last_outputs: dict[str, Tensor] | None = None

    # -- clustering -----------------------------------------------------------------------------------------------
    def on_epoch_start(self, ctx: EpochContext) -> None:
        if ctx.epoch % self.options.cluster_every == 0 or not self.labels:
            self.cluster(ctx)

    def cluster(self, ctx: EpochContext) -> None:
        """One round: embed the training set, cluster, set the pseudo-labels, re-initialise the heads."""
        loader = ctx.train_loader
        dataset = getattr(loader, "dataset", None)
        if not isinstance(dataset, AVDataset):
            raise UsageError(
                "task xdc clusters the training set between epochs: it needs a manifest dataset, not "
                f"{type(dataset).__name__} (prepared shards are not supported by this task)"
            )
        opt = self.options
        feats, index = embed_training_set(
            self.model, dataset, batch_size=opt.embed_batch_size, workers=loader.num_workers, ctx=ctx
        )
        seed = 1000 * ctx.epoch
        normed: dict[str, Tensor] = {}
        for m in _ENCODERS:
            ok = ~feats[m].isnan().any(dim=1)
            if int(ok.sum()) < opt.num_clusters:
                raise UsageError(
                    f"task xdc: {int(ok.sum())} training clips with {m}, fewer than num_clusters = {opt.num_clusters}"
                )
            whiten = fit_whitening(feats[m][ok], opt.whiten_dim)
            normed[m] = torch.full((len(index), whiten.proj.shape[1]), math.nan)
            normed[m][ok] = whiten(feats[m][ok])
        if "concat" in opt.clusterings:
            normed["concat"] = torch.cat([normed["video"], normed["audio"]], dim=1)
        self.labels, self.weights = {}, {}
        stats: dict[str, float] = {}
        for i, m in enumerate(opt.clusterings):
            ok = ~normed[m].isnan().any(dim=1)
            res = kmeans(
                normed[m][ok], opt.num_clusters, n_init=opt.kmeans_init, max_iter=opt.kmeans_iter, seed=seed + i
            )
            labels = torch.full((len(dataset),), -1, dtype=torch.long)
            labels[index[ok]] = res.labels
            self.labels[m] = labels
            counts = torch.bincount(res.labels, minlength=opt.num_clusters).float()
            self.weights[m] = (
                counts.sum() / (opt.num_clusters * counts.clamp_min(1)) if opt.balance else torch.ones_like(counts)
            )
            stats[f"cluster_min_{m}"] = float(counts.min())
            stats[f"cluster_max_{m}"] = float(counts.max())
        if {"audio", "video"} <= self.labels.keys():
            both = (self.labels["audio"] >= 0) & (self.labels["video"] >= 0)
            stats["cluster_nmi_av"] = normalized_mutual_info(self.labels["audio"][both], self.labels["video"][both])
        self.stats = stats
        self.round += 1
        self._reset_heads(ctx.optimizer)

    def _reset_heads(self, optimizer: Any) -> None:
        for head in self.heads.values():
            assert isinstance(head, nn.Linear)
            head.reset_parameters()
            if optimizer is not None:
                for p in head.parameters():
                    optimizer.state.pop(p, None)

    # -- training -------------------------------------------------------------------------------------------------
    def training_step(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if not self.labels:
            raise RuntimeError("XDC: no pseudo-labels yet (the trainer runs on_epoch_start before the first batch)")
        has_a, has_v = av_present(batch)
        present = {"audio": has_a, "video": has_v}
        index = batch["index"].cpu()
        pooled = {m: self.model.encode(m, batch[m]).pooled for m in _ENCODERS}
        terms: dict[str, Tensor] = {}
        accs: dict[str, float] = {}
        for enc, target in self.options.heads:
            y = self.labels[target][index].to(pooled[enc].device)
            y = y.masked_fill(~present[enc], -1)
            if target in _ENCODERS:
                y = y.masked_fill(~present[target], -1)
            logits = self.heads[_head_name(enc, target)](pooled[enc]).float()
            weight = self.weights[target].to(logits.device)
            name = _head_name(enc, target)
            known = y >= 0
            if known.any():
                terms[name] = F.cross_entropy(logits, y, weight=weight, ignore_index=-1)
                accs[name] = float((logits.detach().argmax(dim=1)[known] == y[known]).float().mean())
            else:  # an attached zero keeps every head in the graph
                terms[name] = logits.sum() * 0.0
        loss = torch.stack(list(terms.values())).mean()
        logs = {f"ce_{k}": float(v.detach()) for k, v in terms.items()} | self.stats
        logs |= {f"acc_{k}": v for k, v in accs.items()}
        return loss, logs

    # -- validation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def validation_step(self, batch: Batch) -> dict[str, Tensor]:
        res = one_view_keys(batch, "XDC")
        for m in _ENCODERS:
            res[f"{m}_pooled"] = self.model.encode(m, batch[m]).pooled.float()
        for enc, target in self.options.heads:  # (training targets, used by _a2v_scores)
            name = _head_name(enc, target)
            res[f"logits_{name}"] = self.heads[name](res[f"{enc}_pooled"]).float()
        return res

    def validation_end(self, outputs: dict[str, Tensor]) -> dict[str, float]:
        self.last_outputs = outputs
        ok = outputs["has_video"].bool() & outputs["has_audio"].bool()
        label = outputs.get("label")
        out: dict[str, float] = {}
        labeled = ok & (label >= 0) if label is not None else None
        if label is not None and labeled is not None and int(labeled.sum()) >= self.options.num_clusters:
            for m in _ENCODERS:  # the val clips' own clusters: how class-like the current features group
                x = fit_whitening(outputs[f"{m}_pooled"][labeled], self.options.whiten_dim)(
                    outputs[f"{m}_pooled"][labeled]
                )
                res = kmeans(x, self.options.num_clusters, n_init=self.options.kmeans_init, seed=0)
                out[f"nmi_{m}"] = normalized_mutual_info(res.labels, label[labeled])
        sim = self._a2v_scores(outputs, ok)
        if sim is not None:
            out |= {f"a2v_{k}": v for k, v in paired_retrieval_metrics(sim).items() if k != "mean_rank"}
            if label is not None and (label[ok] >= 0).any():
                keep = label[ok] >= 0
                lab = label[ok][keep]
                out["a2v_mAP"] = class_relevance_map(sim[keep][:, keep], lab, lab)
        return out

    def _a2v_scores(self, outputs: dict[str, Tensor], ok: Tensor) -> Tensor | None:
        """(audio, video) scores of the val clips: the cosine of an audio head's and a video head's predicted
        distributions over the same clusters (``mdc``: the video clusters; ``cdc``: the joint ones); None for
        ``xdc`` and ``sdc``, whose audio and video heads never predict the same clusters."""
        for target in ("video", "concat"):
            a, v = _head_name("audio", target), _head_name("video", target)
            if f"logits_{a}" in outputs and f"logits_{v}" in outputs:
                pa = outputs[f"logits_{a}"][ok].softmax(dim=1)
                pv = outputs[f"logits_{v}"][ok].softmax(dim=1)
                return F.normalize(pa, dim=1) @ F.normalize(pv, dim=1).T
        return None

    # -- state ----------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "labels": dict(self.labels),
            "weights": dict(self.weights),
            "stats": dict(self.stats),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
        self.labels = {m: t.long() for m, t in state["labels"].items()}
        self.weights = {m: t.float() for m, t in state["weights"].items()}
        self.stats = {k: float(v) for k, v in state["stats"].items()}


@register_task("xdc", options=XDCOptions, supervised=False)
def build_xdc(model: nn.Module, options: XDCOptions, data: TaskData) -> XDCTask:
    """XDC: k-means clusters of one modality train the other's classifier head (and the SDC/MDC/CDC variants)."""
    return XDCTask(two_tower_vatt(model, "xdc", data.modalities), options)
