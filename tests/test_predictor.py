"""The latency predictor: convolutions keyed as the plan keys them, calibration, fallbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgenas.arch import Genotype
from edgenas.cost import LatencyPredictor, analytic_costs, conv_key, network_ops, parse_conv_key
from edgenas.cost._analytic import block_ops
from edgenas.cost._predictor import FEATURES, conv_kind
from edgenas.errors import ConfigError
from edgenas.profile import load_profile, network_key, prediction_metrics
from edgenas.profile._check import ms_per_mac
from edgenas.space import edge_space

SPACE = edge_space()


def test_conv_keys_round_trip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        for op in network_ops(SPACE.sample(rng), 3, 10).convs:
            assert parse_conv_key(conv_key(op)) == op
    assert conv_key(parse_conv_key("conv_k3x5_s2_g1|16>24@48")) == "conv_k3x5_s2_g1|16>24@48"
    with pytest.raises(ConfigError, match="not a convolution key"):
        parse_conv_key("ir_k3_e4_c24_s2|in16x48")


def _fake_ms(key: str) -> float:
    return parse_conv_key(key).macs / 1e7 + 0.005


def _se_mmacs(g: Genotype) -> float:
    """Multiply-adds (millions) of the squeeze-excite convolutions of a genotype."""
    return sum(o.in_channels * o.out_channels for s in g.shapes() for o in block_ops(s)
               if o.bias) / 1e6  # fmt: skip


def fake_profile(scale: float = 1.1, per_conv: float = 0.02, overhead: float = 0.05,
                 networks: int = 40, per_se_mmac: float = 0.0) -> dict[str, object]:  # fmt: skip
    """Convolutions cost 1 ms per 10 MMACs plus 5 µs; networks add calibration terms on top
    (with ``per_se_mmac``, ms per million multiply-adds of squeeze-excite's convolutions)."""
    rng = np.random.default_rng(0)
    measurements: dict[str, object] = {}
    genotypes = [SPACE.sample(rng) for _ in range(60)]
    for g in genotypes:
        for op in network_ops(g, 3, 10).convs:
            measurements[conv_key(op)] = {"kind": "conv", "median_ms": _fake_ms(conv_key(op))}
    for g in genotypes[:networks]:
        convs = network_ops(g, 3, 10).convs
        total = sum(_fake_ms(conv_key(op)) for op in convs)
        extra = per_conv * len(convs) + overhead + per_se_mmac * _se_mmacs(g)
        measurements[network_key(g, 3, 10)] = {
            "kind": "network",
            "median_ms": scale * total + extra,
        }
    return {"format": "edgenas-profile", "version": 1, "threads": 1, "runtime": {},
            "plan": {"in_channels": 3, "num_classes": 10}, "measurements": measurements}  # fmt: skip


def test_calibration_recovers_the_network_terms() -> None:
    predictor = LatencyPredictor(fake_profile(), 3, 10)
    assert predictor.residual < 0.01
    g = next(iter(predictor.references))
    ms, _ = predictor.predict(g)
    assert ms == pytest.approx(predictor.references[g], rel=0.01)
    assert predictor.coverage(g) == 1.0
    # the uncalibrated sum misses the scale and the per-convolution overhead
    assert predictor.block_sum(g) < 0.95 * predictor.references[g]


def test_unmeasured_convolutions_fall_back_with_an_uncertainty() -> None:
    predictor = LatencyPredictor(fake_profile(), 3, 10)
    g = SPACE.sample(np.random.default_rng(99))
    assert predictor.coverage(g) < 1.0
    ms, sigma = predictor.predict(g)
    assert ms > 0 and sigma > 0
    many = predictor.predict_many([g, g])
    assert many.shape == (2,) and many[0] == pytest.approx(ms)
    # the fallback tracks MACs, as the fake convolutions do
    small, big = sorted((SPACE.sample(np.random.default_rng(s)) for s in range(5)),
                        key=lambda g: analytic_costs(g, 3, 10).macs)[::4]  # fmt: skip
    assert predictor.predict(big)[0] > predictor.predict(small)[0]


def test_unseen_architectures_are_predicted_closely_when_the_table_is_exact() -> None:
    predictor = LatencyPredictor(fake_profile(), 3, 10)
    rng = np.random.default_rng(123)
    fresh = [SPACE.sample(rng) for _ in range(30)]
    truth = [1.1 * sum(_fake_ms(conv_key(op)) for op in network_ops(g, 3, 10).convs)
             + 0.02 * len(network_ops(g, 3, 10).convs) + 0.05 for g in fresh]  # fmt: skip
    assert prediction_metrics(predictor.predict_many(fresh), truth)["within_10"] >= 0.9


def test_squeeze_excite_convolutions_are_calibrated_by_their_multiply_adds() -> None:
    """On a pooled 1×1 tensor squeeze-excite's convolutions only read their weights: a wide
    expansion (1536 channels gated through 384) costs what the table of spatial convolutions
    cannot show, and the calibration learns it from the reference networks."""
    wide = Genotype.parse("r64-stem16-ir_k3_e6_c192_s2-ir_k5x3_e8_c192_se-head0")
    plain = Genotype.parse("r64-stem16-ir_k3_e6_c192_s2-ir_k5x3_e8_c192-head0")
    assert _se_mmacs(wide) == pytest.approx(2 * 1536 * 384 / 1e6)

    def se_cost(per_se_mmac: float) -> float:
        predictor = LatencyPredictor(fake_profile(per_se_mmac=per_se_mmac), 3, 10)
        assert predictor.residual < 0.01
        return predictor.predict(wide)[0] - predictor.predict(plain)[0]

    # what the block's squeeze-excite costs more on a device where its weights cost 0.3 ms per
    # million multiply-adds than on one where they cost nothing
    assert se_cost(0.3) - se_cost(0.0) == pytest.approx(0.3 * _se_mmacs(wide), rel=0.1)


def test_a_profile_without_convolutions_is_refused() -> None:
    profile = fake_profile()
    profile["measurements"] = {k: m for k, m in profile["measurements"].items()  # type: ignore[attr-defined]
                               if m["kind"] == "network"}  # fmt: skip
    with pytest.raises(ConfigError, match="profile plan"):
        LatencyPredictor(profile, 3, 10)


def test_metrics() -> None:
    m = prediction_metrics([1.0, 2.08, 2.9, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert m["within_5"] == 0.75 and m["within_10"] == 0.75
    assert m["mape"] == pytest.approx((0 + 4 + 100 / 30 + 25) / 4)
    assert m["spearman"] == pytest.approx(1.0)
    ratios = np.log([1.0, 2.08 / 2.0, 2.9 / 3.0, 5.0 / 4.0])
    assert m["log_ratio_sd"] == pytest.approx(np.std(ratios, ddof=1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "edgenas-profile", "measurements": {', "damaged"),
        ('{"format": "something-else"}', "not an edgenas profile"),
        ('{"format": "edgenas-profile", "version": 1}', "lacks"),
        (
            '{"format": "edgenas-profile", "version": 1, "threads": 1, "runtime": {}, "plan": {},'
            ' "measurements": {"a|in3x8": {"median_ms": -1}}}',
            "positive median_ms",
        ),
        (
            '{"format": "edgenas-profile", "version": 1, "threads": 1, "runtime": {}, "plan": {},'
            ' "measurements": {}, "anchors": [{"median_ms": "fast"}]}',
            "anchors must be a list",
        ),
    ],
)
def test_bad_profiles_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_profile(path)


def test_profile_round_trips_through_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(fake_profile()))
    assert LatencyPredictor(load_profile(path), 3, 10).residual < 0.01


def test_flops_reference_factor_survives_large_mac_counts() -> None:
    # 200 networks of about a GMAC: their squared MACs overflow 64-bit integers
    macs = [10**9 + i for i in range(200)]
    assert ms_per_mac(macs, [m * 2e-8 for m in macs]) == pytest.approx(2e-8)


def test_drift_of_the_machine_during_profiling_is_taken_out() -> None:
    steady = fake_profile()
    drifted = json.loads(json.dumps(steady))
    # anchors say the machine ran 25% slower for the second half of the run
    drifted["anchors"] = [{"median_ms": 1.0}] * 10 + [{"median_ms": 1.25}] * 10
    for i, m in enumerate(drifted["measurements"].values()):
        m["anchor"] = i % 20
        if i % 20 >= 10:
            m["median_ms"] *= 1.25
    expected = LatencyPredictor(steady, 3, 10)
    corrected = LatencyPredictor(drifted, 3, 10)
    g = SPACE.sample(np.random.default_rng(5))
    # the speed is relative to the run's median, which lies between the two halves
    scale = corrected.predict(g)[0] / expected.predict(g)[0]
    assert 1.0 <= scale <= 1.25
    for key, value in expected.table.items():
        assert corrected.table[key] == pytest.approx(value * scale, rel=1e-6)


def _by_definition(predictor: LatencyPredictor, g: Genotype) -> tuple[float, float, float]:
    """Prediction, uncertainty and coverage as the module doc defines them, one convolution at
    a time from ``network_ops`` (the vectorised predictor must agree)."""
    ops = network_ops(g, 3, 10)
    x = dict.fromkeys(FEATURES, 0.0)
    x["overhead"] = 1.0
    var, measured = 0.0, 0
    first = next(iter(predictor._fallbacks.values()))
    for op in ops.convs:
        kind = conv_kind(op)
        model = predictor._fallbacks.get(kind) or first
        ms = model(op)
        value = predictor.table.get(conv_key(op))
        if value is None:
            scale = predictor.coefficients[FEATURES.index(f"ms_{kind}")]
            var += (ms * model.sigma * scale) ** 2
        else:
            w_table, w_model = predictor.table_noise**-2, model.sigma**-2
            ms = (w_table * value + w_model * ms) / (w_table + w_model)
            measured += 1
        x[f"ms_{kind}"] += ms
        x[f"n_{kind}"] += 1
        x[f"elems_{kind}"] += (op.in_elems + op.out_elems) / 1e6
    for k, v in ops.elementwise.items():
        x[k] += v
    mean = sum(c * x[f] for c, f in zip(predictor.coefficients.tolist(), FEATURES, strict=True))
    residual = predictor.residual * mean
    return mean, math.sqrt(var + residual**2), measured / len(ops.convs)


def _mixed_genotypes(n: int) -> list[Genotype]:
    """Random architectures (many of their convolutions missing from the fake profile) and a
    few odd ones: no blocks, no head, long skips from the stem, projected and not."""
    rng = np.random.default_rng(2024)
    odd = [
        "r32-stem8-head0",
        "r32-stem8-head64",
        "r64-stem16-conv_k3_c16-ds_k3_c16_l2-head0",
        "r64-stem16-conv_k3_c16-ir_k5x3_e1_c24_hs_se_l2-bneck_k3_c24_l2-res_k3_c32_s2_hs-head96",
        "r48-stem24-ir_k7_e6_c24_id_hs-ds_k3x5_c40_se-conv_k5_c40_id_se_hs_l2-ir_k3_e3_c40_l3",
    ]
    return [Genotype.parse(s) for s in odd] + [SPACE.sample(rng) for _ in range(n)]


def test_predictions_in_bulk_match_the_definition_one_convolution_at_a_time() -> None:
    profile = fake_profile()
    genotypes = _mixed_genotypes(300)
    bulk = LatencyPredictor(profile, 3, 10)
    many = bulk.predict_many(genotypes)
    single = LatencyPredictor(profile, 3, 10)
    expected = [_by_definition(single, g) for g in genotypes]
    coverage = [single.coverage(g) for g in genotypes]
    assert min(coverage) < 0.5 < max(coverage) and sum(c < 1 for c in coverage) > 100
    for g, value, (ms, sigma, covered), cov in zip(genotypes, many, expected, coverage,
                                                   strict=True):  # fmt: skip
        assert value == pytest.approx(ms, rel=1e-9)
        assert single.predict(g) == pytest.approx((ms, sigma), rel=1e-9)
        assert cov == pytest.approx(covered, rel=1e-12)
    # parts kept from earlier calls give the same answer as a new predictor
    again = bulk.predict_many(genotypes[::-1] + _mixed_genotypes(320)[-20:])
    assert again[: len(genotypes)] == pytest.approx(many[::-1], rel=1e-12)
    fresh = LatencyPredictor(profile, 3, 10).predict_many(_mixed_genotypes(320)[-20:])
    assert again[len(genotypes) :] == pytest.approx(fresh, rel=1e-12)
    assert bulk.predict_many([]).shape == (0,)


def test_table_too_wide_to_pack_is_looked_up_key_by_key() -> None:
    profile = fake_profile()
    # a convolution with fields too large to pack the table's keys into 64-bit codes
    profile["measurements"]["conv_k3x3_s1_g1|100000000>100000000@100000"] = {  # type: ignore[index]
        "kind": "conv", "median_ms": 1e6}  # fmt: skip
    predictor = LatencyPredictor(profile, 3, 10)
    assert predictor._table_mult is None
    genotypes = _mixed_genotypes(60)
    many = predictor.predict_many(genotypes)
    for g, value in zip(genotypes, many, strict=True):
        assert value == pytest.approx(_by_definition(predictor, g)[0], rel=1e-9)
