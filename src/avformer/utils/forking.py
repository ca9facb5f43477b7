"""Forked worker processes (``multiprocessing`` pools, DataLoader workers) and objects that own threads.

A forked child gets copies of the parent's objects but none of its threads. When the child's garbage collector frees
an inherited object that owns a thread pool, for example a PyAV audio resampler (whose filter graph runs FFmpeg slice
threads), the object's destructor waits on threads that do not exist in the child, and the child hangs for good.
This was seen in the fresh-clone CI of 2026-12-06: both workers of ``write_shards`` stuck in
``avpriv_slicethread_free`` while ``gc`` collected an ``AudioResampler`` left over from an earlier decode.

Two guards, as Python's ``gc.freeze`` documentation advises for fork:

* :func:`collect_before_fork` in the parent, before the pool starts: garbage is freed where its threads still live.
* :func:`freeze_inherited` first thing in each child: every inherited object moves to the permanent generation, so
  the child's collector never frees what the parent left behind.
"""

from __future__ import annotations

import gc

__all__ = ["collect_before_fork", "freeze_inherited"]


def collect_before_fork() -> None:
    """Free the parent's garbage (cycles included) before forking workers."""
    gc.collect()


def freeze_inherited() -> None:
    """In a freshly forked child: never collect the objects inherited from the parent."""
    gc.freeze()
