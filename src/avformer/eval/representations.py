"""Representations of any run that encodes audio and/or video: embeddings of a manifest, linear probe, retrieval.

* :func:`extract_embeddings` runs a frozen model over a manifest once (one centre window per clip) and keeps, per
  clip, what the model's ``represent(video, audio, has_video, has_audio)`` returns: ``video_pooled`` /
  ``audio_pooled`` (encoder features, what a linear probe reads), ``video_va`` / ``audio_va`` (the audio-video
  common space: VATT's video-audio heads, MMT's contrastive projections), ``video_vt`` (VATT's video-text space) and
  ``av_fused`` (a joint audio-visual embedding, from a fusion that makes one: ``agnostic``), plus the text
  embedding of clips with text when the model embeds text (``embed_text``). A single encoder without ``represent``
  gives its ``forward_features(x).pooled`` for its own modality (``input_kind``).
* :func:`fit_linear_probe`: multinomial logistic regression on standardised frozen features, trained full-batch with
  L-BFGS. The L2 strength is picked on a held-out fifth of the *train* features (never on val), then the probe is
  refit on all of train and scored once on val. Deterministic for a given seed.
* :func:`retrieval_metrics`: zero-shot audio→video, video→audio (and text→video when there is text) R@1/5/10,
  median rank and class-relevance mAP when labels exist (see :mod:`avformer.metrics.retrieval` for the conventions).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avformer.data.dataset import AVDataset, DataConfig, make_loader
from avformer.data.manifest import Manifest
from avformer.metrics.retrieval import (
    class_relevance_map,
    paired_retrieval_metrics,
    retrieval_report,
    similarity_matrix,
)
from avformer.tasks.inference import input_modality
from avformer.utils.progress import track

__all__ = [
    "Embeddings",
    "extract_embeddings",
    "fit_linear_probe",
    "represent",
    "represented_modalities",
    "retrieval_metrics",
]

_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)
_KEYS = ("video_pooled", "audio_pooled", "video_va", "audio_va", "video_vt", "av_fused")


@dataclass
class Embeddings:
    """Per-clip outputs of a model over a manifest (rows that failed to load are absent; ``index`` says which).
    A representation the model does not produce is None (e.g. ``video_*`` for an audio encoder)."""

    index: Tensor  # (N,) manifest row of each clip
    ids: list[str]
    paths: list[str]
    labels: Tensor  # (N,) class index, -1 when unlabeled
    classes: list[str]
    has_video: Tensor  # (N,) bool
    has_audio: Tensor
    video_pooled: Tensor | None = None  # (N, D) encoder features
    audio_pooled: Tensor | None = None
    video_va: Tensor | None = None  # (N, E) audio-video common space
    audio_va: Tensor | None = None
    video_vt: Tensor | None = None  # (N, vt_dim) video-text space (VATT)
    av_fused: Tensor | None = None  # (N, D) joint audio-visual embedding (a fusion that makes one: agnostic)
    texts: list[str | None] = field(default_factory=list)
    text_vt: Tensor | None = None  # (N, vt_dim), zeros where the clip has no text
    has_text: Tensor | None = None  # (N,) bool

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def represented_modalities(model: nn.Module) -> tuple[str, ...]:
    """The input streams ``model`` represents: ``("video", "audio")`` for AV models and VATT, else its own one."""
    own = getattr(model, "represent_modalities", None)
    return tuple(own) if own is not None else (input_modality(model),)


def represent(model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
    """The representations of one batch (see the module docstring)."""
    fn = getattr(model, "represent", None)
    if fn is not None:
        out: dict[str, Tensor] = fn(batch["video"], batch["audio"], batch.get("has_video"), batch.get("has_audio"))
        return out
    m = input_modality(model)
    return {f"{m}_pooled": model.forward_features(batch[m]).pooled}


@torch.no_grad()
def extract_embeddings(
    model: nn.Module,
    manifest: Manifest,
    data: DataConfig,
    *,
    batch_size: int = 64,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> Embeddings:
    """Embed every loadable row of ``manifest`` with ``model`` in eval mode (one centre window per clip).

    Labels are read only to be returned (for a probe or mAP); the model never sees them. ``progress``: show the
    batches done (a bar on a terminal, else a line every 30 s: :mod:`avformer.utils.progress`).
    """
    modalities = represented_modalities(model)
    data = dataclasses.replace(data, num_test_clips=1, num_test_crops=1, modalities=modalities)
    ds = AVDataset(manifest, data, train=False)
    loader = make_loader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    was_training = model.training
    model.eval().to(device)
    parts: dict[str, list[Tensor]] = {}
    index: list[int] = []
    texts: list[str | None] = []
    try:
        for batch in track(loader, "embed", unit="batches", enabled=progress):
            n = int(batch["batch_size"])
            if n == 0:
                continue
            inputs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            for k, v in represent(model, inputs).items():
                parts.setdefault(k, []).append(v.detach().float().cpu())
            for m in ("video", "audio"):
                present = batch.get(f"has_{m}")
                parts.setdefault(f"has_{m}", []).append(
                    present.bool() if m in modalities and present is not None else torch.full((n,), m in modalities)
                )
            labels = batch["label"] if batch["label"].ndim == 1 else torch.full_like(batch["index"], -1)
            parts.setdefault("labels", []).append(labels)
            index += batch["index"].tolist()
            texts += batch.get("text") or [None] * n
    finally:
        model.train(was_training)
    if not index:
        raise ValueError(f"{manifest.source}: no row could be loaded")
    cat = {k: torch.cat(v) for k, v in parts.items()}
    emb = Embeddings(
        index=torch.tensor(index),
        ids=[manifest[i].id for i in index],
        paths=[manifest[i].path for i in index],
        labels=cat["labels"].long(),
        classes=list(manifest.classes),
        has_video=cat["has_video"].bool(),
        has_audio=cat["has_audio"].bool(),
        texts=texts,
        **{k: cat[k] for k in _KEYS if k in cat},
    )
    has_text = torch.tensor([t is not None and bool(t.strip()) for t in texts])
    embed_text = getattr(model, "embed_text", None)
    if has_text.any() and embed_text is not None and emb.video_vt is not None:
        text_vt = torch.zeros(len(texts), emb.video_vt.shape[1])
        which = has_text.nonzero().flatten().tolist()
        model.eval()  # as for the clips above: no dropout / drop-path in the text tower
        try:
            for s in range(0, len(which), batch_size):
                rows = which[s : s + batch_size]
                text_vt[rows] = embed_text([texts[i] or "" for i in rows]).float().cpu()
        finally:
            model.train(was_training)
        emb.text_vt, emb.has_text = text_vt, has_text
    return emb


# ---- linear probe -------------------------------------------------------------------------------------------------
def _fit_logreg(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, max_iter: int) -> Tensor:
    """(D + 1, K) weights (last row: bias) of L2-regularised multinomial logistic regression, by L-BFGS."""
    xb = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    w = torch.zeros(xb.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, y) + 0.5 * weight_decay * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return w.detach()


def _predict(w: Tensor, x: Tensor) -> Tensor:
    return (torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1) @ w).argmax(dim=1)


def fit_linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    num_classes: int,
    *,
    weight_decays: tuple[float, ...] = _WEIGHT_DECAYS,
    max_iter: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier on frozen features and score it on val.

    Args:
        train_x: (N, D) features; train_y: (N,) classes in [0, num_classes) (rows with -1 are dropped).
        val_x, val_y: the same for val.
        weight_decays: L2 strengths tried; the best on a held-out fifth of train wins.

    Returns:
        ``top1`` (val accuracy), ``train_top1``, ``weight_decay`` (the chosen one), ``n_train``, ``n_val``.
    """
    keep_tr, keep_va = train_y >= 0, val_y >= 0
    xtr, ytr = train_x[keep_tr].double(), train_y[keep_tr].long()
    xva, yva = val_x[keep_va].double(), val_y[keep_va].long()
    if xtr.shape[0] < 2 or xva.shape[0] < 1:
        raise ValueError("a linear probe needs labeled train (>= 2) and val (>= 1) clips")
    mean, std = xtr.mean(0), xtr.std(0).clamp(min=1e-6)
    xtr, xva = (xtr - mean) / std, (xva - mean) / std
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(xtr.shape[0], generator=gen)
    n_hold = max(1, xtr.shape[0] // 5)
    hold, fit_idx = perm[:n_hold], perm[n_hold:]
    best_wd, best_acc = weight_decays[0], -1.0
    if len(weight_decays) > 1:
        for wd in weight_decays:
            w = _fit_logreg(xtr[fit_idx], ytr[fit_idx], num_classes, wd, max_iter)
            acc = float((_predict(w, xtr[hold]) == ytr[hold]).double().mean())
            if acc > best_acc:
                best_wd, best_acc = wd, acc
    w = _fit_logreg(xtr, ytr, num_classes, best_wd, max_iter)
    return {
        "top1": float((_predict(w, xva) == yva).double().mean()),
        "train_top1": float((_predict(w, xtr) == ytr).double().mean()),
        "weight_decay": best_wd,
        "n_train": float(xtr.shape[0]),
        "n_val": float(xva.shape[0]),
    }


# ---- retrieval ----------------------------------------------------------------------------------------------------
def retrieval_metrics(emb: Embeddings) -> dict[str, float]:
    """Audio→video / video→audio (``a2v_*``, ``v2a_*``; models with an audio-video space) and text→video
    (``t2v_*``, over clips with text, against every video) R@1/5/10, median rank, and class-relevance mAP where
    labels exist."""
    labels = emb.labels if (emb.labels >= 0).any() else None
    out: dict[str, float] = {}
    if emb.video_va is not None and emb.audio_va is not None:
        out = retrieval_report(emb.video_va, emb.audio_va, labels, has_video=emb.has_video, has_audio=emb.has_audio)
    if emb.video_vt is not None and emb.text_vt is not None and emb.has_text is not None and emb.has_text.any():
        gallery = emb.has_video.nonzero().flatten()
        queries = (emb.has_text & emb.has_video).nonzero().flatten()
        if len(queries):
            sim = similarity_matrix(emb.text_vt[queries], emb.video_vt[gallery])  # (Q, G)
            pos = {int(g): j for j, g in enumerate(gallery)}
            targets = torch.tensor([pos[int(q)] for q in queries])
            m = paired_retrieval_metrics(sim, targets)
            out |= {f"t2v_{k}": v for k, v in m.items() if k != "mean_rank"}
            if labels is not None and (emb.labels[queries] >= 0).all():
                out["t2v_mAP"] = class_relevance_map(sim, emb.labels[queries], emb.labels[gallery])
    return out
