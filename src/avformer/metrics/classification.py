"""Classification metrics: single-label (top-k, per-class accuracy, confusion) and multi-label (mAP, AUC, d').

Single-label metrics follow the VGGSound / Kinetics-Sounds convention: top-1/top-5 accuracy over samples and the
mean of per-class accuracies (recall per class; sklearn's ``balanced_accuracy_score``). The confusion matrix has
rows = true class, columns = predicted class (sklearn's convention).

Multi-label metrics follow the AudioSet convention (Gemmeke et al. 2017; Hershey et al. 2017; the AST/PSLA
evaluation code):

- **mAP**: average precision per class, then the mean over classes. A class with no positive in the evaluated set
  has no defined AP; it is left out of the mean and counted (:class:`ClassAverage.num_excluded`). AP is computed as
  sklearn's ``average_precision_score`` does: one operating point per *distinct* score, so tied scores are one
  threshold (no interpolation, no arbitrary order among ties).
- **AUC**: ROC AUC per class (Mann-Whitney U with mid-ranks for ties, equal to sklearn's ``roc_auc_score``), macro
  mean over the classes that have both positives and negatives.
- **d'**: ``d_prime(auc) = sqrt(2) * Φ⁻¹(auc)``, reported from the macro AUC as AudioSet papers do.

Ties: the prediction is the first class of highest score (``torch.argmax``), and top-k breaks ties among scores the
same way (a lower class index ranks first), so top-1, the confusion matrix, per-class accuracy and the predicted
class of ``predictions.csv`` always count the same hits.

**Views of an audio-visual model, and which clips each counts.** An audio-visual model is scored three ways: the
``fused`` prediction (both streams, as present), ``audio`` (the video masked out) and ``video`` (the audio masked
out); a single encoder has one view, named after its modality. Reports name them ``fused``, ``audio-only`` and
``video-only`` (:data:`VIEW_LABELS`; an audio-only model's one row is ``audio-only``). The rule, applied by
:func:`counted_clips` and used by training validation (:mod:`avformer.tasks.classification`), ``report.md``
(:mod:`avformer.train.report`), ``avformer eval`` (:mod:`avformer.eval.report`) and ``avformer demo``:

- every view counts only labelled clips (single-label: label >= 0; multi-label: every row);
- the **fused** view counts every such clip (a loaded clip has at least one stream);
- the **audio-only** view counts the clips that have audio, the **video-only** view the clips that have video
  (a single encoder's view: the clips that have its stream).

Why: with its only stream masked out a clip has no input at all, and the model's output for it is its prior (often
tied logits, whose argmax is an accident of class order); counting it would score the prior, not the modality, and
the number would shift with the share of such clips. The training losses already mask a clip out of the loss of a
stream it lacks. Every report gives the number of clips each view counted (``num_samples`` of
:meth:`ClassificationMetrics.compute`). Validation outputs carry "this view does not see this clip" as a row of
NaN logits (:func:`hide_absent`), which :func:`score_outputs` reads back.

Everything is plain torch (float64 for the reductions); scikit-learn is only the reference in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import torch

__all__ = [
    "VIEWS",
    "VIEW_LABELS",
    "ClassAverage",
    "ClassificationMetrics",
    "average_precision",
    "confusion_matrix",
    "counted_clips",
    "d_prime",
    "hide_absent",
    "labeled_rows",
    "mean_average_precision",
    "mean_per_class_accuracy",
    "per_class_accuracy",
    "per_class_from_confusion",
    "roc_auc",
    "roc_auc_per_class",
    "score_outputs",
    "score_view",
    "topk_accuracy",
    "view_label",
]

_CLASS_CHUNK = 256  # columns sorted at once in the multi-label metrics; bounds memory to ~N × 256 × 8 bytes × a few


@dataclass(frozen=True)
class ClassAverage:
    """A metric averaged over the classes where it is defined.

    Attributes:
        value: mean over the classes used; NaN when no class qualifies.
        per_class: (K,) float64 per-class values, NaN for the excluded classes.
    """

    value: float
    per_class: torch.Tensor

    @property
    def num_used(self) -> int:
        """Number of classes in the mean."""
        return int((~torch.isnan(self.per_class)).sum())

    @property
    def num_excluded(self) -> int:
        """Number of classes left out (no positive for mAP; no positive or no negative for AUC)."""
        return int(torch.isnan(self.per_class).sum())

    def __float__(self) -> float:
        return self.value


# ---- single-label ------------------------------------------------------------------------------


def _as_labels(x: torch.Tensor, name: str) -> torch.Tensor:
    """(N,) class indices from (N,) indices or (N, K) scores / one-hot rows (argmax)."""
    if x.ndim == 2:
        return x.argmax(dim=1)
    if x.ndim != 1:
        raise ValueError(f"{name} must be (N,) class indices or (N, K) scores, got shape {tuple(x.shape)}")
    if x.is_floating_point():
        raise ValueError(f"{name} as (N,) must hold integer class indices, got {x.dtype}")
    return x.long()


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Fraction of samples whose true class is among the k highest scores, for each k.

    Args:
        logits: (N, K) scores (logits or probabilities: only their order matters).
        target: (N,) class indices, or (N, K) one-hot / soft targets (argmax is the class).
        ks: the k values; each is clipped to K (so ``top5`` with 3 classes is 1.0).

    Returns:
        ``{"top1": ..., "top5": ...}`` keyed by the requested k; NaN for an empty batch. Ties among scores are
        broken by class index (the lower index ranks first, as :func:`torch.argmax` picks), so top-1 counts the
        hits of the argmax prediction.
    """
    n = logits.shape[0] if logits.ndim == 2 else 0
    hits = _topk_hits(logits, target, ks)
    return {f"top{k}": (hits[k] / n if n else math.nan) for k in ks}


