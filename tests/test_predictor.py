"""The latency predictor: pieces keyed as the plan keys them, calibration, fallbacks, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgenas.cost import LatencyPredictor, analytic_costs, piece_specs
from edgenas.errors import ConfigError
from edgenas.profile import genotype_pieces, load_profile, network_key, prediction_metrics
from edgenas.space import edge_space

SPACE = edge_space()


def test_predictor_keys_are_the_plans_keys() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        g = SPACE.sample(rng)
        assert [s.key for s in piece_specs(g, 1, 2)] == [p.key for p in genotype_pieces(g, 1, 2)]


def fake_profile(alpha: float = 1.1, beta: float = 0.01, gamma: float = 0.05) -> dict[str, object]:
    """Pieces cost 1 ms per 10 MMACs plus 0.01 ms; networks add calibration terms on top."""
    rng = np.random.default_rng(0)
    measurements: dict[str, object] = {}
    genotypes = [SPACE.sample(rng) for _ in range(40)]
    for g in genotypes:
        total = 0.0
        specs = piece_specs(g, 3, 10)
        for s in specs:
            ms = s.macs / 1e7 + 0.01
            measurements[s.key] = {"kind": s.group.split(":")[0], "median_ms": ms}
            total += ms
    for g in genotypes[:10]:
        specs = piece_specs(g, 3, 10)
        total = sum(s.macs / 1e7 + 0.01 for s in specs)
        measurements[network_key(g, 3, 10)] = {
            "kind": "network",
            "median_ms": alpha * total + beta * len(specs) + gamma,
        }
    return {"format": "edgenas-profile", "version": 1, "threads": 1, "runtime": {},
            "plan": {"in_channels": 3, "num_classes": 10}, "measurements": measurements}  # fmt: skip


def test_calibration_recovers_the_network_terms() -> None:
    predictor = LatencyPredictor(fake_profile(), 3, 10)
    assert (predictor.alpha, predictor.beta, predictor.gamma) == pytest.approx(
        (1.1, 0.01, 0.05), abs=1e-6
    )
    g = next(iter(predictor.references))
    ms, sigma = predictor.predict(g)
    assert ms == pytest.approx(predictor.references[g], rel=1e-6) and sigma == 0.0
    assert predictor.coverage(g) == 1.0


def test_unmeasured_pieces_fall_back_with_an_uncertainty() -> None:
    predictor = LatencyPredictor(fake_profile(), 3, 10)
    g = SPACE.sample(np.random.default_rng(99))
    assert predictor.coverage(g) < 1.0
    ms, sigma = predictor.predict(g)
    assert ms > 0 and sigma > 0
    assert predictor.predict_many([g, g]).shape == (2,)
    # the fallback tracks MACs, as the fake pieces do
    small, big = sorted((SPACE.sample(np.random.default_rng(s)) for s in range(5)),
                        key=lambda g: analytic_costs(g, 3, 10).macs)[::4]  # fmt: skip
    assert predictor.predict(big)[0] > predictor.predict(small)[0]


def test_metrics() -> None:
    m = prediction_metrics([1.0, 2.08, 2.9, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert m["within_5"] == 0.75 and m["within_10"] == 0.75
    assert m["mape"] == pytest.approx((0 + 4 + 100 / 30 + 25) / 4)
    assert m["spearman"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "edgenas-profile", "measurements": {', "truncated"),
        ('{"format": "something-else"}', "not an edgenas profile"),
        ('{"format": "edgenas-profile", "version": 1}', "lacks"),
        (
            '{"format": "edgenas-profile", "version": 1, "threads": 1, "runtime": {}, "plan": {},'
            ' "measurements": {"a|in3x8": {"median_ms": -1}}}',
            "positive median_ms",
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
    assert LatencyPredictor(load_profile(path), 3, 10).alpha == pytest.approx(1.1)
