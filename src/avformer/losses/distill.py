"""Self-distillation objectives: a DINO-style projection head, teacher centring and sharpening, the soft
cross-entropy between teacher and student, the momentum (EMA) teacher update and the MMD domain-alignment term.

Papers:
    * Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers" (DINO),
      https://arxiv.org/abs/2104.14294: projection head, centring, sharpening, momentum teacher.
    * Sarkar & Etemad 2024, "XKD: Cross-modal Knowledge Distillation with Domain Alignment for Video Representation
      Learning" (AAAI), https://arxiv.org/abs/2211.13929; official code pritamqu/XKD (``codes/train/models/xkd.py``,
      ``codes/train/models/modules/loss.py``, ``projector.py``, ``configs/pretext/kinetics400/xkd.yaml``): the same
      parts used across modalities (the video teacher teaches the audio student and the other way round) plus MMD.
    * Gretton et al. 2012, "A Kernel Two-Sample Test" (MMD); the multi-bandwidth Gaussian kernel is DomainBed's
      (Gulrajani & Lopez-Paz 2021), which XKD uses.

Definitions (``t`` teacher outputs, ``s`` student outputs, both (B, K); ``c`` the centre (K,))::

    q = softmax((t - c) / τ_t)                       teacher: centred, then sharpened (τ_t < τ_s)
    CE = mean_i  -Σ_k q_ik · log softmax(s_i / τ_s)_k    q carries no gradient
    c ← m_c · c + (1 - m_c) · mean_i t_i             after the loss, from the raw (uncentred) teacher outputs
    θ_teacher ← m · θ_teacher + (1 - m) · θ_student  after each optimizer step; m follows a cosine from m_0 to 1
    MMD²(x, y) = mean k(x, x') + mean k(y, y') - 2 mean k(x, y),  k(a, b) = Σ_γ exp(-γ ||a - b||²)

As in the XKD code: the head is Linear-LN-GELU (× ``nlayers - 1``), a Linear to the bottleneck, L2 normalisation,
a bias-free Linear whose rows have unit norm (DINO's weight-normalised last layer with its scale fixed at 1) and a
LayerNorm without affine parameters on the output (XKD's ``norm3`` / ``last_norm: ln``); the centre starts at 0;
the MMD is the biased estimator (every pair, the diagonal included) with bandwidths γ ∈ {1e-3, ..., 1e3} (the
self-distances on the diagonal are exactly 0 here; the code's expanded square leaves rounding noise there).

What a collapse looks like here (logged by the XKD task): a teacher that puts all its mass on one output has a
per-sample entropy near 0 *and* an entropy of its batch-mean distribution near 0 (centring pushes against this);
a teacher whose outputs became uniform has per-sample entropy near ln K and CE at ln K (sharpening pushes against
this). ``ln K`` is the CE of a student that predicts the uniform distribution: the "learned nothing" value.

Numerics: every function computes in float32 (float64 stays float64) with autocast off, so bf16 training does not
round the softmax of K outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.utils.distributed import is_dist, world_size

__all__ = [
    "XKD_MMD_GAMMAS",
    "Centre",
    "ProjectionHead",
    "cosine_momentum",
    "distill_cross_entropy",
    "entropy",
    "gaussian_kernel",
    "mmd",
    "momentum_update_",
    "refine_by_attention",
    "teacher_distribution",
    "warmup_value",
]

XKD_MMD_GAMMAS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)  # DomainBed / XKD kernel bandwidths


def _f32(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()


# ---- projection head ----------------------------------------------------------------------------------------------
class _UnitRowLinear(nn.Module):
    """A bias-free Linear whose weight rows are normalised to unit norm on every call (DINO's ``weight_norm`` last
    layer with its gain fixed at 1); with ``learn_scale`` a learned gain per row (the gain DINO leaves trainable
    when ``norm_last_layer=False``)."""

    def __init__(self, in_dim: int, out_dim: int, learn_scale: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight, std=0.02, a=-0.04, b=0.04)
        self.scale = nn.Parameter(torch.ones(out_dim, 1)) if learn_scale else None

    def forward(self, x: Tensor) -> Tensor:
        w = F.normalize(self.weight, dim=1)  # (K, d): unit rows
        if self.scale is not None:
            w = w * self.scale
        return F.linear(x, w)


class ProjectionHead(nn.Module):
    """DINO's projection head as XKD configures it (``2048-gelu-3-256-8192-norm3``).

    ``x (B, in_dim) -> MLP -> (B, bottleneck_dim) -> L2-normalise -> unit-row Linear -> (B, out_dim) -> LayerNorm``
    (no affine parameters). The MLP is ``nlayers`` Linear layers, each but the last followed by LayerNorm (when
    ``norm``) and GELU.

    Args:
        in_dim: input width (the encoder's pooled feature).
        out_dim: ``K``, the number of "prototypes" the teacher's softmax runs over (XKD: 8192, DINO: 65536).
        hidden_dim: MLP width (XKD: 2048).
        bottleneck_dim: width before the last layer (XKD: 256).
        nlayers: Linear layers of the MLP (XKD: 3).
        norm: LayerNorm after the hidden Linear layers (XKD: yes; DINO: none).
        last_norm: affine-free LayerNorm on the output (XKD: yes; DINO: none).
        norm_last_layer: keep the last layer's row norms at 1 (DINO / XKD: True).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        *,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm: bool = True,
        last_norm: bool = True,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if min(in_dim, out_dim, hidden_dim, bottleneck_dim, nlayers) < 1:
            raise ValueError("in_dim, out_dim, hidden_dim, bottleneck_dim and nlayers must be >= 1")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(nlayers - 1):
            layers.append(nn.Linear(width, hidden_dim))
            if norm:
                layers.append(nn.LayerNorm(hidden_dim))
            layers.append(nn.GELU())
            width = hidden_dim
        layers.append(nn.Linear(width, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = _UnitRowLinear(bottleneck_dim, out_dim, learn_scale=not norm_last_layer)
        self.last_norm: nn.Module = nn.LayerNorm(out_dim, elementwise_affine=False) if last_norm else nn.Identity()
        self.out_dim = out_dim
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, in_dim) -> (B, out_dim) logits (before any temperature)."""
        x = F.normalize(self.mlp(x), dim=-1)  # (B, bottleneck)
        return self.last_norm(self.last_layer(x))


# ---- teacher targets and the distillation loss --------------------------------------------------------------------
class Centre(nn.Module):
    """The running mean of a teacher's outputs (DINO centring), a (K,) buffer that starts at 0.

    Args:
        dim: ``K``.
        momentum: weight of the old centre per update (XKD / DINO: 0.9).
    """

    def __init__(self, dim: int, momentum: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"centre momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.register_buffer("value", torch.zeros(dim))
        self.value: Tensor

    @torch.no_grad()
    def update(self, teacher_out: Tensor, mask: Tensor | None = None) -> None:
        """``c ← m·c + (1 - m)·mean of the rows of teacher_out (B, K)`` (the rows of ``mask`` only; no update when
        none is set). Under a process group the mean is over every rank's rows (one all-reduce)."""
        t = teacher_out.detach().float()
        if mask is not None:
            t = t[mask]
        total = torch.cat([t.sum(dim=0), t.new_tensor([t.shape[0]])])  # (K + 1,): row sum and count
        if is_dist() and world_size() > 1:
            torch.distributed.all_reduce(total)
        count = float(total[-1])
        if count == 0:
            return
        mean = (total[:-1] / count).to(self.value.dtype)
        self.value.mul_(self.momentum).add_(mean, alpha=1.0 - self.momentum)


def teacher_distribution(teacher_out: Tensor, centre: Tensor, temperature: float) -> Tensor:
    """``softmax((t - c) / τ_t)`` row-wise, without gradient: the teacher's (B, K) targets."""
    if temperature <= 0:
        raise ValueError(f"teacher temperature must be > 0, got {temperature}")
    with torch.no_grad(), torch.autocast(teacher_out.device.type, enabled=False):
        t = _f32(teacher_out.detach())
        return F.softmax((t - centre.to(t.dtype)) / temperature, dim=-1)


def distill_cross_entropy(
    student_out: Tensor, teacher_probs: Tensor, temperature: float, mask: Tensor | None = None
) -> Tensor:
    """Soft cross-entropy ``-Σ_k q_k log softmax(s / τ_s)_k``, the mean over rows (of ``mask``, all by default).

    Args:
        student_out: (B, K) student outputs (with gradient).
        teacher_probs: (B, K) targets (:func:`teacher_distribution`); treated as constants.
        temperature: ``τ_s``.
        mask: (B,) bool, rows that count.

    Returns:
        A scalar; an exact zero still attached to ``student_out`` when no row counts.
    """
    if temperature <= 0:
        raise ValueError(f"student temperature must be > 0, got {temperature}")
    with torch.autocast(student_out.device.type, enabled=False):
        s = _f32(student_out)
        q = teacher_probs.detach().to(s.dtype)
        per_row = -(q * F.log_softmax(s / temperature, dim=-1)).sum(dim=-1)  # (B,)
        if mask is None:
            return per_row.mean()
        if not bool(mask.any()):
            return per_row.sum() * 0.0
        return per_row[mask].mean()


def entropy(probs: Tensor) -> Tensor:
    """Row-wise entropy (nats) of (..., K) probabilities (0 · log 0 = 0)."""
    p = _f32(probs)
    return -(p * p.clamp_min(1e-12).log()).sum(dim=-1)


# ---- momentum teacher ---------------------------------------------------------------------------------------------
@torch.no_grad()
def momentum_update_(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """``θ_t ← m·θ_t + (1 - m)·θ_s`` for every parameter (the XKD / DINO / MoCo update) and floating-point buffer
    (BatchNorm running statistics, as :class:`avformer.train.ema.ModelEma`; XKD's ViTs have none); other buffers
    are copied. ``teacher`` must be a structural copy of ``student`` (same names; a parameter shared between two
    modules shared the same way, so that it is updated once).

    Raises:
        ValueError: momentum outside [0, 1], or the two modules' parameters or buffers differ.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    for kind in ("parameters", "buffers"):
        t_items = dict(getattr(teacher, f"named_{kind}")())
        s_items = dict(getattr(student, f"named_{kind}")())
        if t_items.keys() != s_items.keys():
            diff = sorted(t_items.keys() ^ s_items.keys())[:5]
            raise ValueError(f"teacher and student have different {kind}: {diff}")
        for name, t in t_items.items():
            s = s_items[name].detach()
            if t.is_floating_point():
                t.mul_(momentum).add_(s.to(t.dtype), alpha=1.0 - momentum)
            else:
                t.copy_(s)


def cosine_momentum(base: float, final: float, progress: float) -> float:
    """DINO / XKD's cosine schedule from ``base`` (progress 0) to ``final`` (progress 1):
    ``final + (base - final)·(1 + cos(π·progress)) / 2``."""
    progress = min(max(progress, 0.0), 1.0)
    return final + (base - final) * (1.0 + math.cos(math.pi * progress)) / 2.0


def warmup_value(start: float, end: float, warmup_epochs: int, epoch: int) -> float:
    """Linear warmup from ``start`` at epoch 0 to ``end`` at epoch ``warmup_epochs - 1``, then ``end`` (DINO / XKD's
    teacher-temperature schedule: ``np.linspace(start, end, warmup_epochs)``)."""
    if epoch >= warmup_epochs:
        return end
    if warmup_epochs == 1:
        return start
    return start + (end - start) * epoch / (warmup_epochs - 1)


# ---- domain alignment ---------------------------------------------------------------------------------------------
def _sq_dist(x: Tensor, y: Tensor, same: bool = False) -> Tensor:
    """(N, M) squared Euclidean distances by the expanded square (XKD / DomainBed's ``my_cdist``), clamped at 1e-30
    below. ``same`` (``y`` is ``x``): the diagonal is set to exactly 0, where the expanded square leaves rounding
    noise of order 1e-7·‖x‖² that the large bandwidths (γ = 1e3) turn into noise of the kernel's value."""
    xx = x.pow(2).sum(dim=-1, keepdim=True)  # (N, 1)
    yy = y.pow(2).sum(dim=-1, keepdim=True)  # (M, 1)
    d = torch.addmm(yy.transpose(0, 1), x, y.transpose(0, 1), alpha=-2).add(xx)
    if same:
        d = d * (1.0 - torch.eye(d.shape[0], dtype=d.dtype, device=d.device))
    return d.clamp_min(1e-30)


def gaussian_kernel(x: Tensor, y: Tensor, gammas: Sequence[float] = XKD_MMD_GAMMAS) -> Tensor:
    """``Σ_γ exp(-γ ||x_i - y_j||²)``: (N, M) for x (N, D), y (M, D)."""
    d = _sq_dist(x, y, same=x is y)
    return torch.stack([torch.exp(-g * d) for g in gammas]).sum(dim=0)


def mmd(x: Tensor, y: Tensor, gammas: Sequence[float] = XKD_MMD_GAMMAS) -> Tensor:
    """Biased MMD² between the row distributions of x (N, D) and y (M, D) under :func:`gaussian_kernel`:
    ``mean K(x, x) + mean K(y, y) - 2 mean K(x, y)`` (every pair, the diagonal included, as XKD / DomainBed).
    It is 0 for identical samples, small (O(1/N)) for two samples of one distribution, and grows as the
    distributions move apart (up to ``2·len(gammas)``)."""
    if x.shape[0] == 0 or y.shape[0] == 0:
        return (x.sum() + y.sum()) * 0.0
    with torch.autocast(x.device.type, enabled=False):
        x, y = _f32(x), _f32(y)
        return (
            gaussian_kernel(x, x, gammas).mean()
            + gaussian_kernel(y, y, gammas).mean()
            - 2 * (gaussian_kernel(x, y, gammas).mean())
        )


def refine_by_attention(tokens: Tensor, attn: Tensor, other_attn: Tensor, mode: str = "mean") -> Tensor:
    """XKD's cross-modal feature refinement of a teacher's tokens before pooling (``cross_modal_attn`` +
    ``align_feats`` in the official code).

    Each token is weighted by the attention it receives in the teacher's last block, combined with the other
    modality's attention (``mode="mean"``: ``a_n · mean(other) / mean(a)``; ``"softmax"``: a softmax over the
    tokens of ``a_n · mean(other)``), averaged over heads, and the weighted tokens are rescaled so that the energy
    ``||mean_n x_n||²`` of their mean equals that of the unweighted tokens. In ``"mean"`` mode the other modality's
    factor is one scalar per clip and head: it only weighs the heads against each other, and when every head's
    attention sums to the same total (always for the attention received without a CLS token) the rescaling removes
    it, leaving the teacher's own attention-weighted tokens. Kept as in the official code, whose configured mode is
    ``mean``.

    Args:
        tokens: (B, N, D) the teacher's output tokens (no prefix tokens).
        attn: (B, h, N) attention each token receives (the CLS row, or the mean over queries without CLS).
        other_attn: (B, h, M) the same for the other modality's teacher.
        mode: ``"mean"`` or ``"softmax"``.

    Returns:
        (B, N, D) refined tokens (their mean is the refined pooled feature).
    """
    if mode not in ("mean", "softmax"):
        raise ValueError(f"refinement mode must be 'mean' or 'softmax', got {mode!r}")
    with torch.autocast(tokens.device.type, enabled=False):
        x, a, o = _f32(tokens), _f32(attn), _f32(other_attn)
        cross = a * o.mean(dim=-1, keepdim=True)  # (B, h, N): the (N × M) outer product, averaged over M
        w = cross / a.mean(dim=-1, keepdim=True) if mode == "mean" else cross.softmax(dim=-1)
        w = w.mean(dim=1).unsqueeze(-1)  # (B, N, 1): mean over heads
        energy = x.mean(dim=1).pow(2).sum(dim=-1, keepdim=True)  # (B, 1)
        energy_w = (x * w).mean(dim=1).pow(2).sum(dim=-1, keepdim=True).clamp_min(1e-12)
        scale = (energy / energy_w).sqrt().unsqueeze(-1)  # (B, 1, 1)
        return scale * w * x