def _topk_hits(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int]) -> dict[int, int]:
    """Number of rows whose target is within the top k, for each k (k clipped to K)."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {tuple(logits.shape)}")
    target = _as_labels(target, "target").to(logits.device)
    n, num_classes = logits.shape
    if target.shape[0] != n:
        raise ValueError(f"logits has {n} rows but target has {target.shape[0]}")
    if n == 0 or num_classes == 0:
        return dict.fromkeys(ks, 0)
    if int(target.min()) < 0 or int(target.max()) >= num_classes:
        raise ValueError(f"target holds class indices outside [0, {num_classes})")
    # NaN ranks above everything, as in torch.argmax; ties go to the lower class index
    scores = torch.where(logits.isnan(), torch.full_like(logits, math.inf), logits)
    true = scores.gather(1, target[:, None])  # (N, 1)
    lower = torch.arange(num_classes, device=logits.device)[None, :] < target[:, None]  # (N, K)
    rank = ((scores > true) | ((scores == true) & lower)).sum(dim=1)  # (N,) 0 = predicted
    return {k: int((rank < min(k, num_classes)).sum()) for k in ks}


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts of (true class, predicted class) pairs.

    Args:
        pred: (N,) predicted class indices, or (N, K) scores (argmax is the prediction).
        target: (N,) true class indices, or (N, K) one-hot / soft targets.
        num_classes: K.

    Returns:
        (K, K) int64, ``cm[i, j]`` = samples of true class i predicted as j (rows: truth, as in sklearn).
    """
    pred = _as_labels(pred, "pred").cpu()
    target = _as_labels(target, "target").cpu()
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in length")
    for name, t in (("pred", pred), ("target", target)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{name} holds class indices outside [0, {num_classes})")
    flat = target * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """(K,) float64 accuracy of each class from a (K, K) confusion matrix (rows = truth); NaN for a class without
    samples."""
    support = cm.sum(dim=1).double()
    acc = cm.diagonal().double() / support
    return torch.where(support > 0, acc, torch.full_like(acc, math.nan))


def per_class_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Accuracy (recall) per true class.

    Args:
        pred: (N,) predicted indices or (N, K) scores.
        target: (N,) true indices or (N, K) one-hot targets.
        num_classes: K; inferred from 2-D ``pred`` or from the largest index when omitted.

    Returns:
        (K,) float64; NaN for classes absent from ``target``.
    """
    return per_class_from_confusion(confusion_matrix(pred, target, _infer_num_classes(pred, target, num_classes)))


def mean_per_class_accuracy(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None = None) -> float:
    """Mean over the classes present in ``target`` of their accuracy (sklearn's ``balanced_accuracy_score``)."""
    acc = per_class_accuracy(pred, target, num_classes)
    return float(acc.nanmean()) if (~acc.isnan()).any() else math.nan


def _infer_num_classes(pred: torch.Tensor, target: torch.Tensor, num_classes: int | None) -> int:
    if num_classes is not None:
        return num_classes
    for t in (pred, target):
        if t.ndim == 2:
            return t.shape[1]
    if pred.numel() == 0:
        return 0
    return int(max(int(pred.max()), int(target.max()))) + 1


# ---- multi-label -------------------------------------------------------------------------------


def _check_multilabel(scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if scores.ndim == 1:
        scores, target = scores[:, None], target[:, None]
    if scores.ndim != 2 or scores.shape != target.shape:
        raise ValueError(
            f"scores and target must both be (N, K) (multi-hot target), got {tuple(scores.shape)} and "
            f"{tuple(target.shape)}"
        )
    return scores.detach().cpu(), target.detach().cpu() > 0


def _tie_group_end(sorted_scores: torch.Tensor) -> torch.Tensor:
    """For sorted columns (N, C): index of the last row of each row's run of equal scores."""
    n = sorted_scores.shape[0]
    ar = torch.arange(n)[:, None].expand_as(sorted_scores)
    is_last = torch.ones_like(sorted_scores, dtype=torch.bool)
    is_last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    idx = torch.where(is_last, ar, torch.full_like(ar, n))
    return idx.flip(0).cummin(dim=0).values.flip(0)  # nearest run end at or below each row


def _tie_group_start(sorted_scores: torch.Tensor) -> torch.Tensor:
    """For sorted columns (N, C): index of the first row of each row's run of equal scores."""
    ar = torch.arange(sorted_scores.shape[0])[:, None].expand_as(sorted_scores)
    is_first = torch.ones_like(sorted_scores, dtype=torch.bool)
    is_first[1:] = sorted_scores[1:] != sorted_scores[:-1]
    return torch.where(is_first, ar, torch.zeros_like(ar)).cummax(dim=0).values


def _per_class_sorted(
    scores: torch.Tensor,
    target: torch.Tensor,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    descending: bool,
) -> torch.Tensor:
    """(K,) float64 ``metric(s_sorted, y_sorted)`` of every class; all NaN when there are no rows.

    The columns are taken ``_CLASS_CHUNK`` at a time in float64 (exact counts, bounded memory), each sorted by score;
    ``metric`` maps the sorted scores and the targets in the same order, (N, C), to (C,).
    """
    scores, target = _check_multilabel(scores, target)
    out = torch.full((scores.shape[1],), math.nan, dtype=torch.float64)
    if scores.shape[0] == 0:
        return out
    for c0 in range(0, scores.shape[1], _CLASS_CHUNK):
        s_sorted, order = scores[:, c0 : c0 + _CLASS_CHUNK].double().sort(dim=0, descending=descending)
        y_sorted = target[:, c0 : c0 + _CLASS_CHUNK].double().gather(0, order)  # (N, C) positives in rank order
        out[c0 : c0 + s_sorted.shape[1]] = metric(s_sorted, y_sorted)
    return out


def _average_precision_sorted(s_sorted: torch.Tensor, y_sorted: torch.Tensor) -> torch.Tensor:
    """AP of columns sorted by decreasing score; NaN for a column without a positive."""
    tp = y_sorted.cumsum(dim=0)
    rank = torch.arange(1, s_sorted.shape[0] + 1, dtype=torch.float64)[:, None]
    precision = tp / rank  # precision after each row
    # A threshold sits at the end of each run of tied scores: every positive in the run gains the precision
    # measured there (its share of the recall step R_n − R_{n−1}).
    prec_at_threshold = precision.gather(0, _tie_group_end(s_sorted))
    num_pos = y_sorted.sum(dim=0)
    ap = (y_sorted * prec_at_threshold).sum(dim=0) / num_pos
    return torch.where(num_pos > 0, ap, torch.full_like(ap, math.nan))


def _roc_auc_sorted(s_sorted: torch.Tensor, y_sorted: torch.Tensor) -> torch.Tensor:
    """ROC AUC of columns sorted by increasing score; NaN for a column without both positives and negatives."""
    # 1-based mid-rank of each run of ties
    mid_rank = (_tie_group_start(s_sorted) + _tie_group_end(s_sorted)).double() / 2 + 1
    num_pos = y_sorted.sum(dim=0)
    num_neg = s_sorted.shape[0] - num_pos
    u = (mid_rank * y_sorted).sum(dim=0) - num_pos * (num_pos + 1) / 2  # Mann-Whitney U of the positives
    auc = u / (num_pos * num_neg)
    valid = (num_pos > 0) & (num_neg > 0)
    return torch.where(valid, auc, torch.full_like(auc, math.nan))


def average_precision(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Average precision per class, one operating point per distinct score (sklearn's definition).

    ``AP = Σ_n (R_n − R_{n−1}) · P_n`` over the distinct score thresholds in decreasing order.

    Args:
        scores: (N, K) scores (any monotone transform of the logits gives the same AP).
        target: (N, K) multi-hot; values > 0 are positives.

    Returns:
        (K,) float64 AP; NaN for classes with no positive.
    """
    return _per_class_sorted(scores, target, _average_precision_sorted, descending=True)


def mean_average_precision(scores: torch.Tensor, target: torch.Tensor) -> ClassAverage:
    """AudioSet-style mAP: mean AP over the classes that have at least one positive.

    Args:
        scores: (N, K) scores; target: (N, K) multi-hot.

    Returns:
        :class:`ClassAverage` (``float(result)`` is the mAP; ``result.num_excluded`` counts classes with no positive).
    """
    ap = average_precision(scores, target)
    return ClassAverage(float(ap.nanmean()) if (~ap.isnan()).any() else math.nan, ap)


def roc_auc_per_class(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ROC AUC per class from mid-ranks (ties count one half), equal to sklearn's ``roc_auc_score``.

    Returns:
        (K,) float64; NaN for classes without both positives and negatives.
    """
    return _per_class_sorted(scores, target, _roc_auc_sorted, descending=False)


def roc_auc(scores: torch.Tensor, target: torch.Tensor) -> ClassAverage:
    """Macro ROC AUC over the classes that have both positives and negatives."""
    auc = roc_auc_per_class(scores, target)
    return ClassAverage(float(auc.nanmean()) if (~auc.isnan()).any() else math.nan, auc)


@overload
def d_prime(auc: float) -> float: ...
@overload
def d_prime(auc: torch.Tensor) -> torch.Tensor: ...
def d_prime(auc: float | torch.Tensor) -> float | torch.Tensor:
    """Sensitivity index from an AUC: ``sqrt(2) · Φ⁻¹(auc)`` (AudioSet convention; 0.5 → 0, 1 → inf).

    Returns a float for a float and a tensor (float64) for a tensor.
    """
    t = torch.as_tensor(auc, dtype=torch.float64)
    d = math.sqrt(2.0) * torch.special.ndtri(t)
    return d if isinstance(auc, torch.Tensor) else float(d)


# ---- accumulator -------------------------------------------------------------------------------


class ClassificationMetrics:
    """Accumulates batches of logits and targets; :meth:`compute` returns the epoch's metrics.

    Single-label mode keeps only a confusion matrix and top-k hit counts (constant memory). Multi-label mode keeps
    the scores (as given: keep logits rather than sigmoid outputs, which saturate into ties in float32) and targets
    on the CPU, since AP needs the full ranking.

    ``compute()`` keys:
        single-label: ``top1``, ``top5`` (one per k), ``mean_class_acc``, ``num_samples``.
        multi-label: ``mAP``, ``AUC``, ``d_prime`` (from the macro AUC), ``num_samples``,
        ``mAP_excluded_classes`` (no positive), ``AUC_excluded_classes`` (no positive or no negative).

    For distributed evaluation, gather each rank's accumulator (or its inputs) and :meth:`merge` them.
    """

    def __init__(self, num_classes: int, *, multi_label: bool = False, ks: Sequence[int] = (1, 5)) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive integers, got {ks}")
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.ks = tuple(ks)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.num_samples = 0
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        self._topk_hits = dict.fromkeys(self.ks, 0)
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        Args:
            logits: (B, K) scores.
            target: single-label: (B,) indices or (B, K) one-hot; multi-label: (B, K) multi-hot.
        """
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (B, {self.num_classes}), got {tuple(logits.shape)}")
        logits = logits.detach().float().cpu()
        target = target.detach().cpu()
        if self.multi_label:
            if target.shape != logits.shape:
                raise ValueError(f"multi-label target must be (B, K) like logits, got {tuple(target.shape)}")
            self._scores.append(logits)
            self._targets.append(target > 0)
        else:
            labels = _as_labels(target, "target")
            for k, hits in _topk_hits(logits, labels, self.ks).items():
                self._topk_hits[k] += hits
            self.confusion += confusion_matrix(logits, labels, self.num_classes)
        self.num_samples += logits.shape[0]

    def merge(self, other: ClassificationMetrics) -> None:
        """Add another accumulator's state (e.g. from another rank) into this one."""
        if (other.num_classes, other.multi_label, other.ks) != (self.num_classes, self.multi_label, self.ks):
            raise ValueError("cannot merge accumulators with different num_classes, multi_label or ks")
        self.num_samples += other.num_samples
        self.confusion += other.confusion
        for k in self.ks:
            self._topk_hits[k] += other._topk_hits[k]
        self._scores += other._scores
        self._targets += other._targets

    def compute(self) -> dict[str, float]:
        """The metrics over everything added since the last :meth:`reset`."""
        n = self.num_samples
        if self.multi_label:
            scores = torch.cat(self._scores) if self._scores else torch.zeros(0, self.num_classes)
            target = torch.cat(self._targets) if self._targets else torch.zeros(0, self.num_classes)
            m_ap = mean_average_precision(scores, target)
            auc = roc_auc(scores, target)
            return {
                "mAP": m_ap.value,
                "AUC": auc.value,
                "d_prime": d_prime(auc.value),
                "num_samples": float(n),
                "mAP_excluded_classes": float(m_ap.num_excluded),
                "AUC_excluded_classes": float(auc.num_excluded),
            }
        out = {f"top{k}": (self._topk_hits[k] / n if n else math.nan) for k in self.ks}
        acc = per_class_from_confusion(self.confusion)
        out["mean_class_acc"] = float(acc.nanmean()) if (~acc.isnan()).any() else math.nan
        out["num_samples"] = float(n)
        return out


# ---- views of an audio-visual model ------------------------------------------------------------------------------

VIEWS: tuple[str, ...] = ("fused", "audio", "video")
VIEW_LABELS: dict[str, str] = {"fused": "fused", "audio": "audio-only", "video": "video-only"}

# the key of each view in validation outputs (``logits``: the fused prediction of an audio-visual model)
_OUTPUT_KEYS: dict[str, str] = {"fused": "logits", "audio": "audio_logits", "video": "video_logits"}


def view_label(view: str) -> str:
    """How every report names a view: ``fused``, ``audio-only``, ``video-only``."""
    if view not in VIEW_LABELS:
        raise ValueError(f"unknown view {view!r}; the views are {', '.join(VIEWS)}")
    return VIEW_LABELS[view]


def labeled_rows(label: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """(N,) bool: the rows with a target (single-label: ``label >= 0``, -1 = unlabelled; multi-label: every row)."""
    if multilabel:
        return torch.ones(label.shape[0], dtype=torch.bool, device=label.device)
    return label >= 0


def counted_clips(
    view: str,
    label: torch.Tensor,
    *,
    has_audio: torch.Tensor | None = None,
    has_video: torch.Tensor | None = None,
    multilabel: bool = False,
) -> torch.Tensor:
    """(N,) bool: the clips ``view`` counts (the rule of the module docstring).

    Args:
        view: ``"fused"``, ``"audio"`` or ``"video"`` (a single encoder's view is named after its modality).
        label: (N,) class indices (-1 = unlabelled) or (N, K) multi-hot.
        has_audio, has_video: (N,) presence masks; None means every clip has that stream.
        multilabel: every row is labelled.
    """
    view_label(view)  # a known view
    keep = labeled_rows(label, multilabel)
    present = {"audio": has_audio, "video": has_video}.get(view)
    if present is not None:
        keep = keep & present.to(device=keep.device, dtype=torch.bool)
    return keep


def hide_absent(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``logits`` with the rows of the clips a view does not see (``present`` False) set to NaN: how validation
    outputs say which clips the audio-only / video-only view counts (:func:`score_outputs` reads it back)."""
    return logits.masked_fill(~present.to(device=logits.device, dtype=torch.bool)[:, None], math.nan)


def score_view(
    logits: torch.Tensor, label: torch.Tensor, counted: torch.Tensor, num_classes: int, *, multilabel: bool = False
) -> dict[str, float]:
    """One view's metrics over the ``counted`` rows (:meth:`ClassificationMetrics.compute` keys, ``num_samples``
    being the number of clips counted)."""
    acc = ClassificationMetrics(num_classes, multi_label=multilabel)
    counted = counted.to(device=logits.device, dtype=torch.bool)
    acc.update(logits[counted], label.to(logits.device)[counted])
    return acc.compute()


def score_outputs(
    outputs: Mapping[str, torch.Tensor], *, num_classes: int | None = None, multilabel: bool = False
) -> dict[str, dict[str, float]]:
    """Every view's metrics from validation outputs, in the order fused, audio, video (those present).

    Args:
        outputs: ``label`` and the logits of each view: ``logits`` (fused), ``audio_logits``, ``video_logits``; a
            single encoder gives only its own view's key. The audio / video rows of clips without that stream are
            NaN (:func:`hide_absent`); the fused view counts every labelled clip whatever its logits.
        num_classes: K (default: the width of the logits).
        multilabel: mAP / AUC / d' instead of top-k accuracy.

    Returns:
        view -> :meth:`ClassificationMetrics.compute` dict (``num_samples``: the clips the view counted).
    """
    label = outputs["label"]
    out: dict[str, dict[str, float]] = {}
    for view in VIEWS:
        key = _OUTPUT_KEYS[view]
        if key not in outputs:
            continue
        logits = outputs[key]
        present = None if view == "fused" else ~logits.isnan().all(dim=1)
        counted = counted_clips(view, label, has_audio=present, has_video=present, multilabel=multilabel)
        out[view] = score_view(logits, label, counted, num_classes or logits.shape[1], multilabel=multilabel)
    return out
