"""``edgenas finalize``: retrain, check on the holdout, export (a tiny search on synthetic data)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from _cli import QUICK, run_cli

from edgenas.finalize import accuracy_difference_interval, holdout_gap, wilson_interval


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


def test_difference_interval_matches_newcombes_worked_example() -> None:
    # Newcombe (1998), method 10: 56/70 against 48/80 gives 0.0524 to 0.3339.
    low, high = accuracy_difference_interval(56 / 70, 70, 48 / 80, 80)
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)


def test_holdout_gap_warns_only_when_chance_cannot_explain_it() -> None:
    # 90% against 83% on 200 images each: the difference's interval leaves out zero
    gap = holdout_gap(0.90, 200, 0.83, 200)
    assert gap is not None and "validation (90.0%) and holdout (83.0%)" in gap
    # the same accuracies on 40 images each are within chance; so is a small gap on many
    assert holdout_gap(0.90, 40, 0.83, 40) is None
    assert holdout_gap(0.90, 2000, 0.89, 2000) is None
    # a holdout better than validation by as much is flagged too (two-sided)
    assert holdout_gap(0.83, 200, 0.90, 200) is not None
    # nothing to compare: no warning
    assert holdout_gap(None, 200, 0.8, 200) is None and holdout_gap(0.9, 0, 0.8, 200) is None


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
    # the interval is the Wilson interval of the holdout count it reports
    images = best["holdout_images"]
    expected = wilson_interval(round(best["holdout_accuracy"] * images), images)
    assert best["holdout_interval"] == pytest.approx(expected)
    assert best["holdout_images"] > 0 and best["val_images"] > 0
    assert best["latency_ms"] > 0
    assert "holdout" in proc.stdout and str(best["trial"]) in proc.stdout
    assert snapshot(searched) == before  # only final/ was written
    # By default the model is quantized to INT8, and both steps are measured and re-checked.
    assert [s["name"] for s in report["steps"]] == ["full training", "int8"]
    fp32, int8 = report["steps"]
    assert report["int8_onnx"] == "model.int8.onnx"
    assert (final / "model.int8.onnx").stat().st_size < (final / "model.onnx").stat().st_size
    assert int8["size_mb"] < fp32["size_mb"]
    assert 0.0 <= int8["onnx_check"]["top1_agreement"] <= 1.0
    assert fp32["onnx_check"]["max_abs_diff"] <= 1e-3
    for step in report["steps"]:
        assert step["latency_ms"] > 0 and step["peak_memory_mb"] > 0
        assert (final / step["onnx"]).is_file()
        images = best["holdout_images"]
        expected = wilson_interval(round(step["holdout_accuracy"] * images), images)
        assert step["holdout_interval"] == pytest.approx(expected)
    card = (final / "MODEL_CARD.md").read_text()
    for heading in ("## Data", "## Accuracy and costs after each step", "## Constraints",
                    "## Compression steps", "## Running it on the device"):  # fmt: skip
        assert heading in card
    assert best["genotype"] in card and "model.int8.onnx" in card
    assert "after each step" in proc.stdout


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
    from edgenas.study import Objective

    with pytest.raises(ConfigError, match="no completed trial"):
        _choose([], None, Objective(), "best", 1)


@pytest.mark.slow
def test_distill_prune_quantize_recheck_each_step(searched: Path) -> None:
    before = snapshot(searched)
    proc = run_cli(
        "finalize", str(searched), "--epochs", "1", "--distill", "--prune", "structured",
        "--target-size", "60%", "--finetune-epochs", "1", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    names = [s["name"] for s in report["steps"]]
    assert names == ["full training", "distillation", "structured pruning", "int8"]
    # progress: each epoch of each training, with the training time left
    assert "epoch 1/1, validation" in proc.stderr
    assert "of training left (2 epoch(s))" in proc.stderr  # retraining done; 2 more planned
    assert "fine-tuning: epoch 1/1" in proc.stderr
    steps = {s["name"]: s for s in report["steps"]}
    distilled = steps["distillation"]
    assert distilled["detail"]["teacher"]["source"].startswith("trial ")
    assert "val_accuracy" in distilled["detail"]["without"]
    pruned = steps["structured pruning"]
    start = steps["distillation"] if distilled["kept"] else steps["full training"]
    target = pruned["detail"]["target"]
    assert target["cost"] == "size" and target["value"] == pytest.approx(0.6 * start["size_mb"])
    assert pruned["size_mb"] <= target["value"] * 1.001
    assert pruned["params"] < start["params"] and pruned["macs"] < start["macs"]
    assert pruned["onnx_check"]["max_abs_diff"] <= 1e-3
    assert pruned["detail"]["sensitivity"]  # per-layer sensitivity was measured
    assert steps["int8"]["params"] == pruned["params"]
    # The run searched without constraints: the check says there is nothing to hold.
    assert all(s["constraints"] == {} for s in report["steps"])
    final = searched / "final"
    # model.onnx is the pruned fp32 model, and model.pt loads it back.
    from edgenas.arch import Genotype
    from edgenas.compress import load_pruned

    model = load_pruned(Genotype.parse(report["candidates"][0]["genotype"]), 1, 4,
                        final / "model.pt")  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == pruned["params"]
    assert (final / "model.onnx").read_bytes() == (final / pruned["onnx"]).read_bytes()
    assert snapshot(searched) == before


@pytest.mark.slow
def test_movement_pruning_step(searched: Path) -> None:
    proc = run_cli(
        "finalize", str(searched), "--epochs", "1", "--prune", "movement", "--sparsity", "0.7",
        "--quantize", "none", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [s["name"] for s in report["steps"]] == ["full training", "movement pruning"]
    dense, sparse = report["steps"]
    assert sparse["compressed_size_mb"] < dense["compressed_size_mb"]
    assert sparse["params"] == dense["params"]  # zeros, not removed channels
    assert report["int8_onnx"] is None
    assert not (searched / "final" / "model.int8.onnx").exists()


@pytest.mark.slow
def test_unreachable_target_keeps_earlier_steps(searched: Path) -> None:
    before = snapshot(searched)
    proc = run_cli(
        "finalize", str(searched), "--epochs", "1", "--prune", "structured",
        "--target-size", "1KB",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout
    assert "Traceback" not in proc.stderr
    assert "final.json" in proc.stderr
    report = json.loads((searched / "final" / "final.json").read_text())
    assert [s["name"] for s in report["steps"]] == ["full training"]
    assert snapshot(searched) == before
    # A teacher that cannot teach is named before anything is trained or overwritten.
    proc = run_cli("finalize", str(searched), "--distill", "--teacher", str(searched / "nowhere"))
    assert proc.returncode == 2 and "genotype.txt and model.pt" in proc.stderr
    assert "training" not in proc.stderr
    assert json.loads((searched / "final" / "final.json").read_text()) == report


def test_bad_compression_options_are_named() -> None:
    from edgenas.errors import ConfigError
    from edgenas.finalize import CompressOptions

    with pytest.raises(ConfigError, match="--target-latency"):
        CompressOptions(prune="structured")
    with pytest.raises(ConfigError, match="--prune structured"):
        CompressOptions(target_latency="3ms")
    with pytest.raises(ConfigError, match="--prune 'channels'"):
        CompressOptions(prune="channels")
    with pytest.raises(ConfigError, match="--target-latency '150%'"):
        CompressOptions(prune="structured", target_latency="150%")
    with pytest.raises(ConfigError, match="--target-size"):
        CompressOptions(prune="structured", target_size="lots")
    with pytest.raises(ConfigError, match="--sparsity"):
        CompressOptions(prune="magnitude", sparsity=1.0)
    with pytest.raises(ConfigError, match="--quantize"):
        CompressOptions(quantize="int4")
    with pytest.raises(ConfigError, match="add --distill"):
        CompressOptions(teacher="3")


def test_parse_target_and_constraint_check() -> None:
    from edgenas.cost import Constraints, Costs
    from edgenas.finalize._steps import check_constraints, parse_target

    assert parse_target("70%", 10.0, "target_latency") == pytest.approx(7.0)
    assert parse_target("3ms", 10.0, "target_latency") == pytest.approx(3.0)
    assert parse_target("512KB", 10.0, "target_size") == pytest.approx(0.512)
    limits = Constraints(max_latency_ms=5.0, max_memory_mb=20.0)
    costs = Costs(latency_ms=4.0, peak_memory_mb=float("nan"), size_mb=1, params=1, macs=1)
    slower = Costs(latency_ms=6.0, peak_memory_mb=10.0, size_mb=1, params=1, macs=1)
    out = check_constraints(limits, costs, slower)
    assert out["max_latency_ms"]["measured_holds"] is True
    assert out["max_latency_ms"]["predicted_holds"] is False
    assert out["max_memory_mb"]["measured_holds"] is None  # not measured: not claimed to hold
    assert out["max_memory_mb"]["predicted"] == pytest.approx(10.0)
