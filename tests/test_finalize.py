"""``edgenas finalize``: retrain, check on the holdout, export (a tiny search on synthetic data)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _cli import QUICK, run_cli

from edgenas.finalize import wilson_interval


def snapshot(run: Path) -> dict[str, str]:
    """Hash of every file of the run outside final/."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and "final" not in p.relative_to(run).parts
    }


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "syn"
    proc = run_cli("search", "synthetic", "--trials", "2", "--out", str(out), *QUICK)
    assert proc.returncode == 0, proc.stderr
    return out


def test_wilson_interval_by_hand() -> None:
    # p = 0.8, n = 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.716737,
    # half 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 0.226581.
    low, high = wilson_interval(8, 10, z=1.96)
    assert low == pytest.approx(0.490156, abs=1e-5)
    assert high == pytest.approx(0.943318, abs=1e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


@pytest.mark.slow
def test_finalize_best_exports_checked_onnx(searched: Path) -> None:
    before = snapshot(searched)
    proc = run_cli("finalize", str(searched), "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    final = searched / "final"
    assert (final / "model.onnx").stat().st_size > 0
    report = json.loads((final / "final.json").read_text())
    best = report["candidates"][0]
    assert (final / "genotype.txt").read_text().strip() == best["genotype"]
    assert best["onnx_max_abs_diff"] <= 1e-3
    assert best["epochs"] == 1
    low, high = best["holdout_interval"]
    assert low <= best["holdout_accuracy"] <= high
    assert best["holdout_images"] > 0 and best["val_images"] > 0
    assert best["latency_ms"] > 0
    assert "holdout" in proc.stdout and str(best["trial"]) in proc.stdout
    assert snapshot(searched) == before  # only final/ was written


@pytest.mark.slow
def test_missing_trial_is_a_clear_error(searched: Path) -> None:
    before = snapshot(searched)
    proc = run_cli("finalize", str(searched), "--pick", "999")
    assert proc.returncode == 2
    assert "trial 999 does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(searched) == before
    proc = run_cli("finalize", str(searched), "--top", "0")
    assert proc.returncode == 2 and "--top" in proc.stderr


def test_run_without_study_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("finalize", str(tmp_path))
    assert proc.returncode == 2
    assert "no study.db" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_run_without_completed_trial_is_a_clear_error() -> None:
    from edgenas.errors import ConfigError
    from edgenas.finalize._finalize import _choose
    from edgenas.search import Objective

    with pytest.raises(ConfigError, match="no completed trial"):
        _choose([], None, Objective(), "best", 1)
