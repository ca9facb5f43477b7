"""Pre-decoded tar shards (WebDataset layout): the writer behind ``avformer prepare`` and a streaming reader.

Decoding H.264/AAC is the usual bottleneck of video training. :func:`write_shards` decodes every manifest row once
(frames already at the training fps and short side, audio already mono at the target rate) into tar shards, and
:class:`ShardDataset` streams them back through the same transforms as
:class:`~avformer.data.dataset.AVDataset`, so the decoder leaves the training loop.

Modules:

- :mod:`~avformer.data.shards.format`: the shard format (members, ``index.json``, why gzip'd ``.npy``), loading
  the index and reading a shard's samples back (:func:`load_index`, :func:`iter_shard`, :func:`read_sample`), and
  what is refused when reading them, since shards and indexes are untrusted input (:class:`ShardSampleError`,
  :class:`ShardReadError`).
- :mod:`~avformer.data.shards.index_checks`: what an index may name and how it must be shaped (used by
  :func:`load_index`).
- :mod:`~avformer.data.shards.samples`: the budgets a stored sample must keep (used by :func:`read_sample`).
- :mod:`~avformer.data.shards.writer`: :class:`PrepareConfig` and :func:`write_shards` (``avformer prepare``).
- :mod:`~avformer.data.shards.plan`: the order of an epoch across ranks and workers (:func:`epoch_plan`).
- :mod:`~avformer.data.shards.reader`: :class:`ShardDataset` (epochs, mid-epoch resume) and
  :func:`make_shard_loader`.
"""

from __future__ import annotations

from avformer.data.shards.format import (
    FORMAT,
    FORMAT_VERSION,
    INDEX_NAME,
    ShardIndex,
    ShardInfo,
    ShardReadError,
    ShardSampleError,
    StoredSample,
    count_samples,
    iter_shard,
    load_index,
    read_sample,
)
from avformer.data.shards.plan import WorkerPlan, epoch_plan
from avformer.data.shards.reader import ShardDataset, make_shard_loader
from avformer.data.shards.writer import PrepareConfig, write_shards

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "PrepareConfig",
    "ShardDataset",
    "ShardIndex",
    "ShardInfo",
    "ShardReadError",
    "ShardSampleError",
    "StoredSample",
    "WorkerPlan",
    "count_samples",
    "epoch_plan",
    "iter_shard",
    "load_index",
    "make_shard_loader",
    "read_sample",
    "write_shards",
]
