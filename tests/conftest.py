"""Shared fixtures: fixed seeds, one thread (two test processes on two cores must not fight), and precision auto
resolved to fp32."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("AVFORMER_TEST_THREADS", "1")))
# train.precision auto (the default) resolves to fp32 in the tests, on any CPU (with or without bf16 units), in this
# process and in the avformer processes tests start; tests of bf16 ask for it. Set it to bf16 to run the suite so.
os.environ.setdefault("AVFORMER_AUTO_PRECISION", "fp32")


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
