"""Profiling in two halves: the host plans ONNX models, the device times them and measures the
peak memory of whole networks without PyTorch."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest

from edgenas.arch import Genotype, build_model, export_onnx
from edgenas.cost import conv_key, network_ops
from edgenas.device import PlanError, measure_onnx_memory, profile_plan, read_plan
from edgenas.device import _memory as memory_module
from edgenas.device import _profiler as profiler_module
from edgenas.errors import ConfigError
from edgenas.profile import write_plan
from edgenas.space import edge_space

SPACE = edge_space(resolutions="64", max_depth=1)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "plan.zip"
    counts = write_plan(SPACE, path, architectures=3, references=2, in_channels=1, num_classes=2)
    assert counts["network"] == 2 and counts["conv"] >= 3
    return path


def test_plan_holds_every_convolution_of_its_reference_networks(plan: Path) -> None:
    header, entries, _ = read_plan(plan)
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))  # deduplicated
    with zipfile.ZipFile(plan) as z:
        for entry in entries:
            ort.InferenceSession(z.read(entry.file), providers=["CPUExecutionProvider"])
    networks = [m for m in header["models"] if m["kind"] == "network"]
    for m in networks:
        convs = network_ops(Genotype.parse(m["genotype"]), 1, 2).convs
        assert {conv_key(op) for op in convs} <= set(keys)


def test_plan_is_small(plan: Path) -> None:
    assert plan.stat().st_size < 2_000_000  # zero weights compress; a device gets a small file


def _without_torch(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import torch` fails, in every process started from it too (the
    memory measurements run in processes of their own)."""
    stub = tmp_path / "no-torch" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no PyTorch on this device')\n")
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(stub.parent) + (os.pathsep + path if path else "")}


