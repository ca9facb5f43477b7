"""Clustering of embeddings: PCA whitening, k-means, and normalised mutual information.

What cross-modal deep clustering (XDC) runs between epochs, and what diagnoses it:

* :func:`fit_whitening` / :class:`Whitening`: DeepCluster's feature preprocessing (centre, PCA-whiten, L2-normalise),
  or with ``dim=0`` only centre and L2-normalise. Whitening every dimension of a small embedding gives the noise
  directions as much weight as the few that carry the classes: on AV-Digits val (300 clips, k = 10) the
  NMI of k-means on a pretrained VATT's 128-d video features was 0.52 centred + normalised, 0.47 / 0.41 / 0.22 /
  0.11 whitened to 16 / 32 / 64 / 128 dimensions (audio: 0.43 vs 0.34 / 0.22 / 0.12 / 0.09).
* :func:`kmeans`: Lloyd's algorithm in torch with k-means++ seeding and ``n_init`` restarts (the lowest inertia
  wins), deterministic for a given ``seed``; an empty cluster is re-seeded with the point farthest from its centroid
  (so every cluster ends non-empty when there are at least ``k`` distinct points). Checked against scikit-learn's
  ``KMeans`` in the tests (same inertia within a fraction of a percent on blobs).
* :func:`normalized_mutual_info`: NMI with the arithmetic-mean normalisation (scikit-learn's default), for the
  agreement of two labelings (clusters vs classes, audio clusters vs video clusters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["KMeansResult", "Whitening", "assign", "fit_whitening", "kmeans", "normalized_mutual_info"]


@dataclass
class Whitening:
    """``x -> normalise((x - mean) @ proj)``: centre, project on the principal axes scaled to unit variance."""

    mean: Tensor  # (D,)
    proj: Tensor  # (D, d)

    def __call__(self, x: Tensor) -> Tensor:
        y = (x.float() - self.mean) @ self.proj
        return torch.nn.functional.normalize(y, dim=1)


def fit_whitening(x: Tensor, dim: int | None = None, *, eps: float = 1e-5) -> Whitening:
    """PCA whitening of ``x`` (N, D) to ``dim`` components (all ``min(N, D)`` with None), then L2 normalisation
    (DeepCluster's preprocessing before k-means; ``eps`` keeps near-zero variances finite). ``dim=0``: no
    projection, only centring and L2 normalisation."""
    x = x.float()
    mean = x.mean(dim=0)
    if dim == 0:
        return Whitening(mean, torch.eye(x.shape[1]))
    xc = x - mean
    n = max(x.shape[0] - 1, 1)
    cov = xc.T @ xc / n
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = evals.argsort(descending=True)
    keep = min(dim or x.shape[1], x.shape[1], x.shape[0])
    idx = order[:keep]
    proj = evecs[:, idx] / (evals[idx].clamp_min(0) + eps).sqrt()
    return Whitening(mean, proj)


@dataclass
class KMeansResult:
    """Centroids (k, D), the cluster of every point (N,) and the inertia (sum of squared distances)."""

    centroids: Tensor
    labels: Tensor
    inertia: float


def _sq_dist(x: Tensor, c: Tensor) -> Tensor:
    """(N, k) squared Euclidean distances, clamped at 0 (the expansion can go slightly negative)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)[None, :]).clamp_min(0)


def assign(x: Tensor, centroids: Tensor) -> Tensor:
    """The nearest centroid of every row of ``x``: (N,) int64."""
    return _sq_dist(x.float(), centroids.float()).argmin(dim=1)


