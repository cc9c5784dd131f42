"""End to end: the real CLI on the synthetic data set."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from _cli import EDGENAS, QUICK, run_cli

pytestmark = pytest.mark.slow


def completed_trials(db: Path) -> dict[int, float]:
    """Trial number → first objective value of every COMPLETE trial, read straight from SQLite."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=30) as con:
            rows = con.execute(
                "SELECT t.number, v.value FROM trials t JOIN trial_values v "
                "ON v.trial_id = t.trial_id AND v.objective = 0 WHERE t.state = 'COMPLETE'"
            ).fetchall()
    except sqlite3.OperationalError:  # the study is still being created
        return {}
    return {int(n): float(v) for n, v in rows}


@pytest.fixture(scope="module")
def searched(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("run") / "syn"
    proc = run_cli(
        "search", "synthetic", "--trials", "5", "--max-latency", "2ms", "--out", str(out),
        "--json", *QUICK,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_search_writes_results_json(
    searched: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = searched
    results = json.loads((out / "results.json").read_text())
    assert json.loads(proc.stdout) == results  # --json prints the same document
    # each trained trial's line says how long the rest of the search takes
    trained = [ln for ln in proc.stderr.splitlines() if " complete " in ln or " pruned " in ln]
    assert trained and all(" left" in ln for ln in trained[:-1]), proc.stderr
    assert results["constraints"] == {"max_latency_ms": 2.0}
    trials = results["trials"]
    assert sum(t["trained"] for t in trials) == 5
    for t in trials:
        assert set(t) >= {"number", "genotype", "state", "trained", "accuracy", "costs",
                          "epochs", "train_seconds"}  # fmt: skip
        assert t["state"] in {"complete", "infeasible", "pruned", "failed"}
        assert set(t["costs"]) == {"latency_ms", "peak_memory_mb", "size_mb", "size_int8_mb",
                                   "params", "macs", "energy_mj"}  # fmt: skip
        assert t["costs"]["size_int8_mb"] == pytest.approx(t["costs"]["size_mb"] / 4)
        assert t["costs"]["energy_mj"] > 0 and t["costs"]["peak_memory_mb"] > 0
        if t["state"] == "infeasible":
            assert not t["trained"] and t["accuracy"] is None
            assert t["costs"]["latency_ms"] > 2.0
        if t["trained"]:
            assert t["costs"]["latency_ms"] <= 2.0  # no infeasible candidate is ever trained
            assert 0.0 <= t["accuracy"] <= 1.0
    numbers = {t["number"] for t in trials}
    assert set(results["pareto"]) <= numbers
    best = results["best"]
    assert best in results["pareto"]
    assert results["best_latency_ms_measured"] <= 2.0  # the best also holds when measured again
    assert 0.0 <= results["best_holdout_accuracy"] <= 1.0
    best_trial = next(t for t in trials if t["number"] == best)
    assert best_trial["holdout_accuracy"] == results["best_holdout_accuracy"]


def test_best_onnx_runs(searched: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = searched
    session = ort.InferenceSession(str(out / "best.onnx"), providers=["CPUExecutionProvider"])
    image = session.get_inputs()[0]
    assert image.name == "image"
    x = np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)
    (logits,) = session.run(None, {"image": x})
    assert logits.shape == (3, 4)  # batch of 3, four synthetic classes
    assert np.isfinite(logits).all()


def test_show_matches_results(searched: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = searched
    results = json.loads((out / "results.json").read_text())
    shown = run_cli("show", str(out), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["pareto"] == results["pareto"]
    assert data["best"] == results["best"]
    assert [t["number"] for t in data["trials"]] == [t["number"] for t in results["trials"]]
    text = run_cli("show", str(out))
    assert "Pareto front" in text.stdout and "best:" in text.stdout
    assert "energy (est.)" in text.stdout  # an estimate, and labelled so


def test_rerun_resumes_without_training_again(
    searched: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = searched
    before = completed_trials(out / "study.db")
    proc = run_cli(
        "search", "synthetic", "--trials", "5", "--max-latency", "2ms", "--out", str(out), *QUICK
    )
    assert proc.returncode == 0, proc.stderr
    assert completed_trials(out / "study.db") == before  # budget already spent: nothing new


def test_other_settings_in_same_run_dir_refused(
    searched: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = searched
    proc = run_cli("search", "synthetic", "--max-latency", "9ms", "--out", str(out), *QUICK)
    assert proc.returncode == 2
    assert "constraints" in proc.stderr and "--out" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigkill_loses_no_completed_trial(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    db = out / "study.db"
    args = ["search", "synthetic", "--trials", "6", "--out", str(out), *QUICK]
    proc = subprocess.Popen([*EDGENAS, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(completed_trials(db)) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = completed_trials(db)
    assert len(before) >= 2
    finished = run_cli(*args)
    assert finished.returncode == 0, finished.stderr
    after = completed_trials(db)
    # every trial completed before the kill is still there with the same result
    assert {n: after[n] for n in before} == before
    results = json.loads((out / "results.json").read_text())
    trained = [t for t in results["trials"] if t["trained"] and t["state"] != "failed"]
    assert len(trained) == 6  # the interrupted training ran again; none counted twice
    genotypes = [t["genotype"] for t in trained]
    assert len(set(genotypes)) == len(genotypes)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-latency", "fast"], "latency 'fast'"),
        (["--max-memory", "-3MB"], "size '-3MB'"),
        (["--time-budget", "soon"], "duration 'soon'"),
        (["--strategy", "magic"], "strategy 'magic' is unknown"),
        (["--objective", "speed"], "objective 'speed' is unknown"),
        (["--blocks", "ir,lstm"], "lstm"),
        (["--baseline", "alexnet"], "baseline 'alexnet' is unknown"),
        (["--objective", "weighted"], "--max-latency"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--data-fraction", "2"], "--data-fraction must be within"),
        (["--max-energy", "lots"], "energy 'lots'"),
        (["--energy-coefficients", "pj_per_mac=-1,pj_per_byte=50"], "pj_per_mac must be"),
        (["--objective", "weighted", "--weights", "accuracy=0.6,energy=0.4"], "--max-energy"),
    ],
)
def test_bad_options_get_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli("search", "synthetic", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_folder(tmp_path: Path) -> None:
    proc = run_cli("search", str(tmp_path / "no-such-folder"), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert "no-such-folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_show_on_a_folder_without_a_search(tmp_path: Path) -> None:
    proc = run_cli("show", str(tmp_path))
    assert proc.returncode == 2
    assert "no search" in proc.stderr


def test_help_documents_the_options() -> None:
    proc = run_cli("search", "--help")
    assert proc.returncode == 0
    for option in ("--max-latency", "--max-memory", "--max-size", "--max-macs", "--strategy",
                   "--objective", "--trials", "--time-budget", "--epochs", "--resolution",
                   "--threads", "--out", "--seed", "--baseline", "--blocks", "--kernels",
                   "--max-depth", "--max-energy", "--energy-coefficients"):  # fmt: skip
        assert option in proc.stdout


def test_help_documents_the_fidelity_warm_start_and_stability_options() -> None:
    proc = run_cli("search", "--help")
    assert proc.returncode == 0
    for option in ("--fidelity-schedule", "--warm-start", "--stop-when-stable",
                   "--search-training", "hyperband", "baselines"):  # fmt: skip
        assert option in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fidelity-schedule", "magic"], "--fidelity-schedule 'magic' is unknown"),
        (["--fidelity-schedule", "sh", "--no-early-stop"], "drop one of the two"),
        (["--warm-start", "no-such-run"], "--warm-start 'no-such-run' is neither"),
        (["--stop-when-stable", "0"], "--stop-when-stable must be"),
    ],
)
def test_bad_search_schedule_options_get_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    proc = run_cli("search", "synthetic", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_successive_halving_search_from_the_command_line(tmp_path: Path) -> None:
    # Pareto: at epoch 1 a candidate goes on only while fewer than max(1, reached // 3) of the
    # candidates before it rank ahead (an earlier non-dominated front, or more crowding). With
    # seed 0 the second candidate is less accurate than the first at epoch 1 and slower by far
    # more than the noise of a latency measurement, so halving must stop it (and two later ones).
    # The rule itself is checked against every candidate's epoch-1 accuracy in test_search.
    out = tmp_path / "sh"
    proc = run_cli(
        "search", "synthetic", "--trials", "6", "--epochs", "2", "--resolution", "32",
        "--max-depth", "1", "--strategy", "random", "--objective", "pareto", "--seed", "0",
        "--fidelity-schedule", "sh", "--stop-when-stable", "9", "--max-latency", "50ms",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    trained = [t for t in results["trials"] if t["trained"]]
    assert len(trained) == 6
    pruned = [t for t in trained if t["state"] == "pruned"]
    assert pruned, "successive halving stopped no candidate"
    assert trained[0]["state"] == "complete"  # nothing to rank it against
    for ordinal, t in enumerate(trained, start=1):
        if t["state"] == "pruned":
            assert t["epochs"] == 1
            keep = max(1, ordinal // 3)
            ahead, reached = map(
                int, re.findall(r": (\d+) of the (\d+) candidates", t["reason"])[0]
            )
            assert t["reason"].startswith("pruned by successive halving at rung 1 (epoch 1): ")
            assert reached == ordinal and ahead >= keep
            assert f"only the top {keep} go on" in t["reason"]
        else:
            assert t["state"] == "complete" and t["epochs"] == 2
    assert results["run"]["fidelity_schedule"] == "sh"
    assert len(results["hypervolume"]["history"]) == 6
    assert results["hypervolume"]["reference_latency_ms"] == 50.0  # the limit
    assert results["summary"]["rejected"] == 0
    # Without a terminal, the view prints a line per trial with the front's measure.
    assert "hypervolume" in proc.stderr and "stable for" in proc.stderr and "/9" in proc.stderr
    assert "rejected by the constraints" in proc.stderr
