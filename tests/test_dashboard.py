"""``edgenas dashboard``: optuna-dashboard on a run's study, with edgenas's views, opened in a
real headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from _browser import plot_points, render
from _cli import EDGENAS, run_cli


@pytest.fixture
def run_copy(reported_run: Path, tmp_path: Path) -> Path:
    """The shared run, copied: the dashboard saves its views into the study."""
    copy = tmp_path / reported_run.name
    shutil.copytree(reported_run, copy, ignore=shutil.ignore_patterns("cache", "*.onnx"))
    return copy


@pytest.fixture
def served(run_copy: Path) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [*EDGENAS, "dashboard", str(run_copy), "--port", "0", "--refresh", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # the URL comes alone on standard output
        if not url.startswith("http://127.0.0.1:"):
            proc.kill()
            raise AssertionError(f"no URL from the dashboard: {url!r} {proc.stderr.read()}")  # type: ignore[union-attr]
        yield run_copy, url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_dashboard_draws_the_runs_points(served: tuple[Path, str, subprocess.Popen[str]]) -> None:
    from edgenas.report import load_run
    from edgenas.report._figures import pareto_marker_count

    run, url, proc = served
    assert url.endswith("/dashboard/studies/1")
    dom = render(url, wait_ms=15_000)
    points, texts = plot_points(dom, "user-defined-plot:edgenas-pareto")
    assert points == pareto_marker_count(load_run(run)) > 0
    assert "latency (ms)" in texts and "validation accuracy (%)" in texts
    over_time, _ = plot_points(dom, "user-defined-plot:edgenas-front-over-time")
    assert over_time > 0
    plot_points(dom, "user-defined-plot:edgenas-front-blocks")  # drawn (bars, not markers)
    # the study's note says what the run is
    with urllib.request.urlopen(url.replace("/dashboard/", "/api/"), timeout=30) as response:
        assert f"edgenas run `{run.name}`" in json.load(response)["note"]["body"]
    # every latency was measured here: no predicted-against-measured view to show
    assert "user-defined-plot:edgenas-latency-prediction" not in dom
    assert proc.poll() is None  # still serving


def test_views_follow_the_study_and_are_written_only_when_it_changed(run_copy: Path) -> None:
    from edgenas.report import Dashboard

    dashboard = Dashboard(run_copy, port=0)
    try:
        study = dashboard.study
        view = dashboard.view("pareto")
        assert view is not None and dashboard.view("front-over-time") is not None
        markers = sum(len(t.get("x") or ()) for t in view["data"])
        assert dashboard.refresh() == 0  # nothing changed, nothing written
        # A search adds a trained trial (here: a copy of a trained one).
        trained = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
        study.add_trial(
            optuna.trial.create_trial(
                state=trained.state, values=trained.values, params=trained.params,
                distributions=trained.distributions, user_attrs=trained.user_attrs,
                system_attrs=trained.system_attrs,
            )
        )  # fmt: skip
        assert dashboard.refresh() >= 1
        view = dashboard.view("pareto")
        assert view is not None and sum(len(t.get("x") or ()) for t in view["data"]) == markers + 1
    finally:
        dashboard.close()


def test_not_a_run_is_a_one_line_error(tmp_path: Path) -> None:
    proc = run_cli("dashboard", str(tmp_path), "--port", "0", timeout=60)
    assert proc.returncode == 2
    assert "holds no search" in proc.stderr and "Traceback" not in proc.stderr


def test_busy_port_is_a_clear_error(run_copy: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "edgenas", "dashboard", str(run_copy), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 2 and time.monotonic() - started < 60
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "--port 0" in proc.stderr


def test_a_port_out_of_range_is_named(tmp_path: Path) -> None:
    proc = run_cli("dashboard", str(tmp_path), "--port", "99999", timeout=60)
    assert proc.returncode == 2 and "--port" in proc.stderr and "65535" in proc.stderr
    assert "Traceback" not in proc.stderr
