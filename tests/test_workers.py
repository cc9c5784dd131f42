"""``--workers N``: trainings in parallel processes, the search process the only writer, and a
worker killed during a training replaced without losing or double-counting a result."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _cli import EDGENAS, QUICK, run_cli
from optuna.trial import TrialState

from edgenas.study import _records as R
from edgenas.study import open_study
from edgenas.study._workers import threads_per_worker

ARGS = ["--strategy", "random", "--resolution", "64", "--max-depth", "2", "--epochs", "2",
        "--no-early-stop"]  # fmt: skip


def test_threads_are_shared_out_not_oversubscribed() -> None:
    cores = os.cpu_count() or 1
    assert threads_per_worker(1, None) == cores
    assert threads_per_worker(2, None) == max(1, cores // 2)
    assert threads_per_worker(4 * cores, None) == 1
    assert threads_per_worker(2, 3) == 3  # --threads wins


def test_bad_worker_count_is_named(tmp_path: Path) -> None:
    proc = run_cli("search", "synthetic", "--workers", "0", "--out", str(tmp_path / "r"), *QUICK)
    assert proc.returncode == 2 and "--workers" in proc.stderr


@pytest.mark.slow
def test_two_workers_train_at_once_and_the_budget_holds(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("search", "synthetic", "--trials", "4", "--workers", "2", "--out", str(run),
                   *ARGS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trials = open_study(run).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    # Some training started before the one before it ended: two ran at once.
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    results = json.loads((run / "results.json").read_text())
    assert results["summary"]["trained"] == 4
    for t in trials:
        assert (run / "trials" / f"{t.number:05d}" / "model.pt").exists()


def _workers_of(pid: int) -> list[int]:
    """Process ids of the training workers a search process started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_a_worker_killed_during_a_training_is_replaced_and_its_candidate_runs_again(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    command = [*EDGENAS, "search", "synthetic", "--trials", "4", "--workers", "2", "--out",
               str(run), *ARGS]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        db = run / "study.db"
        if not db.exists():
            continue
        try:
            running = [t for t in open_study(run).get_trials() if t.state == TrialState.RUNNING]
        except Exception:
            continue
        workers = _workers_of(proc.pid)
        if len(running) >= 2 and len(workers) == 2:  # both workers are training
            time.sleep(1.0)  # well inside a training
            os.kill(workers[0], signal.SIGKILL)
            killed = workers[0]
    _, err = proc.communicate(timeout=600)
    assert killed is not None, "no training was seen running"
    assert proc.returncode == 0, err
    trials = open_study(run).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4  # the budget, each training counted once
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert len(lost) == 1
    for t in lost:
        assert t.user_attrs[R.ATTR_REASON] == R.INTERRUPTED
        retry = [c for c in trials if c.user_attrs.get(R.ATTR_RETRY_OF) == t.number]
        assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
        assert retry[0].user_attrs[R.ATTR_LOST] == 1
    assert "the process training it died" in err