def _plus_plus(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre drawn with probability ∝ D(x)²."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [x[first]]
    d2 = _sq_dist(x, x[first : first + 1])[:, 0]
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: any point
            i = int(torch.randint(n, (1,), generator=gen))
        else:
            i = int(torch.multinomial(d2 / total, 1, generator=gen))
        centres.append(x[i])
        d2 = torch.minimum(d2, _sq_dist(x, x[i : i + 1])[:, 0])
    return torch.stack(centres)


def _lloyd(x: Tensor, centroids: Tensor, max_iter: int, tol: float) -> KMeansResult:
    k = centroids.shape[0]
    labels = torch.zeros(x.shape[0], dtype=torch.long)
    for _ in range(max_iter):
        d2 = _sq_dist(x, centroids)
        labels = d2.argmin(dim=1)
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        new = sums / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = (counts == 0).nonzero().flatten()
        if empty.numel():  # re-seed each empty cluster with the point farthest from its centroid
            far = d2.gather(1, labels[:, None])[:, 0].clone()
            for j in empty.tolist():
                i = int(far.argmax())
                new[j] = x[i]
                far[i] = -1.0
        shift = float((new - centroids).pow(2).sum())
        centroids = new
        if shift <= tol and not empty.numel():
            break
    d2 = _sq_dist(x, centroids)
    labels = d2.argmin(dim=1)
    return KMeansResult(centroids, labels, float(d2.gather(1, labels[:, None]).sum()))


def kmeans(
    x: Tensor, k: int, *, n_init: int = 3, max_iter: int = 100, tol: float = 1e-6, seed: int = 0
) -> KMeansResult:
    """k-means of ``x`` (N, D): ``n_init`` runs of k-means++ seeding + Lloyd iterations, the lowest inertia kept.

    ``tol``: stop when the centroids move less than this in total squared distance, relative to the data's mean
    squared norm (scikit-learn's convention uses the variance; close enough for a stopping rule).

    Raises:
        ValueError: ``k`` < 1 or more clusters than points.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if x.ndim != 2 or x.shape[0] < k:
        raise ValueError(f"k-means needs (N, D) points with N >= k = {k}, got {tuple(x.shape)}")
    x = x.detach().float().cpu()
    scale = float(x.pow(2).sum(1).mean()) or 1.0
    gen = torch.Generator().manual_seed(seed)
    best: KMeansResult | None = None
    for _ in range(max(1, n_init)):
        res = _lloyd(x, _plus_plus(x, k, gen), max_iter, tol * scale)
        if best is None or res.inertia < best.inertia:
            best = res
    assert best is not None
    return best


def _entropy(counts: Tensor) -> float:
    p = counts[counts > 0].double() / counts.sum()
    return float(-(p * p.log()).sum())


def normalized_mutual_info(a: Tensor, b: Tensor) -> float:
    """NMI of two labelings of the same items (non-negative ints): I(a; b) / ((H(a) + H(b)) / 2), in [0, 1]
    (scikit-learn's ``normalized_mutual_info_score`` with ``average_method="arithmetic"``). Two constant labelings
    give 1.0, as there."""
    a, b = a.long().flatten().cpu(), b.long().flatten().cpu()
    if a.shape != b.shape:
        raise ValueError(f"labelings differ in length: {a.numel()} vs {b.numel()}")
    if a.numel() == 0:
        return math.nan
    _, ai = a.unique(return_inverse=True)
    _, bi = b.unique(return_inverse=True)
    na, nb = int(ai.max()) + 1, int(bi.max()) + 1
    joint = torch.zeros(na * nb, dtype=torch.float64).index_add_(
        0, ai * nb + bi, torch.ones(a.numel(), dtype=torch.float64)
    )
    joint = joint.reshape(na, nb)
    ha, hb = _entropy(joint.sum(1)), _entropy(joint.sum(0))
    if ha == 0 and hb == 0:
        return 1.0
    p = joint / joint.sum()
    outer = p.sum(1, keepdim=True) * p.sum(0, keepdim=True)
    nz = p > 0
    mi = float((p[nz] * (p[nz] / outer[nz]).log()).sum())
    denom = (ha + hb) / 2
    return max(0.0, min(1.0, mi / denom)) if denom > 0 else 0.0
