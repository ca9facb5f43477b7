"""Seeding and RNG state: what makes a resumed run bit-identical to an uninterrupted one.

- Seeds: ``train.seed`` seeds python, numpy and torch at the start (``seed + rank`` under torchrun, so the
  processes draw different mixup / modality-dropout / DropToken samples; rank 0 matches one process). The loader
  is re-seeded at each epoch from ``(seed, epoch)`` (its ``generator``, ``sampler.set_epoch`` and
  ``dataset.set_epoch`` when present), so an epoch's data order does not depend on what ran before it.
- A checkpoint holds the RNG states (at the checkpoint and at the start of its epoch; under torchrun every rank's,
  and each rank resumes its own when the process count is unchanged), in a ``weights_only``-loadable form.
  Resuming replays the epoch start (RNG, loader seeding), fast-forwards the loader over the batches already
  trained (they are loaded and dropped), then restores the RNG of the checkpoint. On CPU with the same library
  versions a run killed at any point and resumed from its last checkpoint ends with bit-identical weights and
  metrics (tests/train/test_trainer.py).
- Limits of that guarantee: DataLoader worker processes keep their own RNG, which is not checkpointed, so with
  ``workers > 0`` the dataset must draw its randomness from ``(seed, epoch, index)`` as ``AVDataset`` does; on GPU
  bit-exactness also needs ``train.deterministic``. A mid-epoch resume re-reads (and drops) the batches already
  trained in that epoch, which costs their loading time.

The loop of :class:`~avformer.train.trainer.Trainer` calls these functions at the moments described above; what
else a checkpoint holds is in :mod:`avformer.train.checkpointing`.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from avformer.tasks.base import Batch

__all__ = ["seed_everything", "set_loader_epoch"]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- RNG state in a weights_only-loadable form ---------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_rng(ckpt: Mapping[str, Any], index: int, world: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(rng, epoch_start_rng)`` that process ``index`` of ``world`` resumes with: its own when the checkpoint holds
    one per process of a run with the same count (``rng_ranks``), rank 0's in one process; None when the process
    count changed (the caller falls back to rank 0's state)."""
    ranks = ckpt.get("rng_ranks")
    if ranks is not None and len(ranks) == world:
        return ranks[index]["rng"], ranks[index]["epoch_start_rng"]
    if world == 1:
        return ckpt["rng"], ckpt["epoch_start_rng"]
    return None


def set_loader_epoch(loader: Any, seed: int, epoch: int) -> None:
    """Make ``loader``'s order and augmentations for ``epoch`` a function of ``(seed, epoch)`` only.

    Re-seeds the loader's ``generator`` (shuffling and worker seeds) and calls ``set_epoch`` on the dataset, the
    sampler and the batch sampler when they have it (``AVDataset``, ``DistributedSampler``).
    """
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        gen.manual_seed(zlib.crc32(f"{seed}:{epoch}".encode()))
    batch_sampler = getattr(loader, "batch_sampler", None)
    seen: set[int] = set()
    for obj in (
        getattr(loader, "dataset", None),
        getattr(loader, "sampler", None),
        batch_sampler,
        getattr(batch_sampler, "sampler", None),
    ):
        fn = getattr(obj, "set_epoch", None)
        if callable(fn) and id(obj) not in seen:
            seen.add(id(obj))
            fn(epoch)


def _iter_keeping_rng(loader: Any) -> Iterator[Batch]:
    """``iter(loader)`` without advancing the global torch RNG.

    A DataLoader draws its workers' base seed from the global RNG when it creates an iterator: every epoch, or
    only once with persistent workers, so a resumed run would draw at a point where the uninterrupted one did
    not. Restoring the state makes the main process's random stream (dropout, ...) independent of that.
    """
    state = torch.get_rng_state()
    it = iter(loader)
    torch.set_rng_state(state)
    return it
