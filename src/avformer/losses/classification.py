"""Classification objectives: cross-entropy (hard, soft, label-smoothed), multi-label BCE, and mixup.

References:
    * Szegedy et al. 2016, "Rethinking the Inception Architecture" (label smoothing), https://arxiv.org/abs/1512.00567
    * Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization", https://arxiv.org/abs/1710.09412
    * Gong et al. 2021, AST (mixup on spectrograms with multi-hot AudioSet targets), https://arxiv.org/abs/2104.01778

Conventions:
    * ``mask`` (B,) bool drops samples (e.g. unlabeled clips, or clips lacking the modality a head depends on).
      The loss is the mean over kept samples; with none kept it is an exact 0 still attached to the graph, never NaN.
      Targets of dropped samples are never read as indices, so they may hold any value (e.g. -1).
    * Label smoothing follows ``torch.nn.functional.cross_entropy``: the target becomes ``(1 - ε) y + ε / K``.
    * Half/bfloat16 logits are computed in float32.
    * ``mixup`` mixes every modality of a batch with one ``λ ~ Beta(α, α)`` and one permutation (batch-level mixup,
      as in Zhang et al. and AST); the same pair of draws reproduces from the same ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MixupOutput", "binary_cross_entropy", "cross_entropy", "mixup"]


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _masked_mean(per_sample: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B,) losses over ``mask``; exact 0 attached to the graph when nothing is kept."""
    if mask is None:
        if per_sample.numel() == 0:
            return per_sample.sum()
        return per_sample.mean()
    if mask.shape != per_sample.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(per_sample.shape)}")
    mask = mask.to(device=per_sample.device, dtype=torch.bool)
    total = torch.where(mask, per_sample, 0.0).sum()
    return total / mask.sum().clamp(min=1).to(total.dtype)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    label_smoothing: float = 0.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy with hard or soft targets.

    Args:
        logits: (B, K).
        target: (B,) integer classes, or (B, K) float distributions (e.g. from ``mixup``).
        label_smoothing: ε in [0, 1]; as in ``torch.nn.functional.cross_entropy``.
        mask: (B,) bool, False drops the sample.

    Returns:
        0-d mean loss over kept samples.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (B, K), got {tuple(logits.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    log_prob = _upcast(logits).log_softmax(dim=-1)  # (B, K)
    if target.is_floating_point():
        if target.shape != logits.shape:
            raise ValueError(f"soft target must be (B, K) = {tuple(logits.shape)}, got {tuple(target.shape)}")
        soft = target.to(log_prob.dtype)
        if label_smoothing > 0:
            soft = soft * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
        per_sample = -(soft * log_prob).sum(dim=-1)
    else:
        if target.shape != logits.shape[:1]:
            raise ValueError(f"class target must be (B,) = ({logits.shape[0]},), got {tuple(target.shape)}")
        index = target if mask is None else torch.where(mask.to(torch.bool), target, 0)
        nll = -log_prob.gather(1, index.long()[:, None]).squeeze(1)
        per_sample = nll
        if label_smoothing > 0:
            per_sample = (1.0 - label_smoothing) * nll - label_smoothing * log_prob.mean(dim=-1)
    return _masked_mean(per_sample, mask)


def binary_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-label sigmoid BCE, mean over classes then over kept samples.

    Without a mask this equals ``F.binary_cross_entropy_with_logits(logits, target)`` (mean over all elements).

    Args:
        logits: (B, K).
        target: (B, K) multi-hot in {0, 1}, or soft in [0, 1] (mixup).
        mask: (B,) bool, False drops the sample.

    Returns:
        0-d mean loss over kept samples.
    """
    if logits.ndim != 2 or target.shape != logits.shape:
        raise ValueError(f"logits and target must both be (B, K), got {tuple(logits.shape)}, {tuple(target.shape)}")
    logits = _upcast(logits)
    per_elem = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return _masked_mean(per_elem.mean(dim=-1), mask)


@dataclass
class MixupOutput:
    """What ``mixup`` returns.

    Attributes:
        inputs: the mixed tensors, same keys and shapes as given.
        targets: (B, K) float, ``λ y + (1 - λ) y[index]``.
        lam: the mixing coefficient λ.
        index: (B,) sample ``i`` was mixed with sample ``index[i]``. Combine presence masks with it, e.g.
            ``has_audio & has_audio[index]``, so that a clip mixed with a silent one is not trusted as audio.
    """

    inputs: dict[str, torch.Tensor]
    targets: torch.Tensor
    lam: float
    index: torch.Tensor


def mixup(
    inputs: Mapping[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    alpha: float,
    num_classes: int | None = None,
    generator: torch.Generator | None = None,
) -> MixupOutput:
    """Batch mixup with one λ and one permutation shared by every modality.

    Args:
        inputs: ``{modality: (B, ...) float tensor}``, e.g. ``{"video": v, "audio": a}``.
        targets: (B,) integer classes (needs ``num_classes``), or (B, K) float (one-hot, soft or multi-hot).
        alpha: Beta(α, α) parameter; ``alpha == 0`` disables mixing (λ = 1, identity index).
        num_classes: K, required for integer targets.
        generator: source of randomness for λ and the permutation (CPU generator; reproducible).

    Returns:
        ``MixupOutput``; for one-hot or soft targets each row of ``targets`` sums to 1.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if targets.is_floating_point():
        if targets.ndim != 2:
            raise ValueError(f"float targets must be (B, K), got {tuple(targets.shape)}")
        soft = targets
    else:
        if num_classes is None:
            raise ValueError("num_classes is required for integer targets")
        soft = F.one_hot(targets.long(), num_classes).float()
    batch = soft.shape[0]
    for name, x in inputs.items():
        if x.shape[0] != batch:
            raise ValueError(f"inputs[{name!r}] has batch {x.shape[0]}, targets have {batch}")
        if not x.is_floating_point():
            raise TypeError(f"inputs[{name!r}] must be floating point to mix, got {x.dtype}")

    if alpha == 0:
        lam = 1.0
        index = torch.arange(batch)
    else:
        # torch has no Beta sampler that takes a Generator: draw a seed from it and sample with numpy
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        lam = float(np.random.default_rng(seed).beta(alpha, alpha))
        index = torch.randperm(batch, generator=generator)
    mixed: dict[str, torch.Tensor] = {}
    for name, x in inputs.items():
        idx = index.to(x.device)
        mixed[name] = lam * x + (1.0 - lam) * x[idx]
    idx = index.to(soft.device)
    return MixupOutput(inputs=mixed, targets=lam * soft + (1.0 - lam) * soft[idx], lam=lam, index=idx)
