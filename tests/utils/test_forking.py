"""Forked workers must not garbage-collect objects inherited from the parent (utils/forking.py).

A PyAV audio resampler owns FFmpeg slice threads; in a forked child those threads do not exist, and freeing the
inherited resampler waits for them forever. The fresh-clone CI of 2026-12-06 hung so in ``write_shards``' pool.
"""

from __future__ import annotations

import gc
import multiprocessing as mp

import av
import numpy as np
import pytest

from avformer.data.dataset import worker_init
from avformer.data.shards.writer import _prepare_worker_init
from avformer.utils.forking import freeze_inherited


class _Holder:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        self.resampler.resample(frame)  # builds the filter graph (and its threads)


def _child(guard: str) -> None:
    {"freeze": freeze_inherited, "shards": _prepare_worker_init, "loader": lambda: worker_init(0)}[guard]()
    gc.collect()  # would free the inherited resampler without the guard


@pytest.mark.parametrize("guard", ["freeze", "shards", "loader"])
def test_a_forked_worker_does_not_free_inherited_garbage(guard: str) -> None:
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    gc.disable()
    try:
        _Holder()  # garbage in a cycle, left for the collector
        child = mp.get_context("fork").Process(target=_child, args=(guard,))
        child.start()
        child.join(30)
        hung = child.is_alive()
        if hung:
            child.kill()
            child.join()
    finally:
        gc.enable()
        gc.collect()  # here, where the resampler's threads live
    assert not hung, "the forked child hung freeing an inherited resampler"
    assert child.exitcode == 0
