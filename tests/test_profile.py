"""Profiling in two halves: the host plans ONNX pieces, the device times them without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import onnxruntime as ort
import pytest

from edgenas.arch import Genotype
from edgenas.device import PlanError, profile_plan, read_plan
from edgenas.device import _profiler as profiler_module
from edgenas.profile import genotype_pieces, write_plan
from edgenas.space import edge_space

SPACE = edge_space(resolutions="64", max_depth=1)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.zip"
    counts = write_plan(SPACE, path, architectures=3, references=2, in_channels=1, num_classes=2)
    assert counts["network"] == 2 and counts["stem"] >= 1 and counts["head"] >= 1
    return path


def test_plan_holds_every_piece_of_its_reference_networks(plan: Path) -> None:
    header, entries, _ = read_plan(plan)
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))  # deduplicated
    with zipfile.ZipFile(plan) as z:
        for entry in entries:
            ort.InferenceSession(z.read(entry.file), providers=["CPUExecutionProvider"])
    networks = [m for m in header["models"] if m["kind"] == "network"]
    for m in networks:
        pieces = genotype_pieces(Genotype.parse(m["genotype"]), 1, 2)
        assert {p.key for p in pieces} <= set(keys)


def test_plan_is_small(plan: Path) -> None:
    assert plan.stat().st_size < 2_000_000  # zero weights compress; a device gets a small file


def test_device_half_runs_without_pytorch(plan: Path, tmp_path: Path) -> None:
    out = tmp_path / "device.json"
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now fails
        "from edgenas.device import main\n"
        f"sys.exit(main([{str(plan)!r}, '--out', {str(out)!r}, '--threads', '1', "
        "'--max-seconds', '0.05', '--name', 'test-board']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    profile = json.loads(out.read_text())
    _, entries, digest = read_plan(plan)
    assert profile["format"] == "edgenas-profile" and profile["complete"]
    assert profile["plan"]["sha256"] == digest
    assert profile["device"]["name"] == "test-board" and profile["device"]["cores"] >= 1
    assert profile["runtime"]["name"] == "onnxruntime" and profile["runtime"]["version"]
    assert (profile["threads"], profile["batch"], profile["dtype"]) == (1, 1, "float32")
    assert set(profile["measurements"]) == {e.key for e in entries}
    assert all(m["median_ms"] > 0 for m in profile["measurements"].values())


def test_interrupted_profile_resumes_where_it_stopped(
    plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "partial.json"

    def stop_after_three(done: int, total: int, entry: object, ms: float) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_plan(plan, out, max_seconds=0.02, progress=stop_after_three)
    partial = json.loads(out.read_text())
    assert not partial["complete"] and len(partial["measurements"]) == 3

    timed = []
    real = profiler_module.measure_onnx_latency

    def counting(*args: object, **kwargs: object) -> object:
        timed.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(profiler_module, "measure_onnx_latency", counting)
    profile = profile_plan(plan, out, max_seconds=0.02)
    _, entries, _ = read_plan(plan)
    assert profile["complete"] and len(profile["measurements"]) == len(entries)
    assert len(timed) == len(entries) - 3  # the three timed before were kept
    for key, m in partial["measurements"].items():
        assert profile["measurements"][key] == m


def test_resume_with_other_threads_is_refused(plan: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text(json.dumps({"plan": {"sha256": read_plan(plan)[2]}, "threads": 4}))
    with pytest.raises(PlanError, match="thread count"):
        profile_plan(plan, out, threads=1)


def test_not_a_plan(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    proc = subprocess.run(
        [sys.executable, "-m", "edgenas.device", str(bad), "--out", str(tmp_path / "o.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "not an edgenas plan" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_local_cli(tmp_path: Path) -> None:
    out = tmp_path / "local.json"
    args = ["profile", "local", "--out", str(out), "--architectures", "2", "--references", "1",
            "--channels", "1", "--classes", "2", "--space", "edge"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "edgenas", *args], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "local.plan.zip").exists()
    profile = json.loads(out.read_text())
    assert profile["complete"] and "models timed" in proc.stdout


def test_check_reports_the_figures_the_issue_names(plan: Path, tmp_path: Path) -> None:
    from edgenas.profile import check_profile, load_profile

    out = tmp_path / "p.json"
    profile_plan(plan, out, max_seconds=0.02)
    figures = check_profile(load_profile(out), SPACE, n=3, seed=5)
    assert figures["n"] == 3 and 0.0 <= figures["coverage"] <= 1.0
    for name in ("predictor", "flops", "block_sum"):
        f = figures[name]
        assert set(f) == {"within_5", "within_10", "mape", "spearman"}
        assert 0.0 <= f["within_5"] <= f["within_10"] <= 1.0 and f["mape"] >= 0.0