def test_device_half_runs_without_pytorch(plan: Path, tmp_path: Path) -> None:
    out = tmp_path / "device.json"
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` now fails here
        "from edgenas.device import main\n"
        f"sys.exit(main([{str(plan)!r}, '--out', {str(out)!r}, '--threads', '1', "
        "'--max-seconds', '0.05', '--name', 'test-board']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=_without_torch(tmp_path))  # fmt: skip
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
    # the peak memory of every whole network, and of nothing else
    for key, m in profile["measurements"].items():
        if m["kind"] == "network":
            assert m["peak_memory_mb"] > 0, key
        else:
            assert "peak_memory_mb" not in m, key
    assert profile["memory"]["unit"] == "MB"
    assert "peak memory of 2 network(s)" in proc.stderr
    # each line of progress says how long the rest takes, while there is a rest
    for line in (ln for ln in proc.stderr.splitlines() if ln.startswith("[")):
        done, total = line[1:].split("]")[0].removeprefix("memory ").split("/")
        assert ("s left" in line) == (int(done) < int(total)), line


def test_interrupted_profile_resumes_where_it_stopped(
    plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "partial.json"

    def stop_after_three(done: int, total: int, entry: object, ms: float) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_plan(plan, out, max_seconds=0.02, progress=stop_after_three, memory=False)
    partial = json.loads(out.read_text())
    assert not partial["complete"] and len(partial["measurements"]) == 3

    timed = []
    real = profiler_module.measure_onnx_latency

    def counting(*args: object, **kwargs: object) -> object:
        timed.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(profiler_module, "measure_onnx_latency", counting)
    profile = profile_plan(plan, out, max_seconds=0.02, memory=False)
    _, entries, _ = read_plan(plan)
    assert profile["complete"] and len(profile["measurements"]) == len(entries)
    # the three timed before were kept; every 20th operator is timed a second time at the end
    repeats = len([e for e in entries if e.kind != "network"][:: profiler_module.REPEAT_EVERY])
    # and one model is timed again every ANCHOR_EVERY timings, to follow the machine's speed
    anchors = len(profile["anchors"]) - len(partial["anchors"])
    assert anchors == -(-(len(entries) - 3 + repeats) // profiler_module.ANCHOR_EVERY)
    assert len(timed) == len(entries) - 3 + repeats + anchors
    for key, m in partial["measurements"].items():
        assert profile["measurements"][key]["median_ms"] == m["median_ms"]
    repeated = [m for m in profile["measurements"].values() if "repeat_ms" in m]
    assert len(repeated) == repeats and all(m["repeat_ms"] > 0 for m in repeated)


def test_resume_with_other_threads_is_refused(plan: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text(
        json.dumps(
            {"format": "edgenas-profile", "plan": {"sha256": read_plan(plan)[2]}, "threads": 4}
        )
    )
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
    assert "peak memory of 1 network(s)" in proc.stdout


def test_check_reports_the_figures_the_issue_names(plan: Path, tmp_path: Path) -> None:
    from edgenas.profile import check_profile, load_profile

    out = tmp_path / "p.json"
    profile_plan(plan, out, max_seconds=0.02, memory=False)
    figures = check_profile(load_profile(out), SPACE, n=3, seed=5)
    assert figures["n"] == 3 and 0.0 <= figures["coverage"] <= 1.0
    for name in ("predictor", "flops", "block_sum"):
        f = figures[name]
        assert set(f) == {"within_5", "within_10", "mape", "spearman", "log_ratio_sd"}
        assert 0.0 <= f["within_5"] <= f["within_10"] <= 1.0 and f["mape"] >= 0.0
    # the profile's own two reference networks, timed again: the ceiling of this machine
    repeat = figures["repeat"]
    assert set(repeat) == {"n", "within_5", "within_10", "mape", "spearman", "log_ratio_sd"}
    assert repeat["n"] == 2 and 0.0 <= repeat["within_10"] <= 1.0
    with pytest.raises(ConfigError, match="at least 1 architecture"):
        check_profile(load_profile(out), SPACE, n=0)


class _ProposesReferences:
    """A space whose every other sample is one of the profile's reference networks."""

    def __init__(self, space: Any, reference: Genotype) -> None:
        self.space, self.reference, self.calls = space, reference, 0

    def sample(self, rng: Any) -> Genotype:
        self.calls += 1
        return self.reference if self.calls % 2 else self.space.sample(rng)


def test_check_never_scores_a_reference_network(plan: Path, tmp_path: Path) -> None:
    from edgenas.cost import LatencyPredictor
    from edgenas.profile import check_profile, load_profile

    out = tmp_path / "p.json"
    profile_plan(plan, out, max_seconds=0.02, memory=False)
    profile = load_profile(out)
    reference = next(iter(LatencyPredictor(profile, 1, 2).references))
    space = _ProposesReferences(SPACE, reference)
    figures = check_profile(profile, space, n=3, seed=5, repeats=0)  # type: ignore[arg-type]
    # Three architectures measured; the reference, drawn three times or more, was passed over.
    assert figures["n"] == 3 and space.calls >= 6


def test_profile_check_cli_shows_the_ceiling_of_this_machine(plan: Path, tmp_path: Path) -> None:
    """`edgenas profile check` prints the predictor against two references, and the profile's
    own reference networks timed again: how far this machine's timings move by themselves."""
    out = tmp_path / "p.json"
    profile_plan(plan, out, max_seconds=0.02, memory=False)
    base = [sys.executable, "-m", "edgenas", "profile", "check", str(out), "--n", "2"]
    wide = {**os.environ, "COLUMNS": "200"}  # one table row per line
    proc = subprocess.run(base, capture_output=True, text=True, timeout=300, env=wide)
    assert proc.returncode == 0, proc.stderr
    for row in ("predictor", "FLOPs-proportional", "sum of operators",
                "the profile's own timing of 2 reference networks", "ceiling"):  # fmt: skip
        assert row in proc.stdout
    proc = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["n"] == 2 and figures["repeat"]["n"] == 2
    assert {"predictor", "flops", "block_sum"} <= set(figures)


# ---------------------------------------------------------------------------------------------
# peak memory


class Counting:
    """Wraps a measuring function and counts its calls."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.real(*args, **kwargs)


def test_interrupted_memory_measurement_resumes(
    plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "p.json"

    def stop_after_one(done: int, total: int, entry: object, mb: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_plan(plan, out, max_seconds=0.02, memory_progress=stop_after_one)
    partial = json.loads(out.read_text())
    measured = {k: m["peak_memory_mb"] for k, m in partial["measurements"].items()
                if "peak_memory_mb" in m}  # fmt: skip
    assert not partial["complete"] and len(measured) == 1

    timing = Counting(profiler_module.measure_onnx_latency)
    memory = Counting(profiler_module.measure_onnx_memory)
    monkeypatch.setattr(profiler_module, "measure_onnx_latency", timing)
    monkeypatch.setattr(profiler_module, "measure_onnx_memory", memory)
    profile = profile_plan(plan, out, max_seconds=0.02)
    assert profile["complete"]
    assert timing.calls == 0 and memory.calls == 1  # only the network not measured before
    for key, peak in measured.items():
        assert profile["measurements"][key]["peak_memory_mb"] == peak


def test_memory_skipped_then_added_later_without_timing_again(
    plan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "p.json"
    profile = profile_plan(plan, out, max_seconds=0.02, memory=False)
    assert profile["complete"] and "memory" not in profile
    assert not any("peak_memory_mb" in m for m in profile["measurements"].values())

    timing = Counting(profiler_module.measure_onnx_latency)
    monkeypatch.setattr(profiler_module, "measure_onnx_latency", timing)
    profile = profile_plan(plan, out, max_seconds=0.02)
    networks = [m for m in profile["measurements"].values() if m["kind"] == "network"]
    assert timing.calls == 0 and len(networks) == 2
    assert all(m["peak_memory_mb"] > 0 for m in networks)


def test_energy_coefficients_written_into_a_profile_survive_a_resume(
    plan: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.json"
    profile_plan(plan, out, max_seconds=0.02, memory=False)
    data = json.loads(out.read_text())
    data["energy"] = {"pj_per_mac": 90, "pj_per_byte": 30}
    out.write_text(json.dumps(data))
    profile = profile_plan(plan, out, max_seconds=0.02, memory=False)
    assert profile["energy"] == {"pj_per_mac": 90, "pj_per_byte": 30}


def test_measured_peak_memory_grows_with_the_weights() -> None:
    small = export_onnx(build_model(Genotype.parse("r64-stem8-ds_k3_c16-head0"), 3, 10))
    big_genotype = Genotype.parse("r64-stem32-conv_k3_c512_s2-conv_k3_c512_s2-head1280")
    big_model = build_model(big_genotype, 3, 10)
    weights_mb = sum(p.numel() for p in big_model.parameters()) * 4 / 1e6
    big = export_onnx(big_model)
    baselines: dict[Any, float] = {}
    a = measure_onnx_memory(small, baseline_mb=baselines)
    b = measure_onnx_memory(big, baseline_mb=baselines)
    assert len(baselines) == 1  # same input: the process without a model is measured once
    assert a.inputs == b.inputs == (((1, 3, 64, 64), "float32"),)
    assert 0 < a.peak_mb < 100
    # the runtime holds the big model's weights at least once more than the small one's
    assert b.peak_mb - a.peak_mb > weights_mb > 10
    assert a.process_peak_mb - a.baseline_peak_mb == pytest.approx(a.peak_mb)


def test_a_model_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(memory_module.MemoryMeasurementError, match="exited with status"):
        measure_onnx_memory(b"not an onnx model")


@pytest.mark.parametrize(("platform", "expected"), [("linux", 2048 * 1024), ("darwin", 2048)])
def test_peak_rss_units_where_proc_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, platform: str, expected: int
) -> None:
    class Usage:
        ru_maxrss = 2048

    monkeypatch.setattr(memory_module, "_PROC_STATUS", tmp_path / "missing")
    monkeypatch.setattr(resource, "getrusage", lambda who: Usage())
    monkeypatch.setattr(sys, "platform", platform)
    assert memory_module._peak_rss_bytes() == expected
