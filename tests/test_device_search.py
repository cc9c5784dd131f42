"""Searching with a device profile: latency predicted, the front and the best measured at the end."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import edgenas
from edgenas.device import profile_plan
from edgenas.errors import ConfigError
from edgenas.profile import load_profile, write_plan

SPACE = edgenas.edge_space(resolutions="64", max_depth=1)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("profile")
    write_plan(SPACE, work / "plan.zip", architectures=12, references=6, in_channels=1,
               num_classes=4)  # fmt: skip
    profile_plan(work / "plan.zip", work / "local.json", max_seconds=0.02, memory=False)
    return work / "local.json"


def test_search_predicts_latency_and_measures_the_front_and_best(
    profile: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = edgenas.search("synthetic", out=run, device=profile, max_latency="3ms", trials=2,
                            epochs=1, space=SPACE, strategy="random")  # fmt: skip
    # nothing was measured while searching: the measurement cache stays empty
    cache = run / "latency_cache.json"
    assert not cache.exists() or not json.loads(cache.read_text())["latency_ms"]
    results = json.loads((run / "results.json").read_text())
    by_number = {t["number"]: t for t in results["trials"]}
    assert results["pareto"]
    for number in results["pareto"]:
        t = by_number[number]
        assert t["latency_ms_predicted"] == pytest.approx(t["costs"]["latency_ms"])
        assert t["latency_ms_measured"] > 0
    assert result.best is not None
    assert results["best_latency_ms_predicted"] == pytest.approx(result.best.costs.latency_ms)
    assert results["best_latency_ms_measured"] > 0
    assert results["run"]["latency"]["source"] == "predicted"
    assert results["run"]["latency"]["profile"] == str(profile)


def test_a_training_device_given_as_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train_device"):
        edgenas.search("synthetic", out=tmp_path / "r", device="cuda", trials=1, epochs=1,
                       space=SPACE)  # fmt: skip


def _edited(profile: Path, tmp_path: Path, **changes: object) -> Path:
    data = json.loads(profile.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_profiles_of_another_runtime_or_thread_count_warn(
    profile: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edgenas"):
        load_profile(_edited(profile, tmp_path, runtime__version="0.0.1"))
    assert "ONNX Runtime 0.0.1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgenas"):
        load_profile(profile, threads=4)
    assert "timed with 1 thread(s), 4 are in use" in caplog.text


def test_wrong_units_are_named(profile: Path, tmp_path: Path) -> None:
    data = json.loads(profile.read_text())
    key = next(iter(data["measurements"]))
    data["measurements"][key] = {"kind": "conv", "median_us": 120.0}
    path = tmp_path / "us.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"median_us.*milliseconds as median_ms"):
        load_profile(path)


def test_cli_search_with_a_device_profile(profile: Path, tmp_path: Path) -> None:
    run = tmp_path / "cli"
    args = ["search", "synthetic", "--device", str(profile), "--trials", "1", "--epochs", "1",
            "--max-latency", "3ms", "--resolution", "64", "--max-depth", "1",
            "--strategy", "random", "--out", str(run), "--json"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "250"}  # no wrapping of the table's headers
    proc = subprocess.run([sys.executable, "-m", "edgenas", *args], capture_output=True,
                          text=True, timeout=600, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"latency predicted from {profile}" in proc.stderr
    assert "latency (pred.)" in proc.stderr and "ms predicted" in proc.stderr
    results = json.loads(proc.stdout)
    assert results["run"]["latency"]["source"] == "predicted"
    assert results["best_latency_ms_predicted"] > 0 and results["best_latency_ms_measured"] > 0


def test_finalize_rechecks_constraints_on_the_profiles_prediction(
    profile: Path, tmp_path: Path
) -> None:
    from edgenas.finalize import CompressOptions, finalize

    run = tmp_path / "run"
    edgenas.search("synthetic", out=run, device=profile, max_latency="3ms", max_memory="500MB",
                   trials=1, epochs=1, space=SPACE, strategy="random")  # fmt: skip
    result = finalize(run, epochs=1, options=CompressOptions(device_profile=profile))
    assert [s.name for s in result.steps] == ["full training", "int8"]
    fp32, int8 = result.steps
    assert fp32.predicted is not None and int8.predicted is not None
    # The prediction of a compressed model is the architecture's, scaled by the measured ratio.
    ratio = int8.latency_ms / fp32.latency_ms
    assert int8.predicted["latency_ms"] == pytest.approx(fp32.predicted["latency_ms"] * ratio)
    for step in result.steps:
        latency = step.constraints["max_latency_ms"]
        assert latency["limit"] == 3.0
        assert latency["measured_holds"] == (step.latency_ms <= 3.0)
        assert latency["predicted"] == pytest.approx(step.predicted["latency_ms"])
        assert step.constraints["max_memory_mb"]["measured_holds"] is not None
    card = (run / "final" / "MODEL_CARD.md").read_text()
    assert "predicted" in card and "latency ≤ 3 ms" in card
