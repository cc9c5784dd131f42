"""Shared test settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    # The models in tests are tiny: on a busy 2-core machine, OpenMP threads spin-waiting for
    # each other make every convolution far slower than one thread doing all the work.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
