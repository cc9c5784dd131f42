"""Crash safety: a search killed with SIGKILL at any moment resumes without losing or
double-counting a training, and two search processes can work one study."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

import pytest
from _cli import EDGENAS, QUICK, run_cli
from optuna.trial import TrialState

from edgenas.study import _records as R
from edgenas.study import open_study
from edgenas.study._driver import ATTR_DRIVER, ATTR_HEARTBEAT, Driver, abandoned


def check_accounts(run: Path, budget: int) -> list:
    """Every trial finished, each interrupted one retried, the budget met exactly once."""
    trials = open_study(run).get_trials()
    states = {t.state for t in trials}
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    trained = [
        t for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.user_attrs.get(R.ATTR_TRAINED)
    ]  # fmt: skip
    assert len(trained) == budget
    retried = {t.user_attrs.get(R.ATTR_RETRY_OF) for t in trials}
    for t in trials:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get(R.ATTR_REASON) == R.INTERRUPTED
            assert t.number in retried  # queued again, so its work was not lost
    results = json.loads((run / "results.json").read_text())
    assert results["summary"]["interrupted"] == sum(t.state == TrialState.FAIL for t in trials)
    return trials


@pytest.mark.slow
def test_search_killed_at_random_moments_resumes_and_counts_each_training_once(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    args = ["search", "synthetic", "--trials", "4", "--strategy", "random", "--out", str(run),
            *QUICK]  # fmt: skip
    rng = random.Random(3)
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen([*EDGENAS, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(3.0, 9.0))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no handler runs
            kills += 1
        proc.wait()
    assert kills >= 2
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    check_accounts(run, 4)


@pytest.mark.slow
def test_two_processes_on_one_study_share_the_budget(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["search", "synthetic", "--trials", "4", "--strategy", "random", "--out", str(run),
            *QUICK]  # fmt: skip
    first = run_cli(*args[:3], "1", *args[4:])  # the study and its spec exist before both start
    assert first.returncode == 0, first.stderr
    procs = [
        subprocess.Popen(
            [*EDGENAS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    trials = check_accounts_shared(run)
    # Neither process took the other's running trial for a dead one.
    assert not any(t.state == TrialState.FAIL for t in trials)
    drivers = {t.user_attrs[ATTR_DRIVER]["pid"] for t in trials if ATTR_DRIVER in t.user_attrs}
    assert len(drivers) == 3  # the first run and both processes proposed trials


def check_accounts_shared(run: Path) -> list:
    trials = open_study(run).get_trials()
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    trained = [t for t in trials if t.user_attrs.get(R.ATTR_TRAINED)]
    # Both count the other's trainings under way: at most one extra each time they race.
    assert 4 <= len(trained) <= 5
    return trials


def test_a_running_trial_is_abandoned_only_when_its_process_is_gone() -> None:
    me = Driver.this()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Driver(me.host, gone.pid, "1")
    alive_other = subprocess.Popen(["sleep", "30"])
    try:
        from edgenas.study._driver import _start_time

        living = Driver(me.host, alive_other.pid, _start_time(alive_other.pid))
        assert not abandoned({ATTR_DRIVER: living.to_dict()})
        # The same pid with another start time is another process: the driver is gone.
        reused = Driver(me.host, alive_other.pid, "0")
        assert abandoned({ATTR_DRIVER: reused.to_dict()})
    finally:
        alive_other.kill()
        alive_other.wait()
    assert abandoned({ATTR_DRIVER: dead.to_dict()})
    assert abandoned({})  # no process recorded: from before drivers were, or died at once
    now = time.time()
    elsewhere = {"host": "another-machine", "pid": 1, "started": "1"}
    assert not abandoned({ATTR_DRIVER: elsewhere, ATTR_HEARTBEAT: now - 10}, now=now)
    assert abandoned({ATTR_DRIVER: elsewhere, ATTR_HEARTBEAT: now - 3600}, now=now)
    assert abandoned({ATTR_DRIVER: elsewhere}, now=now)


def test_processes_opening_a_new_study_at_once_all_open_it(tmp_path: Path) -> None:
    """A search starting while another process opens its study.db (``edgenas show``, a second
    search, a worker) must not take the race to create the tables for a damaged database."""
    import sys
    import textwrap

    run = tmp_path / "run"
    run.mkdir()
    processes = 6
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from edgenas.study import open_study
        ready = Path({str(tmp_path)!r}) / "ready"
        ready.mkdir(exist_ok=True)
        (ready / str(time.monotonic_ns())).touch()
        while len(list(ready.iterdir())) < {processes}:  # every process imported: go at once
            time.sleep(0.001)
        try:
            open_study(Path({str(run)!r}), directions=["maximize"])
            print("opened")
        except Exception as exc:
            print("error:", exc)
        """
    )
    started = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in started]
    assert outputs == ["opened"] * processes, outputs
    assert len(open_study(run).get_trials()) == 0  # one sound study, nothing else in it
