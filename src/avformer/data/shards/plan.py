"""The epoch plan: which samples each rank and DataLoader worker reads in an epoch, and in which order.

Reading: order, epochs and resume
---------------------------------
An epoch reads every sample of the index exactly once, split across distributed ranks and DataLoader workers, and
its order is a pure function of ``(seed, epoch, world_size, rank, num_workers, batch_size, shuffle_buffer)``:

1. The shard list is shuffled with ``(seed, epoch)`` (training only) and concatenated into one stream of N samples.
2. Rank ``r`` of ``R`` takes the contiguous range ``r`` of R near-equal parts (sizes differ by at most one sample;
   ``len(dataset)`` is this rank's share).
3. The rank's ``nb = ceil(n / B)`` batches are dealt to the ``W`` workers as contiguous input ranges of whole
   batches (``nb // W`` or one more each); the worker that the DataLoader asks last holds the one partial batch.
   So every batch but the rank's last is full and ``len(loader)`` is exact: the trainer's epoch loop sees every
   sample once.
4. Each worker passes its range through a **shuffle buffer** of ``shuffle_buffer`` samples (training only), seeded
   from ``(seed, epoch, rank, worker)``: a sample enters when its turn in the stream comes, and a random one of the
   buffer goes out. The buffer runs on *positions*, from the index's counts, before any byte is read, so the
   worker knows its whole output order in advance and reads each shard once, keeping only the samples it still
   has to emit (at most about ``shuffle_buffer`` of them, as compressed bytes).
5. The DataLoader asks the workers in turn, so the loader's batch ``j`` is batch ``j // W`` of worker ``j % W``.

The order therefore depends on ``num_workers`` (and on ``batch_size``): a run resumed with another number of
workers would see other batches, and :meth:`ShardDataset.load_state_dict` refuses that. Without workers (0) and
with one, the order is the same. Per-sample randomness (temporal window, crops, flips, SpecAugment) comes from
``(seed, epoch, manifest index)``, exactly as in ``AVDataset``, so it does not depend on the order or the workers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["WorkerPlan", "epoch_plan"]


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's share of one epoch.

    Attributes:
        shards: shard indices (into the index's list) overlapping the worker's input range, in reading order.
        outputs: the worker's samples in the order it yields them, as ``(shard index, position in shard)``.
    """

    shards: list[int]
    outputs: list[tuple[int, int]]


def _split_even(total: int, parts: int, part: int) -> tuple[int, int]:
    """Contiguous range ``part`` of ``parts`` near-equal ranges of ``range(total)`` (the first ones 1 longer)."""
    q, r = divmod(total, parts)
    start = part * q + min(part, r)
    return start, start + q + (part < r)


def _worker_sizes(n: int, batch_size: int, num_workers: int) -> list[int]:
    """Samples per worker: whole batches dealt round-robin; the worker asked last holds the partial one."""
    nb = -(-n // batch_size)
    if nb == 0:
        return [0] * num_workers
    last, deficit = (nb - 1) % num_workers, nb * batch_size - n
    return [
        (nb // num_workers + (w < nb % num_workers)) * batch_size - (deficit if w == last else 0)
        for w in range(num_workers)
    ]


def _shuffle_buffer(n: int, size: int, rng: random.Random) -> list[int]:
    """Output order of a shuffle buffer of ``size`` over the inputs ``0 .. n-1``.

    Inputs fill the buffer; once it is full each new input replaces a uniformly chosen buffered one, which is
    emitted; at the end the rest of the buffer comes out shuffled. Output ``t`` is an input ``<= t + size``.
    """
    out: list[int] = []
    buf: list[int] = []
    for p in range(n):
        if len(buf) < size:
            buf.append(p)
            continue
        j = rng.randrange(size)
        out.append(buf[j])
        buf[j] = p
    rng.shuffle(buf)
    out.extend(buf)
    return out


def epoch_plan(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    shuffle_buffer: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
) -> WorkerPlan:
    """What one DataLoader worker of one rank reads in one epoch, and in which order (module docstring, steps 1-4).

    Args:
        counts: samples per shard, in index order.
        seed, epoch: the order's seed.
        shuffle: shuffle the shard order and pass samples through the shuffle buffer (training).
        shuffle_buffer: buffer size in samples (<= 1: no buffer).
        batch_size: the DataLoader's batch size (the unit dealt to workers).
        rank, world_size: this process among the distributed ones.
        worker, num_workers: this DataLoader worker (num_workers 0 and 1 are the same).
    """
    num_workers = max(1, num_workers)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    if not 0 <= worker < num_workers:
        raise ValueError(f"worker {worker} outside [0, {num_workers})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(counts)))
    if shuffle:
        random.Random(f"avformer-shards:{seed}:{epoch}").shuffle(order)
    ra, rb = _split_even(sum(counts), world_size, rank)
    sizes = _worker_sizes(rb - ra, batch_size, num_workers)
    wa = ra + sum(sizes[:worker])
    wb = wa + sizes[worker]
    inputs: list[tuple[int, int]] = []
    shards: list[int] = []
    offset = 0
    for s in order:
        lo, hi = max(wa, offset), min(wb, offset + counts[s])
        if lo < hi:
            shards.append(s)
            inputs.extend((s, m) for m in range(lo - offset, hi - offset))
        offset += counts[s]
        if offset >= wb:
            break
    if shuffle and shuffle_buffer > 1 and len(inputs) > 1:
        rng = random.Random(f"avformer-shuffle-buffer:{seed}:{epoch}:{rank}:{worker}")
        return WorkerPlan(shards, [inputs[p] for p in _shuffle_buffer(len(inputs), shuffle_buffer, rng)])
    return WorkerPlan(shards, inputs)


def _batches_before(batches: int, worker: int, num_workers: int) -> int:
    """How many of the loader's first ``batches`` batches came from ``worker`` (the loader asks in turn)."""
    return max(0, -(-(batches - worker) // num_workers))
