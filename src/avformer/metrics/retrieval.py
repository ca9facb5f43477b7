"""Retrieval metrics for embeddings: cosine similarity, Recall@K, median/mean rank, class-relevance mAP.

Conventions (as in the VATT / MMV / CLIP4Clip evaluation protocols):

- **Paired retrieval** (video i ↔ audio i, or text → video): each query has one correct gallery item (by default
  query i ↔ gallery i). ``R@K`` is the fraction of queries whose correct item ranks within the first K;
  ``median_rank`` / ``mean_rank`` are the median and mean 1-based rank of the correct item. For the other
  direction, pass ``sim.T``.
- **Ties** are counted pessimistically: the correct item's rank is the number of gallery items scoring at least as
  high as it (itself included). A model that maps everything to one point thus gets rank G, not rank 1.
- **Class-relevance mAP**: a gallery item is relevant to a query when it has the query's label; the average
  precision of each query's ranking of the gallery (sklearn's ``average_precision_score``, ties as one threshold),
  then the mean over the queries that have at least one relevant item. Random embeddings on balanced data score
  about ``1 / num_classes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from avformer.metrics.classification import average_precision

__all__ = [
    "class_relevance_map",
    "paired_retrieval_metrics",
    "ranks_of_targets",
    "retrieval_report",
    "similarity_matrix",
]


def similarity_matrix(queries: torch.Tensor, gallery: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """Cosine similarity of every query with every gallery item.

    Args:
        queries: (Q, D) embeddings.
        gallery: (G, D) embeddings.
        normalize: L2-normalise both first (cosine); False gives the raw dot product.

    Returns:
        (Q, G) float32 similarities.
    """
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries (Q, D) and gallery (G, D) must share D, got {tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    q, g = queries.float(), gallery.float()
    if normalize:
        q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
    return q @ g.T


def ranks_of_targets(sim: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each query's correct gallery item (ties counted pessimistically).

    Args:
        sim: (Q, G) similarities, higher = more similar.
        targets: (Q,) index of the correct gallery item per query; defaults to ``arange(Q)`` (paired data, Q ≤ G).

    Returns:
        (Q,) int64 ranks in [1, G].
    """
    if sim.ndim != 2:
        raise ValueError(f"sim must be (Q, G), got shape {tuple(sim.shape)}")
    num_q, num_g = sim.shape
    if targets is None:
        if num_q > num_g:
            raise ValueError(f"paired retrieval needs Q <= G, got Q={num_q}, G={num_g}; pass targets")
        targets = torch.arange(num_q, device=sim.device)
    targets = targets.to(device=sim.device, dtype=torch.long)
    if targets.shape != (num_q,):
        raise ValueError(f"targets must be ({num_q},), got {tuple(targets.shape)}")
    correct = sim.gather(1, targets[:, None])  # (Q, 1)
    return (sim >= correct).sum(dim=1)


def paired_retrieval_metrics(
    sim: torch.Tensor, targets: torch.Tensor | None = None, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Recall@K, median rank and mean rank of the correct item.

    Args:
        sim: (Q, G) similarities (e.g. from :func:`similarity_matrix`).
        targets: (Q,) correct gallery index per query; default query i ↔ gallery i.
        ks: the K of ``R@K``.

    Returns:
        ``{"R@1", "R@5", "R@10", "median_rank", "mean_rank"}`` (recalls as fractions in [0, 1]).
    """
    ranks = ranks_of_targets(sim, targets).double()
    out = {f"R@{k}": float((ranks <= k).double().mean()) for k in ks}
    # The median of an even count is the mean of the two middle ranks (numpy's convention, not torch.median's lower).
    out["median_rank"] = float(ranks.quantile(0.5)) if ranks.numel() else float("nan")
    out["mean_rank"] = float(ranks.mean()) if ranks.numel() else float("nan")
    return out


def class_relevance_map(
    sim: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_labels: torch.Tensor,
    *,
    exclude_self: bool = False,
) -> float:
    """Mean average precision of retrieval where an item is relevant iff it shares the query's label.

    Args:
        sim: (Q, G) similarities.
        query_labels: (Q,) int class of each query.
        gallery_labels: (G,) int class of each gallery item.
        exclude_self: the queries are the gallery (Q == G, same order): drop item i from query i's ranking
            (leave-one-out retrieval).

    Returns:
        The mean over queries with at least one relevant item of their AP; NaN when none has one.
    """
    if sim.ndim != 2 or sim.shape != (query_labels.shape[0], gallery_labels.shape[0]):
        raise ValueError(f"sim {tuple(sim.shape)} must be (len(query_labels), len(gallery_labels))")
    sim = sim.detach().double().cpu()
    relevant = query_labels.cpu()[:, None] == gallery_labels.cpu()[None, :]  # (Q, G)
    if exclude_self:
        if sim.shape[0] != sim.shape[1]:
            raise ValueError("exclude_self needs the queries to be the gallery (Q == G)")
        eye = torch.eye(sim.shape[0], dtype=torch.bool)
        # The item drops to the bottom as irrelevant: ranked after every relevant item, it changes no precision.
        sim = sim.masked_fill(eye, float("-inf"))
        relevant = relevant & ~eye
    ap = average_precision(sim.T, relevant.T)  # queries as the "classes" of the multi-label AP: (Q,)
    return float(ap.nanmean()) if (~ap.isnan()).any() else float("nan")


def retrieval_report(
    video: Tensor,
    audio: Tensor,
    labels: Tensor | None = None,
    *,
    has_video: Tensor | None = None,
    has_audio: Tensor | None = None,
) -> dict[str, float]:
    """Zero-shot audio↔video retrieval metrics of paired embeddings (rows = clips).

    Returns ``a2v_R@1/5/10``, ``a2v_median_rank``, ``v2a_...`` and, when ``labels`` (B,) has classes (>= 0),
    ``a2v_mAP`` / ``v2a_mAP`` (class-relevance mAP: every clip of the query's class is relevant). Clips missing
    either stream are left out.
    """
    keep = torch.ones(video.shape[0], dtype=torch.bool)
    for m in (has_video, has_audio):
        if m is not None:
            keep &= m.bool().cpu()
    v, a = video.cpu()[keep], audio.cpu()[keep]
    if v.shape[0] == 0:
        return {}
    sim = similarity_matrix(a, v)  # (Q audio, G video)
    lab = labels.cpu()[keep] if labels is not None and labels.ndim == 1 else None
    labeled = lab >= 0 if lab is not None else None
    out: dict[str, float] = {}
    for name, s in (("a2v", sim), ("v2a", sim.T)):
        m = paired_retrieval_metrics(s)
        out |= {f"{name}_{k}": v_ for k, v_ in m.items() if k != "mean_rank"}
        if lab is not None and labeled is not None and labeled.any():
            sl = s[labeled][:, labeled]
            out[f"{name}_mAP"] = class_relevance_map(sl, lab[labeled], lab[labeled])
    return out
