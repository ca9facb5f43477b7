"""Contrastive objectives: supervised contrastive across and within modalities (MMT's AVC and IMC), InfoNCE, MIL-NCE.

Papers:
    * Khosla et al. 2020, "Supervised Contrastive Learning", https://arxiv.org/abs/2004.11362 (SupCon, ``L_out``).
    * Zhu 2024, "Efficient Multiscale Multimodal Bottleneck Transformer for Audio-Video Classification" (MMT),
      https://arxiv.org/abs/2401.04023: AVC (audio-video contrastive) and IMC (intra-modal contrastive).
    * Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding" (InfoNCE),
      https://arxiv.org/abs/1807.03748; Radford et al. 2021, "CLIP", https://arxiv.org/abs/2103.00020 (symmetric
      form, learnable ``logit_scale`` clamped at 100).
    * Miech et al. 2020, "End-to-End Learning of Visual Representations from Uncurated Instructional Videos"
      (MIL-NCE), https://arxiv.org/abs/1912.06430; used by VATT (Akbari et al. 2021) for video-text.

Definitions (``s_ij = <z_i, z_j> / temperature``; ``A(i)`` the valid candidates of anchor ``i``; ``P(i) ⊆ A(i)``
the candidates with the anchor's label):

    l_i = -1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip) / Σ_{a∈A(i)} exp(s_ia) )        (SupCon "L_out")
    loss = mean of l_i over valid anchors with |P(i)| > 0

* ``supcon_cross`` (AVC, one direction): anchors from one modality, candidates all valid items of the other;
  an anchor's own pair counts as a positive (same sample ⇒ same label). AVC = mean of audio→video and video→audio.
* ``supcon_within`` (IMC, one modality): anchors and candidates from the same set; ``i`` itself is removed from
  both ``P(i)`` and ``A(i)`` (SupCon's single-view case).
* ``info_nce``: ``supcon_cross`` with the sample index as label (one positive: the pair), symmetric as in CLIP.
* ``mil_nce``: ``-log Σ_{p∈P(i)} exp(s_ip) + log Σ_{a∈A(i)} exp(s_ia)`` where ``P(i)`` are clip ``i``'s text
  segments and ``A(i)`` all valid text segments of the batch (VATT's equation). ``symmetric=True`` also puts the
  pairs (every valid video, each text of clip ``i``) into the denominator, as Miech et al.'s released code does.

Choices where the MMT paper is silent (documented options, not claims about the paper):
    * ``temperature=0.07`` by default (SupCon/CLIP/VATT value); fixed, or learnable through a CLIP-style
      ``logit_scale = log(1/temperature)`` with ``exp(logit_scale)`` clamped at ``max_logit_scale=100``.
    * Embeddings are L2-normalised inside every function unless ``normalize=False``.
    * The mean is over anchors, without SupCon's ``temperature / base_temperature`` factor (1 at the defaults).
    * ``IMCLoss`` and ``AVCLoss`` return the *mean* of their two terms (audio/video, a→v/v→a); the Task weight
      absorbs any other convention.
    * Anchors without a positive (a class seen once in the batch, or no valid candidate) drop out of the mean.
      When no anchor is left the loss is an exact 0 that is still attached to the graph (finite zero gradients).

Missing modalities: every function takes boolean masks ((B,), True = present). A masked sample is neither an
anchor nor a candidate, so zero-filled audio of clips without sound is never treated as data. Masking a sample is
equivalent to removing it from the batch (tested).

Distributed (``gather=True`` under an initialised process group with world size > 1): each rank scores its
*local* anchors against the *global* candidates (gathered with ``avformer.utils.distributed.gather_with_grad``,
whose backward all-reduces the gradient; labels and masks with ``gather_no_grad``). The sum of per-anchor losses is
divided by the *global* number of kept anchors and multiplied by the world size, so that the mean over ranks of
the returned losses equals the single-process loss on the concatenated batch, and each rank's input gradient is
``world_size ×`` the single-process gradient of its slice. DDP averages parameter gradients over ranks, which
divides that factor out: parameter gradients equal the single-process ones. All ranks must hold the same number of
samples and must all call the loss (it runs collectives).

Numerics: half/bfloat16 inputs are computed in float32 with autocast disabled; float64 stays float64 (gradcheck).
Masked logits are filled with the dtype's most negative finite value, not ``-inf``, so log-probabilities stay finite
even in rows without any valid entry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from avformer.utils.distributed import gather_no_grad, gather_with_grad, is_dist, rank_offset, world_size

__all__ = [
    "AVCLoss",
    "IMCLoss",
    "info_nce",
    "mil_nce",
    "supcon_cross",
    "supcon_within",
]

Temperature = float | torch.Tensor
Mask = torch.Tensor | None  # (B,) bool, True = present; None: all present


# ---- helpers -----------------------------------------------------------------------------------------------------
@contextmanager
def _full_precision(x: torch.Tensor) -> Iterator[None]:
    """Disable autocast around the loss body (similarities and log-sum-exp in fp32 or better)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield


