"""edgenas.cost: analytic costs against the built models, constraints, units, the latency cache
and measurement, the memory calibration and the energy estimate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from edgenas.arch import BASELINES, Genotype, build_model, export_onnx
from edgenas.cost import (
    COST_FIELDS,
    Constraints,
    CostModel,
    Costs,
    EnergyModel,
    LatencyMeasurement,
    MemoryCalibration,
    analytic_costs,
    block_ops,
    measure_onnx_latency,
    parse_count,
    parse_duration,
    parse_energy,
    parse_latency,
    parse_size,
)
from edgenas.cost import _model as cost_model_module
from edgenas.errors import ConfigError
from edgenas.space import edge_space

SMALL = Genotype.parse("r32-stem8-ir_k3_e2_c16_s2-ds_k5x3_c16_se_id-head32")


def _torch_params(g: Genotype, in_channels: int = 3, num_classes: int = 10) -> int:
    return sum(p.numel() for p in build_model(g, in_channels, num_classes).parameters())


def _largest_activation(g: Genotype) -> int:
    """Elements of the largest tensor any module of the built network produces, at batch 1."""
    model = build_model(g).eval()
    sizes = [3 * g.resolution**2]
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
        for m in model.modules()
    ]
    with torch.no_grad():
        model(torch.rand(1, 3, g.resolution, g.resolution))
    for h in hooks:
        h.remove()
    return max(sizes)


# ---------------------------------------------------------------------------------------------
# analytic costs


def test_params_match_pytorch_for_random_edge_genotypes() -> None:
    space = edge_space()
    rng = np.random.default_rng(0)
    for i in range(50):
        g = space.sample(rng)
        in_channels, num_classes = (1, 2) if i % 5 == 0 else (3, 10)
        a = analytic_costs(g, in_channels, num_classes)
        assert a.params == _torch_params(g, in_channels, num_classes), str(g)


@pytest.mark.parametrize("width", [1.0, 0.25])
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_params_match_pytorch_for_baselines(name: str, width: float) -> None:
    g = BASELINES[name](width, 96)
    assert analytic_costs(g, 3, 10).params == _torch_params(g)


def test_params_match_pytorch_with_long_skips() -> None:
    g = Genotype.parse(
        "r32-stem8-conv_k3_c16-ds_k3_c16_id-ir_k3_e2_c24_l3-bneck_k5x3_c24_se_l2-res_k3_c24_l2-head64"
    )
    assert analytic_costs(g, 3, 10).params == _torch_params(g)


def test_costs_of_a_single_convolution_by_hand() -> None:
    g = Genotype.parse("r32-stem8-conv_k3_c16-head0")
    a = analytic_costs(g, 3, 10)
    # stem: 3→8, 3×3, stride 2 to 16×16; conv: 8→16, 3×3 at 16×16; classifier 16→10
    stem_macs = 8 * 16 * 16 * 3 * 9
    conv_macs = 16 * 16 * 16 * 8 * 9
    assert a.macs == stem_macs + conv_macs + 16 * 10 == 350_368
    # weights, batch-norm scale and shift (no conv bias), classifier weight and bias
    assert a.params == (8 * 3 * 9 + 2 * 8) + (16 * 8 * 9 + 2 * 16) + (16 * 10 + 10) == 1586
    assert a.size_mb == pytest.approx(a.params * 4 / 1e6)
    assert a.size_int8_mb == pytest.approx(a.params / 1e6)
    assert a.peak_memory_mb == pytest.approx(a.size_mb + a.peak_activation_mb)


def test_macs_scale_with_resolution_and_kernel() -> None:
    small = analytic_costs(Genotype.parse("r32-stem8-conv_k3_c16-head0"), 3, 10)
    big = analytic_costs(Genotype.parse("r64-stem8-conv_k3_c16-head0"), 3, 10)
    assert big.macs - 160 == 4 * (small.macs - 160)  # classifier MACs do not grow
    assert big.params == small.params
    wide = analytic_costs(Genotype.parse("r32-stem8-conv_k5x3_c16-head0"), 3, 10)
    assert wide.macs - small.macs == 16 * 16 * 16 * 8 * (15 - 9)


@pytest.mark.parametrize(
    "g",
    [
        SMALL,
        Genotype.parse("r48-stem16-conv_k3_c16-ir_k3_e8_c16-conv_k3_c16_l2-head256"),
        *(BASELINES[name](0.5, 64) for name in sorted(BASELINES)),
    ],
    ids=str,
)
def test_peak_memory_holds_the_largest_activation(g: Genotype) -> None:
    a = analytic_costs(g, 3, 10)
    assert a.peak_activation_mb >= _largest_activation(g) * 4 / 1e6
    assert a.peak_memory_mb > a.size_mb


def test_size_is_four_bytes_per_parameter() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        a = analytic_costs(edge_space().sample(rng), 3, 10)
        assert a.size_mb == pytest.approx(a.params * 4 / 1e6)


def test_peak_memory_grows_with_a_long_skip() -> None:
    # The output of block 0 is held through the expensive inverted residual (block 1) until
    # block 2 adds it back.
    plain = Genotype.parse("r32-stem16-conv_k3_c16-ir_k3_e8_c16-conv_k3_c16-head0")
    skip = Genotype.parse("r32-stem16-conv_k3_c16-ir_k3_e8_c16-conv_k3_c16_l2-head0")
    a, b = analytic_costs(plain, 3, 10), analytic_costs(skip, 3, 10)
    assert a.params == b.params  # same channels: no projection
    held = 16 * 16 * 16 * 4 / 1e6
    assert b.peak_activation_mb == pytest.approx(a.peak_activation_mb + held)


def test_peak_memory_counts_the_skip_source_during_the_block_that_adds_it() -> None:
    plain = Genotype.parse("r32-stem16-conv_k3_c16-conv_k3_c16-ir_k3_e8_c16-head0")
    skip = Genotype.parse("r32-stem16-conv_k3_c16-conv_k3_c16-ir_k3_e8_c16_l2-head0")
    a, b = analytic_costs(plain, 3, 10), analytic_costs(skip, 3, 10)
    # peak is the depthwise conv of the last block (2 × 128×16×16), with block 0's output held
    held = 16 * 16 * 16 * 4 / 1e6
    assert b.peak_activation_mb == pytest.approx(a.peak_activation_mb + held)


# ---------------------------------------------------------------------------------------------
# constraints

COSTS = Costs(latency_ms=10.0, peak_memory_mb=3.0, size_mb=1.0, params=250_000, macs=20_000_000)


def test_violations_are_relative_and_nonpositive_when_feasible() -> None:
    c = Constraints(max_latency_ms=5.0, max_size_mb=2.0, max_macs=20e6)
    v = c.violations(COSTS)
    assert v == pytest.approx({"max_latency_ms": 1.0, "max_size_mb": -0.5, "max_macs": 0.0})
    assert not c.feasible(COSTS)
    loose = Constraints(max_latency_ms=20.0, max_memory_mb=3.0, max_params=1e6)
    assert loose.violations(COSTS) == pytest.approx(
        {"max_latency_ms": -0.5, "max_memory_mb": 0.0, "max_params": -0.75}
    )
    assert loose.feasible(COSTS)  # a cost exactly at its limit is allowed


def test_no_constraints() -> None:
    c = Constraints()
    assert c.violations(COSTS) == {}
    assert c.feasible(COSTS)
    assert c.describe() == "none"


def test_constraints_describe_and_round_trip() -> None:
    c = Constraints(max_latency_ms=5.0, max_memory_mb=0.5)
    assert c.describe() == "latency_ms ≤ 5 ms, peak_memory_mb ≤ 0.5 MB"
    assert Constraints.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert Constraints.parse("5ms", "500KB") == c
    assert Constraints.parse(max_macs=2e6) == Constraints(max_macs=2e6)
    assert Constraints.from_dict({"max_size_mb": 2, "unknown": 1}) == Constraints(max_size_mb=2)


def test_costs_round_trip() -> None:
    assert Costs.from_dict(json.loads(json.dumps(COSTS.to_dict()))) == COSTS
    assert set(COSTS.to_dict()) == {*COST_FIELDS, "size_int8_mb"}
    assert COSTS.size_int8_mb == pytest.approx(COSTS.params / 1e6)


# ---------------------------------------------------------------------------------------------
# units


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parse_latency, "5ms", 5.0),
        (parse_latency, "5 ms", 5.0),
        (parse_latency, "0.5s", 500.0),
        (parse_latency, "800us", 0.8),
        (parse_latency, "800µs", 0.8),
        (parse_latency, "12", 12.0),
        (parse_latency, 2.5, 2.5),
        (parse_size, "50MB", 50.0),
        (parse_size, "2MiB", 2.097152),
        (parse_size, "512KB", 0.512),
        (parse_size, "1.5GB", 1500.0),
        (parse_size, "3", 3.0),
        (parse_count, "100M", 1e8),
        (parse_count, "1.5G", 1.5e9),
        (parse_count, "300k", 3e5),
        (parse_count, "42", 42.0),
        (parse_energy, "5mJ", 5.0),
        (parse_energy, "5 mJ", 5.0),
        (parse_energy, "800uJ", 0.8),
        (parse_energy, "800µJ", 0.8),
        (parse_energy, "0.01J", 10.0),
        (parse_energy, "2000nJ", 0.002),
        (parse_energy, "3", 3.0),
        (parse_energy, 0.5, 0.5),
        (parse_duration, "30m", 1800.0),
        (parse_duration, "1h30m", 5400.0),
        (parse_duration, "1h 30m", 5400.0),
        (parse_duration, "90s", 90.0),
        (parse_duration, "2h", 7200.0),
        (parse_duration, "1d", 86400.0),
        (parse_duration, "30", 1800.0),  # a bare number is minutes
        (parse_duration, 30, 1800.0),
    ],
)
def test_units(parse: Any, text: str | float, expected: float) -> None:
    assert parse(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["fast", "-5ms", "5 parsecs", "0", "", "5ms5"])
@pytest.mark.parametrize(
    "parse", [parse_latency, parse_size, parse_count, parse_duration, parse_energy]
)
def test_nonsense_units_name_the_bad_input(parse: Any, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "parse", [parse_latency, parse_size, parse_count, parse_duration, parse_energy]
)
@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf])
def test_nonpositive_numbers_are_rejected(parse: Any, value: float) -> None:
    with pytest.raises(ConfigError, match="positive"):
        parse(value)


# ---------------------------------------------------------------------------------------------
# the cost model and its latency cache


class CountingMeasure:
    """Stands in for measure_onnx_latency: counts calls, optionally measures for real."""

    def __init__(self, real: bool = False, latency_ms: float = 1.25) -> None:
        self.real = real
        self.latency_ms = latency_ms
        self.calls: list[dict[str, Any]] = []

    def __call__(self, model: bytes | str, **kwargs: Any) -> LatencyMeasurement:
        self.calls.append(kwargs)
        if self.real:
            return measure_onnx_latency(model, **kwargs)
        return LatencyMeasurement(self.latency_ms, 15, 0.01)


@pytest.fixture
def measure(monkeypatch: pytest.MonkeyPatch) -> CountingMeasure:
    counter = CountingMeasure()
    monkeypatch.setattr(cost_model_module, "measure_onnx_latency", counter)
    return counter


def test_estimate_measures_once_and_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    counter = CountingMeasure(real=True)
    monkeypatch.setattr(cost_model_module, "measure_onnx_latency", counter)
    cache = tmp_path / "latency.json"
    model = CostModel(3, 10, cache_file=cache)
    costs = model.estimate(SMALL)
    assert 0 < costs.latency_ms < 1000
    a = analytic_costs(SMALL, 3, 10)
    assert (costs.params, costs.macs, costs.size_mb) == (a.params, a.macs, a.size_mb)
    assert costs.peak_memory_mb == pytest.approx(MemoryCalibration().peak_memory_mb(a))
    assert model.estimate(SMALL) == costs
    assert len(counter.calls) == 1
    assert counter.calls[0]["threads"] == 1

    data = json.loads(cache.read_text())
    assert data["threads"] == 1
    assert data["runtime"].startswith("onnxruntime ")
    assert data["latency_ms"] == {str(SMALL): costs.latency_ms}

    # a new model (a resumed search) reads the cache instead of measuring
    again = CostModel(3, 10, cache_file=cache)
    assert again.estimate(SMALL).latency_ms == costs.latency_ms
    assert len(counter.calls) == 1
    # fresh=True measures again
    assert again.latency_ms(SMALL, fresh=True) > 0
    assert len(counter.calls) == 2


def test_analytic_has_no_latency(measure: CountingMeasure) -> None:
    costs = CostModel(3, 10).analytic(SMALL)
    assert math.isnan(costs.latency_ms)
    assert costs.params == analytic_costs(SMALL, 3, 10).params
    assert measure.calls == []


def test_limit_lets_measurement_give_up_early(measure: CountingMeasure) -> None:
    model = CostModel(3, 10, threads=2)
    model.estimate(SMALL, limit_ms=5.0)
    model.latency_ms(SMALL, fresh=True)
    assert measure.calls == [
        {"threads": 2, "give_up_above_ms": 15.0},
        {"threads": 2, "give_up_above_ms": None},
    ]


def test_different_genotypes_are_measured_separately(measure: CountingMeasure) -> None:
    model = CostModel(3, 10)
    other = Genotype.parse("r32-stem8-conv_k3_c16-head0")
    model.estimate(SMALL)
    model.estimate(other)
    model.estimate(SMALL)
    assert len(measure.calls) == 2


def test_cache_of_other_threads_is_ignored(measure: CountingMeasure, tmp_path: Path) -> None:
    cache = tmp_path / "latency.json"
    CostModel(3, 10, threads=1, cache_file=cache).estimate(SMALL)
    assert len(measure.calls) == 1
    CostModel(3, 10, threads=2, cache_file=cache).estimate(SMALL)
    assert len(measure.calls) == 2
    assert json.loads(cache.read_text())["threads"] == 2


def test_cache_of_another_runtime_is_ignored(measure: CountingMeasure, tmp_path: Path) -> None:
    cache = tmp_path / "latency.json"
    CostModel(3, 10, cache_file=cache).estimate(SMALL)
    data = json.loads(cache.read_text())
    data["runtime"] = "onnxruntime 0.0.1"
    cache.write_text(json.dumps(data))
    CostModel(3, 10, cache_file=cache).estimate(SMALL)
    assert len(measure.calls) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2]",
        b"null",
        b"\xff\xfe\x00garbage",
        b'{"threads": 1, "runtime": "RUNTIME", "latency_ms": {"r32-stem8-head0": "fast"}}',
        b'{"threads": 1, "runtime": "RUNTIME", "latency_ms": [1, 2]}',
    ],
    ids=["truncated", "list", "null", "binary", "bad-value", "bad-table"],
)
def test_corrupt_cache_is_ignored(measure: CountingMeasure, tmp_path: Path, content: bytes) -> None:
    import onnxruntime

    cache = tmp_path / "latency.json"
    cache.write_bytes(
        content.replace(b"RUNTIME", f"onnxruntime {onnxruntime.__version__}".encode())
    )
    model = CostModel(3, 10, cache_file=cache)
    assert model.estimate(SMALL).latency_ms == measure.latency_ms
    assert len(measure.calls) == 1
    # the damaged file is replaced by a good one
    assert json.loads(cache.read_text())["latency_ms"] == {str(SMALL): measure.latency_ms}


# ---------------------------------------------------------------------------------------------
# measurement


@pytest.fixture(scope="module")
def small_onnx() -> bytes:
    torch.manual_seed(0)
    return export_onnx(build_model(SMALL))


def test_measure_times_at_least_min_runs(small_onnx: bytes) -> None:
    m = measure_onnx_latency(small_onnx, warmup=1, min_runs=4, max_runs=6, min_seconds=0.0)
    assert 4 <= m.runs <= 6
    assert m.median_ms > 0
    assert m.spread_ms >= 0


def test_measure_accepts_a_file(small_onnx: bytes, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(small_onnx)
    m = measure_onnx_latency(str(path), warmup=1, min_runs=2, max_runs=2, min_seconds=0.0)
    assert m.runs == 2


def test_measure_gives_up_after_warmup_above_the_limit(small_onnx: bytes) -> None:
    m = measure_onnx_latency(small_onnx, warmup=5, give_up_above_ms=0.0001, min_runs=1000)
    assert 1 <= m.runs <= 5
    assert m.median_ms > 0.0001


def test_measure_without_warmup_and_a_limit(small_onnx: bytes) -> None:
    m = measure_onnx_latency(small_onnx, warmup=0, give_up_above_ms=1e6, min_runs=2, max_runs=2)
    assert m.runs == 2


# ---------------------------------------------------------------------------------------------
# the liveness walk where a runtime holds more than the block's own input and output


def test_peak_memory_counts_the_normalised_image_before_the_stem() -> None:
    # 3×64×64 image, standardised into a second image-sized tensor; a stem of 8 channels at
    # 32×32 is smaller than the image, so the two images are the first peak.
    g = Genotype.parse("r64-stem8-ds_k3_c8-head0")
    image = 3 * 64 * 64
    assert analytic_costs(g, 3, 10).peak_activation_mb >= 2 * image * 4 / 1e6


def test_peak_memory_holds_the_main_path_while_the_shortcut_is_projected() -> None:
    # A stride-2 basic block: while its 1×1 projection runs, the block's input (16×32×32), the
    # projection's output and the main path's output (32×16×16 each) are alive.
    g = Genotype.parse("r64-stem16-res_k3_c32_s2-head0")
    held = (16 * 32 * 32 + 2 * 32 * 16 * 16) * 4 / 1e6
    assert analytic_costs(g, 3, 10).peak_activation_mb >= held


# ---------------------------------------------------------------------------------------------
# the energy estimate


def test_energy_is_the_formula_for_a_known_genotype() -> None:
    g = Genotype.parse("r32-stem8-conv_k3_c16-head0")
    # activations read and written, in elements: normalisation (reads and writes the 3×32×32
    # image twice), stem (3×32×32 in, 8×16×16 out), conv (8×16×16 in, 16×16×16 out), global
    # pooling (16×16×16 in, 16 out), classifier (16 in, 10 out)
    elements = 4 * 3072 + (3072 + 2048) + (2048 + 4096) + (4096 + 16) + (16 + 10)
    bytes_moved = 4 * 1586 + 4 * elements  # fp32 weights read once, activations
    a = analytic_costs(g, 3, 10)
    assert a.bytes_moved == bytes_moved == 117_104
    model = EnergyModel(pj_per_mac=2.0, pj_per_byte=3.0)
    costs = CostModel(3, 10, energy=model).analytic(g)
    assert costs.energy_mj == pytest.approx((2.0 * 350_368 + 3.0 * bytes_moved) * 1e-9)
    default = CostModel(3, 10).analytic(g).energy_mj
    assert default == pytest.approx((150.0 * 350_368 + 50.0 * bytes_moved) * 1e-9)


def test_energy_grows_with_macs_and_bytes() -> None:
    model = EnergyModel()
    assert model.energy_mj(2e6, 1e5) > model.energy_mj(1e6, 1e5)
    assert model.energy_mj(1e6, 2e5) > model.energy_mj(1e6, 1e5)
    # every genotype that does more arithmetic and moves more bytes than another costs more
    rng = np.random.default_rng(3)
    genotypes = [edge_space().sample(rng) for _ in range(20)]
    found = 0
    for g in genotypes:
        for h in genotypes:
            a, b = analytic_costs(g, 3, 10), analytic_costs(h, 3, 10)
            if a.macs > b.macs and a.bytes_moved > b.bytes_moved:
                found += 1
                assert model.energy_mj(a.macs, a.bytes_moved) > model.energy_mj(
                    b.macs, b.bytes_moved
                )
    assert found > 50
    # more channels, more of both
    narrow = analytic_costs(Genotype.parse("r64-stem16-ir_k3_e4_c24_s2-head0"), 3, 10)
    wide = analytic_costs(Genotype.parse("r64-stem16-ir_k3_e4_c48_s2-head0"), 3, 10)
    assert wide.macs > narrow.macs and wide.bytes_moved > narrow.bytes_moved


def test_profile_energy_coefficients_override_the_defaults() -> None:
    profile = {"energy": {"pj_per_mac": 40, "pj_per_byte": 10}, "measurements": {}}
    model = CostModel(3, 10, profile=profile)
    assert model.energy == EnergyModel(40.0, 10.0)
    a = analytic_costs(SMALL, 3, 10)
    assert model.analytic(SMALL).energy_mj == pytest.approx(
        (40 * a.macs + 10 * a.bytes_moved) * 1e-9
    )
    assert model.analytic(SMALL).energy_mj < CostModel(3, 10).analytic(SMALL).energy_mj
    # without the object, the defaults; an explicit model wins over the profile
    assert CostModel(3, 10, profile={"measurements": {}}).energy == EnergyModel()
    explicit = EnergyModel(1.0, 1.0)
    assert CostModel(3, 10, profile=profile, energy=explicit).energy == explicit


@pytest.mark.parametrize(
    ("energy", "message"),
    [
        ({"pj_per_mac": -1, "pj_per_byte": 50}, "pj_per_mac must be a number"),
        ({"pj_per_mac": 150, "pj_per_byte": "lots"}, "pj_per_byte must be a number"),
        ({"pj_per_mac": 150}, "lacks pj_per_byte"),
        ({"pj_per_mac": 150, "pj_per_byte": 50, "pj_per_flop": 1}, "unknown keys pj_per_flop"),
        ([150, 50], "must be an object"),
    ],
)
def test_bad_profile_energy_coefficients_say_what_is_wrong(energy: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CostModel(3, 10, profile={"energy": energy, "measurements": {}})
    assert message in str(info.value)
    assert "energy" in str(info.value)


def test_energy_coefficients_from_the_command_line() -> None:
    assert EnergyModel.parse("pj_per_mac=120,pj_per_byte=40") == EnergyModel(120.0, 40.0)
    assert EnergyModel.parse(None) == EnergyModel()
    assert EnergyModel.parse({"pj_per_mac": 1, "pj_per_byte": 2}) == EnergyModel(1.0, 2.0)
    with pytest.raises(ConfigError, match="--energy-coefficients 'pj_per_mac=fast'"):
        EnergyModel.parse("pj_per_mac=fast")
    with pytest.raises(ConfigError, match="lacks pj_per_byte"):
        EnergyModel.parse("pj_per_mac=120")


def test_energy_limit_and_old_costs_without_energy() -> None:
    c = Constraints.parse(max_energy="800uJ")
    assert c == Constraints(max_energy_mj=0.8)
    assert c.describe() == "energy_mj ≤ 0.8 mJ (estimated)"
    costs = Costs(1.0, 3.0, 1.0, 1000, 10**6, energy_mj=1.2)
    assert c.violations(costs) == pytest.approx({"max_energy_mj": 0.5})
    assert Costs.from_dict(json.loads(json.dumps(costs.to_dict()))) == costs
    # costs recorded before the energy estimate existed still read back, without energy
    old = {"latency_ms": 1.0, "peak_memory_mb": 3.0, "size_mb": 1.0, "params": 1000,
           "macs": 10**6, "size_int8_mb": 0.001}  # fmt: skip
    restored = Costs.from_dict(old)
    assert math.isnan(restored.energy_mj)
    assert restored.to_dict()["energy_mj"] is None  # JSON has no NaN


# ---------------------------------------------------------------------------------------------
# the memory calibration


def _network_profile(peaks: dict[Genotype, float], name: str = "board") -> dict[str, Any]:
    return {
        "device": {"name": name},
        "measurements": {
            f"{g}|in3_n10": {"kind": "network", "median_ms": 1.0, "peak_memory_mb": peak}
            for g, peak in peaks.items()
        },
    }


def test_calibration_is_fitted_from_a_profiles_networks() -> None:
    rng = np.random.default_rng(11)
    genotypes = [edge_space().sample(rng) for _ in range(8)]
    truth = MemoryCalibration(3.0, 1.5, 12.0)
    peaks = {g: truth.peak_memory_mb(analytic_costs(g, 3, 10)) for g in genotypes}
    profile = _network_profile(peaks)
    fitted = MemoryCalibration.from_profile(profile)
    assert fitted.weights_factor == pytest.approx(3.0, rel=1e-6)
    assert fitted.activations_factor == pytest.approx(1.5, rel=1e-6)
    assert fitted.overhead_mb == pytest.approx(12.0, rel=1e-6)
    assert "board" in fitted.source and "8 networks" in fitted.source
    # the cost model uses it for peak memory
    g = genotypes[0]
    assert CostModel(3, 10, profile=profile).analytic(g).peak_memory_mb == pytest.approx(peaks[g])
    assert CostModel(3, 10).analytic(g).peak_memory_mb != pytest.approx(peaks[g])


def test_a_profile_with_few_measured_networks_keeps_the_default_calibration() -> None:
    rng = np.random.default_rng(12)
    peaks = {edge_space().sample(rng): 50.0 for _ in range(4)}
    assert MemoryCalibration.from_profile(_network_profile(peaks)) == MemoryCalibration()
    older = {"measurements": {f"{g}|in3_n10": {"kind": "network", "median_ms": 1.0}
                              for g in peaks}}  # fmt: skip
    assert MemoryCalibration.from_profile(older) == MemoryCalibration()


def test_calibration_never_shrinks_as_a_network_grows() -> None:
    # Peaks that fall with the weights would fit a negative weights factor; it is dropped.
    rng = np.random.default_rng(13)
    samples = []
    for _ in range(10):
        a = analytic_costs(edge_space().sample(rng), 3, 10)
        samples.append((a, max(1.0, 100.0 - a.size_mb)))
    fitted = MemoryCalibration.fit(samples)
    assert min(fitted.weights_factor, fitted.activations_factor, fitted.overhead_mb) >= 0.0


def test_block_ops_mark_the_convolutions_the_activation_follows() -> None:
    """block_ops says which convolutions carry the block's activation (the predictor counts
    hard-swish operators from it): as many as the PyTorch block has hard-swish modules, less
    the one after a ResNet block's addition."""
    from dataclasses import replace as replace_gene

    from edgenas.arch import BLOCKS, BlockShape

    rng = np.random.default_rng(4)
    space = edge_space()
    checked = set()
    for _ in range(40):
        for s in space.sample(rng).shapes():
            gene = replace_gene(s.gene, act="hswish", skip=0)
            block = BLOCKS[gene.type](s.in_channels, gene)
            modules = sum(isinstance(m, torch.nn.Hardswish) for m in block.modules())
            ops = block_ops(BlockShape(0, gene, s.in_channels, s.in_size, s.out_channels,
                                       s.out_size))  # fmt: skip
            assert sum(o.act for o in ops) == modules - gene.always_residual, gene
            checked.add((gene.type, gene.expansion > 1))
    assert {t for t, _ in checked} == {"conv", "res", "bneck", "ds", "ir"}
