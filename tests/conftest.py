"""Shared test settings."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Every edgenas command a test starts inherits this, before torch reads it. The test processes
# already share the cores between them; a command that also starts one OpenMP thread per core
# has them spin-waiting for each other on a busy machine, and its tiny models train several
# times slower (a finalize that takes 40 s alone took over 10 minutes beside the slow tests).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch
from typer.testing import CliRunner

from edgenas.cli import app

# Session fixtures that run a whole search. Under ``--dist loadgroup`` (``make test``) the tests
# that use one form one work unit, run by one process, so the search runs once however the
# files are spread over the processes; every other test stays with the rest of its file.
_SHARED_SEARCHES = ("reported_run",)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        uses = getattr(item, "fixturenames", ())
        file = item.nodeid.split("::", 1)[0]
        group = next((name for name in _SHARED_SEARCHES if name in uses), file)
        item.add_marker(pytest.mark.xdist_group(group))


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
    whatever the machine; the small candidates of the space fit. One block a stage: the report
    draws whatever blocks there are, and shallower candidates train in a fraction of the time.
    """
    from _cli import run_cli

    out = tmp_path_factory.mktemp("reported") / "syn"
    search = run_cli(
        "search", "synthetic", "--objective", "pareto", "--trials", "4", "--max-latency", "1ms",
        "--baseline", "vgg", "--baseline", "resnet", "--out", str(out),
        "--resolution", "64", "--max-depth", "1", "--epochs", "1",
    )  # fmt: skip
    assert search.returncode == 0, search.stderr
    final = run_cli("finalize", str(out), "--epochs", "1")
    assert final.returncode == 0, final.stderr
    return out


@pytest.fixture
def invoke() -> Iterator[Any]:
    """The command line in this process (a search sets a SIGTERM handler: it is put back)."""
    before = signal.getsignal(signal.SIGTERM)
    yield lambda *args: CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    signal.signal(signal.SIGTERM, before)