def _prep(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Upcast half precision to float32 and optionally L2-normalise the last dim."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return F.normalize(x, dim=-1) if normalize else x


def _mask_or_ones(mask: torch.Tensor | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if mask.shape != shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {shape}")
    return mask.to(device=device, dtype=torch.bool)


def _check_temperature(temperature: Temperature) -> None:
    if isinstance(temperature, float | int) and temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _use_gather(gather: bool) -> bool:
    return gather and is_dist()


def _masked_logits(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # most negative finite value, not -inf: a row with no valid entry stays finite in forward and backward
    return logits.masked_fill(~valid, torch.finfo(logits.dtype).min)


def _supcon_terms(
    anchor: torch.Tensor,
    cand: torch.Tensor,
    anchor_labels: torch.Tensor,
    cand_labels: torch.Tensor,
    temperature: Temperature,
    anchor_valid: torch.Tensor,
    cand_valid: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of SupCon ``L_out`` terms over kept anchors and the number of kept anchors.

    Args:
        anchor: (Ba, D); cand: (Bc, D); anchor_labels: (Ba,); cand_labels: (Bc,).
        anchor_valid: (Ba,) bool; cand_valid: (Ba, Bc) bool, which candidates each anchor sees.
    """
    logits = _masked_logits(anchor @ cand.T / temperature, cand_valid)  # (Ba, Bc)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (anchor_labels[:, None] == cand_labels[None, :]) & cand_valid  # (Ba, Bc)
    n_pos = pos.sum(dim=1)
    # where (not multiply): masked log-probs never enter, and clamp keeps 0/0 out of the backward pass
    per_anchor = -torch.where(pos, log_prob, 0.0).sum(dim=1) / n_pos.clamp(min=1).to(log_prob.dtype)
    keep = anchor_valid & (n_pos > 0)
    return torch.where(keep, per_anchor, 0.0).sum(), keep.sum()


def _reduce(total: torch.Tensor, count: torch.Tensor, gathered: bool) -> torch.Tensor:
    """Mean over kept anchors; under ``gather`` over the global count, scaled so the rank mean is the global loss."""
    scale = 1.0
    if gathered:
        count = gather_no_grad(count.reshape(1)).sum()
        scale = float(world_size())
    # count == 0 ⇒ total is an exact 0 still attached to the graph
    return total * (scale / count.clamp(min=1).to(total.dtype))


# ---- supervised contrastive (MMT AVC / IMC) ----------------------------------------------------------------------
def supcon_cross(
    anchor: torch.Tensor,
    other: torch.Tensor,
    labels: torch.Tensor,
    temperature: Temperature = 0.07,
    *,
    anchor_mask: torch.Tensor | None = None,
    other_mask: torch.Tensor | None = None,
    normalize: bool = True,
    gather: bool = False,
) -> torch.Tensor:
    """Supervised contrastive loss from one set of embeddings to another (one direction of MMT's AVC).

    Anchor ``i`` is scored against every valid item of ``other``; its positives are the items with ``labels[i]``
    (its own pair included). See the module docstring for the formula and the reductions.

    Args:
        anchor: (B, D) embeddings of the anchor modality (e.g. audio).
        other: (B, D) embeddings of the other modality (e.g. video); row ``i`` is the same sample as ``anchor[i]``.
        labels: (B,) integer class of each sample (shared by both modalities).
        temperature: positive float, or a 0-d tensor (learnable temperature).
        anchor_mask: (B,) bool, False drops the sample as an anchor (e.g. ``has_audio`` when audio anchors).
        other_mask: (B,) bool, False drops the sample as a candidate.
        normalize: L2-normalise both inputs first.
        gather: under distributed training, use candidates (and their labels, masks) from all ranks.

    Returns:
        0-d loss: mean over kept anchors (0, attached to the graph, when none is kept).
    """
    _check_temperature(temperature)
    if anchor.shape != other.shape or anchor.ndim != 2:
        raise ValueError(f"anchor and other must both be (B, D), got {tuple(anchor.shape)}, {tuple(other.shape)}")
    b, device = anchor.shape[0], anchor.device
    with _full_precision(anchor):
        a, o = _prep(anchor, normalize), _prep(other, normalize)
        a_valid = _mask_or_ones(anchor_mask, (b,), device)
        o_valid = _mask_or_ones(other_mask, (b,), device)
        o_labels = labels
        gathered = _use_gather(gather)
        if gathered:
            o, o_labels, o_valid = gather_with_grad(o), gather_no_grad(labels), gather_no_grad(o_valid)
        cand_valid = o_valid[None, :].expand(b, -1)
        total, count = _supcon_terms(a, o, labels, o_labels, temperature, a_valid, cand_valid)
        return _reduce(total, count, gathered)


def supcon_within(
    emb: torch.Tensor,
    labels: torch.Tensor,
    temperature: Temperature = 0.07,
    *,
    mask: torch.Tensor | None = None,
    normalize: bool = True,
    gather: bool = False,
) -> torch.Tensor:
    """Supervised contrastive loss within one set of embeddings (one modality of MMT's IMC).

    Positives of anchor ``i`` are the *other* samples with ``labels[i]``; ``i`` itself is excluded from both the
    numerator and the denominator.

    Args:
        emb: (B, D) embeddings of one modality.
        labels: (B,) integer classes.
        temperature: positive float or 0-d tensor.
        mask: (B,) bool, False drops the sample as anchor and candidate (e.g. ``has_audio`` for audio IMC).
        normalize: L2-normalise first.
        gather: under distributed training, use candidates from all ranks (self found at ``rank_offset(B) + i``).

    Returns:
        0-d loss: mean over kept anchors (0, attached to the graph, when none is kept).
    """
    _check_temperature(temperature)
    if emb.ndim != 2:
        raise ValueError(f"emb must be (B, D), got {tuple(emb.shape)}")
    b, device = emb.shape[0], emb.device
    with _full_precision(emb):
        e = _prep(emb, normalize)
        valid = _mask_or_ones(mask, (b,), device)
        cand, cand_labels, cand_valid = e, labels, valid
        offset = 0
        gathered = _use_gather(gather)
        if gathered:
            cand, cand_labels, cand_valid = gather_with_grad(e), gather_no_grad(labels), gather_no_grad(valid)
            offset = rank_offset(b, device)
        is_self = torch.zeros(b, cand.shape[0], dtype=torch.bool, device=device)  # (B, B_global)
        idx = torch.arange(b, device=device)
        is_self[idx, idx + offset] = True
        total, count = _supcon_terms(e, cand, labels, cand_labels, temperature, valid, cand_valid[None, :] & ~is_self)
        return _reduce(total, count, gathered)


def _both_ways(
    a: torch.Tensor,
    b: torch.Tensor,
    labels: torch.Tensor,
    temperature: Temperature,
    a_mask: Mask,
    b_mask: Mask,
    normalize: bool,
    gather: bool,
) -> torch.Tensor:
    """Mean of :func:`supcon_cross` a→b and b→a: AVC, and InfoNCE with the pair index as the label."""
    a2b = supcon_cross(
        a, b, labels, temperature, anchor_mask=a_mask, other_mask=b_mask, normalize=normalize, gather=gather
    )
    b2a = supcon_cross(
        b, a, labels, temperature, anchor_mask=b_mask, other_mask=a_mask, normalize=normalize, gather=gather
    )
    return 0.5 * (a2b + b2a)


# ---- InfoNCE / MIL-NCE (VATT) ------------------------------------------------------------------------------------
def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: Temperature = 0.07,
    *,
    a_mask: torch.Tensor | None = None,
    b_mask: torch.Tensor | None = None,
    normalize: bool = True,
    gather: bool = False,
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): ``a[i]`` and ``b[i]`` are the only positive pair; mean of a→b and b→a.

    Without masks this equals ``(cross_entropy(S, arange) + cross_entropy(S.T, arange)) / 2`` with ``S = a bᵀ / T``.

    Args:
        a: (B, D) embeddings of one modality; b: (B, D) of the other, paired by row.
        temperature: positive float or 0-d tensor (e.g. ``1 / logit_scale.exp()``).
        a_mask, b_mask: (B,) bool, False drops a sample's ``a`` (or ``b``) as anchor and candidate; a pair with one
            side missing has no positive and drops out of both directions.
        normalize: L2-normalise first.
        gather: under distributed training, candidates from all ranks.

    Returns:
        0-d loss.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must both be (B, D), got {tuple(a.shape)}, {tuple(b.shape)}")
    offset = rank_offset(a.shape[0], a.device) if _use_gather(gather) else 0
    ids = torch.arange(a.shape[0], device=a.device) + offset  # the pair index is the "class"
    return _both_ways(a, b, ids, temperature, a_mask, b_mask, normalize, gather)


def mil_nce(
    video: torch.Tensor,
    text: torch.Tensor,
    temperature: Temperature = 0.07,
    *,
    text_mask: torch.Tensor | None = None,
    video_mask: torch.Tensor | None = None,
    symmetric: bool = False,
    normalize: bool = True,
    gather: bool = False,
) -> torch.Tensor:
    """MIL-NCE: several positive text segments per clip (Miech et al. 2020, VATT's video-text loss).

    For clip ``i``: ``l_i = logsumexp(denominator scores) - logsumexp(scores of clip i's own segments)``.
    Denominator: clip ``i``'s video against every valid segment of the batch; with ``symmetric=True`` also every
    valid video against each of clip ``i``'s segments (Miech et al.'s code; the positives then appear twice).

    Args:
        video: (B, D) clip embeddings.
        text: (B, P, D) up to ``P`` text-segment embeddings per clip (padded).
        temperature: positive float or 0-d tensor.
        text_mask: (B, P) bool, False marks padding; a clip with no valid segment is not an anchor.
        video_mask: (B,) bool, False drops the clip as an anchor (and, when ``symmetric``, its video as a candidate).
            Its text segments stay negatives for other clips.
        symmetric: see above.
        normalize: L2-normalise first.
        gather: under distributed training, text (and, when ``symmetric``, video) candidates from all ranks.

    Returns:
        0-d loss: mean over kept clips (0, attached to the graph, when none is kept).
    """
    _check_temperature(temperature)
    if video.ndim != 2 or text.ndim != 3 or text.shape[0] != video.shape[0] or text.shape[2] != video.shape[1]:
        raise ValueError(f"expected video (B, D) and text (B, P, D), got {tuple(video.shape)}, {tuple(text.shape)}")
    b, p, device = video.shape[0], text.shape[1], video.device
    with _full_precision(video):
        v, t = _prep(video, normalize), _prep(text, normalize)
        t_valid = _mask_or_ones(text_mask, (b, p), device)
        v_valid = _mask_or_ones(video_mask, (b,), device)
        t_all, t_all_valid, v_all, v_all_valid = t, t_valid, v, v_valid
        offset = 0
        gathered = _use_gather(gather)
        if gathered:
            t_all, t_all_valid = gather_with_grad(t), gather_no_grad(t_valid)
            if symmetric:
                v_all, v_all_valid = gather_with_grad(v), gather_no_grad(v_valid)
            offset = rank_offset(b, device)
        idx = torch.arange(b, device=device)

        scores = torch.einsum("bd,cpd->bcp", v, t_all) / temperature  # (B, Bc, P): local video vs all segments
        pos = _masked_logits(scores[idx, idx + offset], t_valid)  # (B, P): clip i's own segments
        numerator = torch.logsumexp(pos, dim=1)
        den = _masked_logits(scores, t_all_valid[None].expand_as(scores)).flatten(1)  # (B, Bc*P)
        if symmetric:
            rev = torch.einsum("cd,bpd->bcp", v_all, t) / temperature  # (B, Bc, P): all videos vs clip i's segments
            rev_valid = v_all_valid[None, :, None] & t_valid[:, None, :]
            den = torch.cat([den, _masked_logits(rev, rev_valid).flatten(1)], dim=1)
        per_clip = torch.logsumexp(den, dim=1) - numerator
        keep = v_valid & t_valid.any(dim=1)
        return _reduce(torch.where(keep, per_clip, 0.0).sum(), keep.sum(), gathered)


# ---- modules -----------------------------------------------------------------------------------------------------
class _ContrastiveLoss(nn.Module):
    """Shared constructor and ``forward`` of ``AVCLoss`` and ``IMCLoss`` (each computes its loss in ``_loss``).

    Args:
        temperature: initial (or fixed) temperature; 0.07 is our default, not a value from the MMT paper.
        learnable_temperature: learn CLIP's ``logit_scale = log(1/T)``, with ``exp(logit_scale)`` clamped at
            ``max_logit_scale`` in forward.
        max_logit_scale: cap on ``1 / T`` when learnable (CLIP: 100).
        normalize: L2-normalise embeddings inside.
        gather: use candidates from all ranks under distributed training (see the module docstring).
    """

    def __init__(
        self,
        temperature: float = 0.07,
        *,
        learnable_temperature: bool = False,
        max_logit_scale: float = 100.0,
        normalize: bool = True,
        gather: bool = False,
    ) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.init_temperature = float(temperature)
        self.learnable_temperature = learnable_temperature
        self.max_logit_scale = max_logit_scale
        self.normalize = normalize
        self.gather = gather
        if learnable_temperature:
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))

    @property
    def temperature(self) -> Temperature:
        """Current temperature: a float, or a 0-d tensor carrying the gradient of ``logit_scale``."""
        if not self.learnable_temperature:
            return self.init_temperature
        # clamped in forward (no gradient past the cap); ``clamp_logit_scale_`` after the optimizer step keeps the
        # parameter itself at the cap, as open_clip does, so that it can move down again
        return 1.0 / self.logit_scale.exp().clamp(max=self.max_logit_scale)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the learnable ``logit_scale`` in place to ``[0, log(max_logit_scale)]`` (call after the step)."""
        if self.learnable_temperature:
            self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))

    def extra_repr(self) -> str:
        return (
            f"temperature={self.init_temperature}, learnable_temperature={self.learnable_temperature}, "
            f"normalize={self.normalize}, gather={self.gather}"
        )

    def forward(
        self,
        audio: torch.Tensor,
        video: torch.Tensor,
        labels: torch.Tensor,
        *,
        audio_mask: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: audio, video (B, D) embeddings; labels (B,) int; masks (B,) bool (e.g. ``has_audio``).

        Returns: 0-d loss.
        """
        return self._loss(audio, video, labels, audio_mask, video_mask)

    def _loss(
        self, audio: torch.Tensor, video: torch.Tensor, labels: torch.Tensor, audio_mask: Mask, video_mask: Mask
    ) -> torch.Tensor:
        raise NotImplementedError


class AVCLoss(_ContrastiveLoss):
    """MMT audio-video contrastive loss: mean of supervised contrastive audio→video and video→audio.

    Constructor arguments: see ``_ContrastiveLoss`` (``temperature=0.07``, ``learnable_temperature``,
    ``max_logit_scale``, ``normalize``, ``gather``).
    """

    def _loss(
        self, audio: torch.Tensor, video: torch.Tensor, labels: torch.Tensor, audio_mask: Mask, video_mask: Mask
    ) -> torch.Tensor:
        return _both_ways(audio, video, labels, self.temperature, audio_mask, video_mask, self.normalize, self.gather)


class IMCLoss(_ContrastiveLoss):
    """MMT intra-modal contrastive loss: mean of supervised contrastive audio-audio and video-video.

    Constructor arguments: as ``AVCLoss``.
    """

    def _loss(
        self, audio: torch.Tensor, video: torch.Tensor, labels: torch.Tensor, audio_mask: Mask, video_mask: Mask
    ) -> torch.Tensor:
        t, norm, gather = self.temperature, self.normalize, self.gather
        aa = supcon_within(audio, labels, t, mask=audio_mask, normalize=norm, gather=gather)
        vv = supcon_within(video, labels, t, mask=video_mask, normalize=norm, gather=gather)
        return 0.5 * (aa + vv)
