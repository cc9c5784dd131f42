"""Fault injection: run directories that are damaged, shared or impossible to satisfy.

Two searches on one run directory, a study.db emptied, truncated or overwritten, a search
process killed while a trial runs, limits nothing can meet, and an error nobody explained:
each case is set up so that the fault fires, and the test asserts what the user sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from _cli import EDGENAS, QUICK, run_cli

from edgenas._io import replacing
from edgenas.cost import Constraints, Costs
from edgenas.errors import ConfigError
from edgenas.study import open_study
from edgenas.study._reach import STREAK_WARN, RejectionStreak
from edgenas.study._samplers import REDRAWN_ATTR, Redraws

SEARCH = ["search", "synthetic", "--strategy", "random", *QUICK]


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error a refused command printed, checked to be a one-line message."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    return " ".join(done.stderr.split())  # the console wraps long lines


def fingerprint(run: Path) -> dict[str, str]:
    """The content of every file of a run directory but the image cache, by path."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and "cache" not in p.relative_to(run).parts
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search of two trainings (with results.json, best.onnx and weights)."""
    run = tmp_path_factory.mktemp("faults") / "run"
    done = run_cli(*SEARCH, "--trials", "2", "--out", str(run))
    assert done.returncode == 0, done.stderr
    return run


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


# -- a damaged or missing study --------------------------------------------------------------------
def test_an_emptied_study_is_refused_and_nothing_is_overwritten(
    finished_run: Path, tmp_path: Path
) -> None:
    run = copy_of(finished_run, tmp_path)
    (run / "study.db").write_bytes(b"")
    before = fingerprint(run)
    message = one_line_error(run_cli(*SEARCH, "--trials", "2", "--out", str(run)))
    assert "study.db is empty (0 bytes)" in message
    assert "results.json" in message and "Restore it from a backup" in message
    assert (
        fingerprint(run) == before
    )  # results.json, best.onnx, weights, the empty db: as they were


DAMAGES = ["random bytes", "truncated", "empty", "missing"]


# Every damage through show and search; report, finalize and dashboard open the study the same
# way as show (open_run_study), so one damage each checks that they turn its error into a line.
@pytest.mark.parametrize(
    ("command", "damage"),
    [("show", d) for d in DAMAGES]
    + [("search", d) for d in DAMAGES]
    + [("report", "truncated"), ("finalize", "random bytes"), ("dashboard", "empty")],
)
def test_a_damaged_study_gives_one_line_naming_it(
    finished_run: Path, tmp_path: Path, damage: str, command: str
) -> None:
    run = copy_of(finished_run, tmp_path)
    db = run / "study.db"
    data = db.read_bytes()
    if damage == "random bytes":
        db.write_bytes(bytes(range(256)) * 64)
    elif damage == "truncated":
        db.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        db.write_bytes(b"")
    else:
        db.unlink()
    before = fingerprint(run)
    args = {
        "show": ["show", str(run)],
        "report": ["report", str(run)],
        "finalize": ["finalize", str(run), "--epochs", "1"],
        "dashboard": ["dashboard", str(run), "--port", "0"],
        "search": [*SEARCH, "--trials", "2", "--out", str(run)],
    }[command]
    message = one_line_error(run_cli(*args))
    assert "study.db" in message
    assert {"random bytes": "damaged", "truncated": "damaged", "empty": "empty",
            "missing": "missing"}[damage] in message  # fmt: skip
    assert fingerprint(run) == before


def test_a_study_older_than_the_run_is_refused(finished_run: Path, tmp_path: Path) -> None:
    run = copy_of(finished_run, tmp_path)
    # Another, emptier database in its place: a valid study of no trials.
    other = tmp_path / "other"
    other.mkdir()
    assert not open_study(other, [optuna.study.StudyDirection.MAXIMIZE]).get_trials()
    shutil.copyfile(other / "study.db", run / "study.db")
    before = fingerprint(run)
    message = one_line_error(run_cli(*SEARCH, "--trials", "2", "--out", str(run)))
    assert "holds 0 trial(s), but its results.json lists 2" in message
    assert fingerprint(run) == before


# -- two searches on one run directory -------------------------------------------------------------
def _complete(results: dict) -> int:
    return sum(t["state"] == "complete" for t in results["trials"])


@pytest.mark.slow
def test_two_searches_on_one_run_never_set_results_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [*SEARCH, "--trials", "6", "--out", str(run)]
    first = run_cli(*args[:-4], "--trials", "1", "--out", str(run))  # the study exists first
    assert first.returncode == 0, first.stderr
    seen: list[int] = []
    unreadable = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal unreadable
        path = run / "results.json"
        while not stop.is_set():
            try:
                seen.append(_complete(json.loads(path.read_text())))
            except ValueError:
                unreadable += 1
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    procs = [
        subprocess.Popen(
            [*EDGENAS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
    finally:
        stop.set()
        watcher.join()
    assert unreadable == 0
    assert seen == sorted(seen), seen  # never backwards
    final = json.loads((run / "results.json").read_text())
    rebuilt = json.loads(run_cli("show", str(run), "--json").stdout)
    assert [(t["number"], t["state"], t.get("accuracy")) for t in final["trials"]] == [
        (t["number"], t["state"], t.get("accuracy")) for t in rebuilt["trials"]
    ]
    assert final["best"] == rebuilt["best"] is not None


def test_a_search_waits_for_the_run_directorys_writer(finished_run: Path, tmp_path: Path) -> None:
    """While another process holds the run's writer lock, a search writes no summary."""
    run = copy_of(finished_run, tmp_path)
    results = run / "results.json"
    before = results.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from edgenas.study import RunDir\n"
         f"with RunDir({str(run)!r}).writing():\n"
         "    print('held', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    search = None
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # Two trainings are done: the search trains a third, then must wait to write.
        search = subprocess.Popen([*EDGENAS, *SEARCH, "--trials", "3", "--out", str(run)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        study = open_study(run)
        deadline = time.monotonic() + 300
        while sum(t.state.is_finished() for t in study.get_trials()) < 3:
            assert search.poll() is None and time.monotonic() < deadline, "no third trial"
            time.sleep(0.2)
        time.sleep(2.0)  # time enough to write, were the lock not held
        assert results.read_bytes() == before
        assert holder.stdin is not None
        holder.stdin.write("release\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
        _, err = search.communicate(timeout=600)
        assert search.returncode == 0, err
    finally:
        holder.kill()
        if search is not None:
            search.kill()
    assert _complete(json.loads(results.read_text())) == 3


# -- a search process gone while its trial ran -----------------------------------------------------
def test_show_tells_a_trial_left_by_a_dead_process_from_a_running_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([*EDGENAS, *SEARCH, "--epochs", "30", "--trials", "2", "--out",
                             str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(ConfigError):  # the study is being created
                states = [t.state for t in open_study(run).get_trials()]
                if optuna.trial.TrialState.RUNNING in states:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the search never started a trial")
        alive = run_cli("show", str(run))
        assert "running now: trial 0" in alive.stdout, alive.stdout
    finally:
        proc.kill()  # SIGKILL: the trial stays RUNNING in the study
        proc.wait()
    gone = run_cli("show", str(run))
    out = " ".join(gone.stdout.split())
    assert "running now" not in out
    assert "left unfinished by a search process that is gone: trial 0" in out


def test_rejections_during_one_proposal_are_counted_as_they_happen() -> None:
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    redraws = Redraws(study, frozen)
    redraws.EVERY_S = 0.0  # record at each rejection
    for _ in range(3):
        redraws.add()
    # Another process (edgenas show) reads the count before the proposal ends.
    assert study.get_trials()[0].system_attrs[REDRAWN_ATTR] == 3
    study.tell(trial, 0.0)


# -- limits nothing can meet -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "cost"),
    [("--max-latency", "1us", "ms"), ("--max-macs", "1k", "MACs"), ("--max-size", "1KB", "MB")],
)
def test_an_impossible_limit_is_refused_before_the_search_starts(
    tmp_path: Path, option: str, value: str, cost: str
) -> None:
    run = tmp_path / "run"
    message = one_line_error(run_cli(*SEARCH, "--trials", "2", option, value, "--out", str(run)))
    assert f"no architecture of the space can meet {option}" in message
    assert "the cheapest found" in message and "Allow at least" in message
    assert "× the limit" in message
    # Refused before the run directory recorded anything: the corrected command starts afresh.
    assert not (run / "spec.json").exists() and not (run / "study.db").exists()


def test_a_long_streak_of_rejections_is_explained(caplog: pytest.LogCaptureFixture) -> None:
    streak = RejectionStreak(Constraints(max_latency_ms=1.0, max_macs=1e6))
    over = Costs(3.0, 1.0, 0.1, 1000, 5e5)  # latency 3× the limit, MACs within
    for _ in range(STREAK_WARN - 1):
        streak.rejected(over)
    assert not caplog.records
    streak.rejected(over)
    message = caplog.records[-1].getMessage()
    assert f"{STREAK_WARN} candidates in a row broke the limits" in message
    assert f"{STREAK_WARN} over --max-latency 1 ms (median 3 ms)" in message
    assert "--max-macs" not in message  # no candidate broke it
    streak.feasible()
    for _ in range(STREAK_WARN):
        streak.rejected(over)
    assert len(caplog.records) == 1  # the next warning waits for a streak 4× as long
    for _ in range(3 * STREAK_WARN):
        streak.rejected(over)
    assert len(caplog.records) == 2
    assert f"{4 * STREAK_WARN} candidates in a row" in caplog.records[-1].getMessage()


# -- files written whole or not at all -------------------------------------------------------------
def test_a_file_replaced_by_a_failed_write_keeps_its_old_content(tmp_path: Path) -> None:
    target = tmp_path / "best.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_bytes(b"half of the n")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.onnx"]  # no temporary left behind


# -- the safety net --------------------------------------------------------------------------------
def test_an_unexpected_error_is_one_line_and_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgenas.cli as cli

    def broken() -> None:
        raise KeyError("a fault nobody explained")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.setattr(sys, "argv", ["edgenas", "show", "runs/x"])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("EDGENAS_DEBUG", raising=False)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "unexpected KeyError: 'a fault nobody explained'" in err
    assert "Traceback" not in err
    logs = list(tmp_path.glob("edgenas-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "command: edgenas show runs/x" in text and "Traceback" in text and "broken" in text
    # Debug mode shows the traceback instead.
    monkeypatch.setenv("EDGENAS_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main()


def test_an_unexpected_error_in_a_real_command_is_one_line_and_a_log(tmp_path: Path) -> None:
    """A user's space that breaks where no check expects it: one line that names the log."""
    (tmp_path / "brittle.py").write_text(
        "import dataclasses\n"
        "from edgenas.space import StagedSpace, edge_space\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Brittle(StagedSpace):\n"
        "    def describe(self):\n"
        "        raise ZeroDivisionError('the space broke')\n"
        "def space():\n"
        "    base = edge_space(resolutions=[64], max_depth=2)\n"
        "    return Brittle(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)"
        " if f.init})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
           "TMPDIR": str(tmp_path), "COLUMNS": "160"}  # fmt: skip
    env.pop("EDGENAS_DEBUG", None)
    args = [*EDGENAS, "search", "synthetic", "--space", "brittle:space", "--epochs", "1",
            "--trials", "1", "--out", str(tmp_path / "run")]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1, done.stderr
    err = " ".join(done.stderr.split())
    assert "unexpected ZeroDivisionError: the space broke" in err and "Traceback" not in err
    logs = list(tmp_path.glob("edgenas-error-*.log"))
    assert len(logs) == 1 and "ZeroDivisionError" in logs[0].read_text()
    shown = subprocess.run([*args, "--verbose"], capture_output=True, text=True, timeout=600,
                           env=env)  # fmt: skip
    assert "Traceback" in shown.stderr and "the space broke" in shown.stderr


def test_a_study_left_mid_write_by_a_killed_process_is_not_taken_for_damaged(
    tmp_path: Path,
) -> None:
    """SIGKILL during a write leaves a journal; the next open rolls it back, so the study is
    sound, not damaged."""
    from edgenas.study._study import RunDir, check_study_file

    db = tmp_path / "study.db"
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('create table t(x)')\n"
         "c.execute('pragma cache_size=1'); c.execute('begin')\n"
         "c.executemany('insert into t values (?)', [(i,) for i in range(20000)])\n"
         "print('mid-write', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "mid-write"
        writer.kill()  # SIGKILL inside the transaction
        writer.wait()
    finally:
        writer.kill()
    assert (tmp_path / "study.db-journal").exists()  # the fault is set up: a hot journal
    check_study_file(RunDir(tmp_path))  # no error: SQLite rolls the journal back
