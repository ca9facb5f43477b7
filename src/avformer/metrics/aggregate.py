"""Test-time aggregation of several views (clips × crops) of one video into one prediction.

Video classifiers are evaluated on several temporal clips and spatial crops per video (e.g. Kinetics: 10 clips × 3
crops; VGGSound/AudioSet audio: several windows) and the per-view outputs are pooled into a video-level score. The
usual pooling (SlowFast/MViT/MMT evaluation code) is the mean of the softmax probabilities; the mean of the logits
and the max over views are options.

Two entry points:

- :func:`aggregate_views` for views stacked as ``(N, V, K)``;
- :func:`aggregate_by_id` for views that arrive as separate rows with a sample id each (a flat eval loader,
  possibly sharded across ranks): rows are grouped by id, in first-seen order, with any number of views per id.

Use ``activation="sigmoid"`` for multi-label (AudioSet) outputs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["AggregatedViews", "aggregate_by_id", "aggregate_views"]

Reduce = Literal["mean", "max"]
Space = Literal["prob", "logit"]
Activation = Literal["softmax", "sigmoid"]


def _to_space(logits: torch.Tensor, space: Space, activation: Activation) -> torch.Tensor:
    if space == "logit":
        return logits.float()
    if space != "prob":
        raise ValueError(f"space must be 'prob' or 'logit', got {space!r}")
    if activation == "softmax":
        return logits.float().softmax(dim=-1)
    if activation == "sigmoid":
        return logits.float().sigmoid()
    raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")


def aggregate_views(
    logits: torch.Tensor,
    *,
    reduce: Reduce = "mean",
    space: Space = "prob",
    activation: Activation = "softmax",
) -> torch.Tensor:
    """Pool per-view outputs of each sample.

    Args:
        logits: (N, V, K) logits of V views of N samples.
        reduce: ``"mean"`` (default) or ``"max"`` over the views.
        space: pool probabilities (``"prob"``, default) or raw logits (``"logit"``).
        activation: how logits become probabilities when ``space="prob"``: ``"softmax"`` (single-label) or
            ``"sigmoid"`` (multi-label).

    Returns:
        (N, K) float32 scores in the chosen space (probabilities for ``"prob"``, logits for ``"logit"``).
    """
    if logits.ndim != 3:
        raise ValueError(f"logits must be (N, V, K), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise ValueError("logits has no views (V = 0)")
    x = _to_space(logits, space, activation)  # (N, V, K)
    if reduce == "mean":
        return x.mean(dim=1)
    if reduce == "max":
        return x.amax(dim=1)
    raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")


@dataclass(frozen=True)
class AggregatedViews:
    """Per-sample result of :func:`aggregate_by_id`.

    Attributes:
        ids: the U distinct ids in first-seen order.
        scores: (U, K) pooled scores, row i for ``ids[i]``.
        num_views: (U,) int64 number of rows pooled for each id.
        targets: (U, ...) the target of each id (checked equal across its views), or None when none were given.
    """

    ids: list[Hashable]
    scores: torch.Tensor
    num_views: torch.Tensor
    targets: torch.Tensor | None = None


def aggregate_by_id(
    logits: torch.Tensor,
    ids: Sequence[Hashable],
    targets: torch.Tensor | None = None,
    *,
    reduce: Reduce = "mean",
    space: Space = "prob",
    activation: Activation = "softmax",
) -> AggregatedViews:
    """Group view rows by sample id and pool each group, preserving the order in which ids first appear.

    Args:
        logits: (M, K) one row per view.
        ids: M hashable sample ids (a tensor of ints works too); rows with the same id are views of one sample.
        targets: optional (M,) or (M, K) per-row targets; every view of an id must carry the same target.
        reduce, space, activation: as in :func:`aggregate_views`.

    Returns:
        :class:`AggregatedViews`.

    Raises:
        ValueError: on length mismatch, or when views of one id disagree on the target.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (M, K), got shape {tuple(logits.shape)}")
    id_list: list[Hashable] = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    if len(id_list) != logits.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits but {len(id_list)} ids")
    if targets is not None and targets.shape[0] != logits.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits but {targets.shape[0]} targets")
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")

    group_of: dict[Hashable, int] = {}
    for i in id_list:
        group_of.setdefault(i, len(group_of))
    unique = list(group_of)
    index = torch.tensor([group_of[i] for i in id_list], dtype=torch.long, device=logits.device)  # (M,)
    num_groups, num_classes = len(unique), logits.shape[1]

    x = _to_space(logits, space, activation)  # (M, K)
    counts = torch.bincount(index, minlength=num_groups)  # (U,)
    out = torch.zeros(num_groups, num_classes, dtype=x.dtype, device=x.device)
    if reduce == "mean":
        out.index_add_(0, index, x)
        out /= counts[:, None].clamp(min=1).to(x.dtype)
    else:
        out.scatter_reduce_(0, index[:, None].expand_as(x), x, reduce="amax", include_self=False)

    grouped_targets = None
    if targets is not None:
        first_row = torch.full((num_groups,), len(id_list), dtype=torch.long, device=logits.device)
        first_row.scatter_reduce_(0, index, torch.arange(len(id_list), device=logits.device), reduce="amin")
        t = targets.to(logits.device)
        grouped_targets = t[first_row]  # (U, ...)
        if not torch.equal(grouped_targets[index], t):
            bad = next(id_list[r] for r in range(len(id_list)) if not torch.equal(grouped_targets[index[r]], t[r]))
            raise ValueError(f"views of id {bad!r} carry different targets")
    return AggregatedViews(ids=unique, scores=out, num_views=counts, targets=grouped_targets)
