"""Shared test settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
def reported_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, finalized Pareto search on synthetic data whose latency limit rejected
    candidates before training (the report's and the dashboard's subject).

    The baselines vgg and resnet are far slower than 1 ms at 64 px, so they are rejected
    whatever the machine; the small candidates of the space fit.
    """
    from _cli import QUICK, run_cli

    out = tmp_path_factory.mktemp("reported") / "syn"
    search = run_cli(
        "search", "synthetic", "--objective", "pareto", "--trials", "4", "--max-latency", "1ms",
        "--baseline", "vgg", "--baseline", "resnet", "--out", str(out), *QUICK,
    )  # fmt: skip
    assert search.returncode == 0, search.stderr
    final = run_cli("finalize", str(out), "--epochs", "1")
    assert final.returncode == 0, final.stderr
    return out
