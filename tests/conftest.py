"""Shared fixtures: fixed seeds and one thread (two test processes on two cores must not fight)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("AVFORMER_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
