"""The search's parts: objectives, the Pareto front, early stopping, strategies, the Python API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgenas
from edgenas.cost import Constraints, Costs
from edgenas.errors import ConfigError
from edgenas.search import (
    STRATEGIES,
    EarlyStopping,
    EpochCurve,
    Objective,
    TrialRecord,
    make_sampler,
    pareto_front,
    parse_weights,
)
from edgenas.space import edge_space


def costs(latency: float, size: float = 1.0) -> Costs:
    return Costs(latency, 10.0, size, 1000, 10**6)


def record(
    number: int, accuracy: float | None, latency: float, state: str = "complete"
) -> TrialRecord:
    return TrialRecord(number, f"g{number}", state, state != "infeasible", accuracy,
                       costs(latency), 1, 1.0)  # fmt: skip


def test_pareto_front_keeps_only_undominated_trained_feasible() -> None:
    records = [
        record(0, 0.80, 1.0),
        record(1, 0.90, 2.0),
        record(2, 0.85, 2.5),  # dominated by 1
        record(3, 0.95, 5.0),
        record(4, None, 0.5, state="infeasible"),
        record(5, 0.99, 0.1, state="pruned"),  # pruned candidates are not finished
        record(6, 0.80, 1.0),  # same point as 0: reported once
    ]
    assert [r.number for r in pareto_front(records)] == [0, 1, 3]


def test_objectives_values_and_weighted_score() -> None:
    c = costs(2.0, size=0.5)
    assert Objective("accuracy").values(0.9, c) == [0.9]
    assert Objective("pareto").values(0.9, c) == [0.9, 2.0]
    limits = Constraints(max_latency_ms=4.0, max_size_mb=1.0)
    weighted = Objective("weighted", parse_weights("accuracy=0.6,latency=0.3,size=0.1"), limits)
    assert weighted.values(0.9, c)[0] == pytest.approx(0.6 * 0.9 + 0.3 * 0.5 + 0.1 * 0.5)


def test_weighted_objective_needs_the_limits_it_normalises_by() -> None:
    with pytest.raises(ConfigError, match="--max-latency"):
        Objective("weighted", {"accuracy": 0.5, "latency": 0.5}, Constraints())
    with pytest.raises(ConfigError, match="unknown"):
        parse_weights("accuracy=1,speed=2")
    with pytest.raises(ConfigError, match="--max-energy"):
        Objective("weighted", parse_weights("accuracy=0.7,energy=0.3"), Constraints())


def test_weighted_objective_scores_estimated_energy() -> None:
    c = Costs(2.0, 10.0, 0.5, 1000, 10**6, energy_mj=1.0)
    limits = Constraints(max_energy_mj=4.0)
    weighted = Objective("weighted", parse_weights("accuracy=0.7,energy=0.3"), limits)
    assert weighted.uses_energy
    assert weighted.values(0.9, c)[0] == pytest.approx(0.7 * 0.9 + 0.3 * (1 - 1.0 / 4.0))
    hungrier = Costs(2.0, 10.0, 0.5, 1000, 10**6, energy_mj=3.0)
    assert weighted.values(0.9, hungrier)[0] < weighted.values(0.9, c)[0]
    assert not Objective("weighted", {}, Constraints(max_latency_ms=4, max_size_mb=1)).uses_energy


def test_early_stopping_spares_candidates_that_need_less_energy() -> None:
    rule = EarlyStopping(margin=0.05, min_better=3, cost_aware=True,
                         cost_fields=("latency_ms", "size_mb", "energy_mj"))  # fmt: skip
    leaders = [EpochCurve((0.9,), Costs(1.0, 10.0, 1.0, 1000, 10**6, energy_mj=5.0))] * 4
    frugal = Costs(1.0, 10.0, 1.0, 1000, 10**6, energy_mj=1.0)
    assert rule.should_stop(1, 0.6, frugal, leaders) is None  # may be the best trade-off
    hungry = Costs(1.0, 10.0, 1.0, 1000, 10**6, energy_mj=6.0)
    assert rule.should_stop(1, 0.6, hungry, leaders) is not None


def test_early_stopping_single_objective_compares_at_the_same_epoch() -> None:
    rule = EarlyStopping(margin=0.05, min_better=3)
    done = [EpochCurve((0.8, 0.9), costs(1.0)) for _ in range(4)]
    assert rule.should_stop(1, 0.5, costs(1.0), done) is not None
    assert rule.should_stop(1, 0.78, costs(1.0), done) is None  # within the margin
    assert rule.should_stop(1, 0.5, costs(1.0), done[:2]) is None  # too few to judge


def test_early_stopping_pareto_spares_cheaper_candidates() -> None:
    rule = EarlyStopping(margin=0.05, min_better=3, cost_aware=True)
    done = [EpochCurve((0.9,), costs(5.0)) for _ in range(4)]
    # Less accurate but much faster than every completed one: it may be on the front.
    assert rule.should_stop(1, 0.6, costs(1.0), done) is None
    # Slower and less accurate: dominated.
    assert rule.should_stop(1, 0.6, costs(6.0), done) is not None


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_seeded(name: str) -> None:
    import optuna

    space = edge_space(max_depth=2)

    def proposals(seed: int) -> list[dict[str, object]]:
        sampler = make_sampler(name, space, seed, multi_objective=False)
        study = optuna.create_study(sampler=sampler, direction="maximize")
        out = []
        for i in range(10):
            trial = study.ask(space.distributions())
            out.append(trial.params)
            study.tell(trial, float(i % 3))
        return out

    assert proposals(1) == proposals(1)
    assert proposals(1) != proposals(2)


def test_unknown_strategy() -> None:
    with pytest.raises(ConfigError, match="tpe"):
        make_sampler("magic", edge_space(), 0, False)


def test_python_api_returns_trials_front_and_best(tmp_path: Path) -> None:
    result = edgenas.search(
        "synthetic",
        out=tmp_path / "api",
        max_latency="3ms",
        trials=2,
        epochs=1,
        space=edgenas.edge_space(resolutions="64", max_depth=1),
        strategy="random",
        baselines=("mobilenetv2:0.25",),  # outside this narrowed space: trained all the same
    )
    trained = [t for t in result.trials if t.trained]
    assert len(trained) == 2
    assert [t.baseline for t in trained] == ["mobilenetv2:0.25@r64", None]
    assert trained[0].genotype == str(edgenas.baseline("mobilenetv2:0.25", resolution=64))
    assert result.best is not None and result.best in result.pareto
    assert result.best_onnx is not None and result.best_onnx.exists()
    assert result.results["best"] == result.best.number


def test_energy_limit_rejects_candidates_without_training_them(tmp_path: Path) -> None:
    result = edgenas.search(
        "synthetic",
        out=tmp_path / "energy",
        max_energy="2mJ",
        energy={"pj_per_mac": 150, "pj_per_byte": 50},
        trials=2,
        epochs=1,
        space=edgenas.edge_space(resolutions="64", max_depth=1),
        strategy="random",
        baselines=("resnet",),  # about 80 mJ at 64×64: over the limit whatever is sampled
    )
    resnet = next(t for t in result.trials if t.baseline)
    assert resnet.state == "infeasible" and not resnet.trained and resnet.accuracy is None
    assert resnet.costs is not None and resnet.costs.energy_mj > 2.0
    assert resnet.violations["max_energy_mj"] > 0
    trained = [t for t in result.trials if t.trained]
    assert len(trained) == 2
    for t in result.trials:
        assert t.costs is not None and t.costs.energy_mj > 0
        if t.costs.energy_mj > 2.0:
            assert t.state == "infeasible" and not t.trained
        if t.trained:
            assert t.costs.energy_mj <= 2.0
    assert result.results["constraints"] == {"max_energy_mj": 2.0}
    assert result.results["run"]["energy"] == {"pj_per_mac": 150.0, "pj_per_byte": 50.0,
                                               "estimate": True}  # fmt: skip


def test_search_function_survives_importing_the_subpackage() -> None:
    import importlib

    sub = importlib.import_module("edgenas.search")
    assert callable(edgenas.search) and edgenas.search is not sub
    assert sub.SearchConfig is edgenas.SearchConfig


def test_train_config_optimizer_sgd_learns() -> None:
    import torch
    from torch import nn

    from edgenas.train import Fidelity, TrainConfig, fit

    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lamb")

    class Splits:
        train, val = np.arange(0, 160), np.arange(160, 200)

    class Data:  # dark against bright images
        num_classes, channels, allow_rot90, allow_flips = 2, 1, True, True
        labels = np.arange(200) % 2
        splits = Splits()

        def images(self, resolution: int) -> torch.Tensor:
            level = torch.as_tensor(self.labels)[:, None, None, None] * 120 + 60
            return (level + torch.randint(0, 60, (200, 1, 8, 8))).to(torch.uint8)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))  # fmt: skip
    config = TrainConfig(batch_size=32, lr=3e-2, optimizer="sgd", device="cpu")
    result = fit(model, Data(), Fidelity(epochs=3), resolution=8, seed=0, config=config)
    assert result.status == "complete" and result.accuracy is not None and result.accuracy > 0.8
