"""Shared fixtures: fixed seeds, one thread (two test processes on two cores must not fight), shared-data paths."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(int(os.environ.get("AVFORMER_TEST_THREADS", "1")))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the test with a clear reason when it is absent (a user's fresh clone)."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found at {p} (it sits beside the repo on the team's machines and in CI)")
    return p
