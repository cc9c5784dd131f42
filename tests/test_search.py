"""The search's parts: objectives, the Pareto front, early stopping, strategies, the Python API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgenas
from edgenas.cost import Constraints, Costs
from edgenas.errors import ConfigError
from edgenas.space import edge_space
from edgenas.study import (
    BestCheck,
    EarlyStopping,
    EpochCurve,
    Objective,
    TrialRecord,
    make_sampler,
    pareto_front,
    parse_weights,
)


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


def test_search_function_survives_importing_the_study_package() -> None:
    import importlib

    sub = importlib.import_module("edgenas.study")
    assert callable(edgenas.search) and edgenas.search is not sub
    assert edgenas.study is sub and sub.SearchConfig is edgenas.SearchConfig


# -- multi-fidelity schedules ---------------------------------------------------------------
def test_fidelity_schedule_rungs_and_brackets() -> None:
    from edgenas.study import FidelitySchedule

    sh = FidelitySchedule.parse("sh", epochs=9)
    assert sh.rungs() == (1, 3) and sh.brackets == 1  # epoch 9 is the end, not a rung
    assert FidelitySchedule.parse("sh:eta=2,min_epochs=2", epochs=9).rungs() == (2, 4, 8)
    hb = FidelitySchedule.parse("hyperband", epochs=9)
    assert [hb.rungs(b) for b in range(hb.brackets)] == [(1, 3), (3,), ()]
    assert [hb.bracket_for(i) for i in range(5)] == [0, 1, 2, 0, 1]
    assert FidelitySchedule.parse("none", epochs=9).rungs() == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [("asha", "'asha' is unknown"), ("sh:eta=1", "eta must be"), ("sh:speed=2", "speed=2"),
     ("sh:eta=two", "whole number"), ("none:eta=2", "no options")],
)  # fmt: skip
def test_fidelity_schedule_bad_text(text: str, message: str) -> None:
    from edgenas.study import FidelitySchedule

    with pytest.raises(ConfigError, match=message):
        FidelitySchedule.parse(text, epochs=9)


def test_successive_halving_keeps_the_top_third_of_a_rung() -> None:
    from edgenas.study import FidelitySchedule, RungEntry

    sh = FidelitySchedule.parse("sh", epochs=9)
    done = [RungEntry(((a,), (a + 0.1,))) for a in (0.9, 0.8, 0.7, 0.6, 0.5)]
    # Six reached epoch 1 (five before, itself): the top two go on.
    assert sh.should_stop(1, (0.85,), done) is None  # second
    reason = sh.should_stop(1, (0.75,), done)  # third
    assert reason == (
        "rung 1 (epoch 1): 2 of the 6 candidates that reached it rank ahead; only the top 2 go on"
    )
    assert sh.should_stop(2, (0.1,), done) is None  # epoch 2 is no rung
    # Fewer than η at a rung: only the best so far goes on.
    assert sh.should_stop(1, (0.95,), done[:1]) is None
    assert sh.should_stop(1, (0.85,), done[:1]) is not None
    assert sh.should_stop(1, (0.9,), done[:1]) is None  # ties favour the candidate
    # At epoch 3 only the two candidates that reached it compete.
    late = [RungEntry(((0.5,), (0.6,), (0.9,))), RungEntry(((0.5,), (0.6,), (0.7,)))]
    assert sh.should_stop(3, (0.8,), [*done, *late]) is not None
    assert sh.should_stop(3, (0.95,), [*done, *late]) is None


def test_hyperband_compares_within_a_bracket() -> None:
    from edgenas.study import FidelitySchedule, RungEntry

    hb = FidelitySchedule.parse("hyperband", epochs=9)
    others = [RungEntry(((0.9,),), bracket=1), RungEntry(((0.3,), (0.4,), (0.5,)), bracket=0)]
    assert hb.should_stop(1, (0.6,), others, bracket=0) is None  # beats its bracket's only rival
    assert hb.should_stop(1, (0.2,), others, bracket=0) == (
        "bracket 0, rung 1 (epoch 1): 1 of the 2 candidates that reached it rank ahead; "
        "only the top 1 go on"
    )
    assert hb.should_stop(1, (0.2,), others, bracket=1) is None  # bracket 1 starts at epoch 3
    assert hb.should_stop(3, (0.2,), others, bracket=2) is None  # bracket 2 trains fully


def test_pareto_rungs_rank_by_non_dominated_sorting_then_crowding() -> None:
    from edgenas.study import ranked_ahead

    # Points are (accuracy, -latency): higher is better in both.
    front = [(0.9, -5.0), (0.8, -3.0), (0.6, -1.0)]
    # Dominated by one point only, yet in the second front: behind the whole first one.
    assert ranked_ahead((0.7, -4.0), front) == 3
    # Ahead of a point it dominates: (0.5, -6) is in the third front.
    assert ranked_ahead((0.7, -4.0), [(0.9, -5.0), (0.8, -3.0), (0.5, -6.0)]) == 2
    # On the front itself: the two extremes have infinite crowding, the middle one less.
    assert ranked_ahead((0.8, -3.0), [(0.9, -5.0), (0.6, -1.0)]) == 2
    assert ranked_ahead((0.9, -5.0), [(0.8, -3.0), (0.6, -1.0)]) == 0
    # Faster, though less accurate, than every other: not behind anyone.
    assert ranked_ahead((0.1, -0.5), front) == 0


# -- the front's measure --------------------------------------------------------------------
def test_hypervolume_2d_by_hand() -> None:
    from edgenas.study import hypervolume_2d

    # Reference latency 10 ms. Points: (0.5, 2 ms), (0.8, 6 ms), (0.6, 7 ms) dominated by the
    # second, (0.9, 12 ms) slower than the reference. The staircase covers
    # 0.5 × (10 − 2) + (0.8 − 0.5) × (10 − 6) = 4 + 1.2 = 5.2 of the 10-wide box.
    points = [(0.5, 2.0), (0.8, 6.0), (0.6, 7.0), (0.9, 12.0)]
    assert hypervolume_2d(points, 10.0) == pytest.approx(0.52)
    assert hypervolume_2d([], 10.0) == 0.0
    assert hypervolume_2d([(1.0, 0.0)], 10.0) == pytest.approx(1.0)  # the whole box


def test_stable_for_counts_trainings_since_the_last_improvement() -> None:
    from edgenas.study import stable_for

    assert stable_for([]) == 0
    assert stable_for([0.0, 0.0]) == 2  # no front yet: nothing improved
    assert stable_for([0.1, 0.3, 0.3, 0.2]) == 2
    assert stable_for([0.1, 0.3, 0.3, 0.4]) == 0


# -- training hyperparameters in the space --------------------------------------------------
def test_training_space_adds_categorical_training_choices() -> None:
    from optuna.distributions import CategoricalDistribution

    from edgenas.study import TrainingSpace
    from edgenas.train import TrainConfig

    inner = edge_space(max_depth=1, resolutions="32")
    space = TrainingSpace(inner, TrainConfig(batch_size=64))
    dists = space.distributions()
    labels = ("train.lr", "train.batch", "train.optimizer", "train.wd", "train.augment")
    assert set(dists) == set(inner.distributions()) | set(labels)
    assert all(isinstance(d, CategoricalDistribution) for d in dists.values())
    genotype = inner.sample(np.random.default_rng(0))
    params = space.encode(genotype)
    assert space.decode(params) == genotype and space.contains(genotype)
    assert {k: params[k] for k in labels} == {
        "train.lr": 3e-3, "train.batch": 64, "train.optimizer": "adamw", "train.wd": 5e-2,
        "train.augment": 1.0,
    }  # fmt: skip
    base = TrainConfig(threads=1, device="cpu")
    adamw = TrainingSpace.train_config({**params, "train.lr": 1e-2, "train.batch": 32}, base)
    assert (adamw.lr, adamw.batch_size, adamw.optimizer) == (1e-2, 32, "adamw")
    assert adamw.threads == 1 and adamw.device == "cpu"  # the rest is the search's own
    sgd = TrainingSpace.train_config({**params, "train.optimizer": "sgd", "train.augment": 0.0},
                                     base)  # fmt: skip
    # On AdamW's scale: SGD gets ten times the rate and the same shrink per step.
    assert sgd.optimizer == "sgd" and sgd.lr == pytest.approx(3e-2)
    assert sgd.weight_decay == pytest.approx(5e-3) and sgd.augment_strength == 0.0


def test_train_config_optimizer_sgd_learns() -> None:
    import torch
    from torch import nn

    from edgenas.data import AUGMENTATIONS
    from edgenas.train import Fidelity, TrainConfig, fit

    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lamb")

    class Splits:
        train, val = np.arange(0, 160), np.arange(160, 200)

    class Data:  # dark against bright images
        num_classes, channels, augment = 2, 1, AUGMENTATIONS
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


# -- warm starts ----------------------------------------------------------------------------
def test_warm_start_baselines_enqueues_those_the_space_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from edgenas.study import warm_start

    found = warm_start("baselines", edge_space(), 96)
    assert [w.label for w in found] == ["mobilenetv2@r96"]  # the others are not in this space
    assert found[0].baseline == "mobilenetv2@r96"
    assert edge_space().decode(found[0].params) == edgenas.baseline("mobilenetv2")
    assert "resnet@r96" in caplog.text and "--baseline" in caplog.text


def test_warm_start_from_a_run_encodes_its_front(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import json

    from edgenas.study import warm_start

    space = edge_space(max_depth=1, resolutions="32")
    inside = space.sample(np.random.default_rng(1))
    elsewhere = inside.replace(resolution=96)  # another data set's input size: moved to 32
    outside = edgenas.baseline("vgg", resolution=32)
    run = tmp_path / "earlier"
    run.mkdir()
    trials = [{"number": n, "genotype": str(g)} for n, g in enumerate((inside, elsewhere, outside))]
    trials.append({"number": 3, "genotype": "not on the front"})
    (run / "results.json").write_text(json.dumps({"trials": trials, "pareto": [0, 1, 2]}))
    found = warm_start(str(run), space, 32)
    assert [w.label for w in found] == ["earlier trial 0", "earlier trial 1"]
    assert [space.decode(w.params) for w in found] == [inside, inside]
    assert "earlier trial 2" in caplog.text and "do not fit" in caplog.text


@pytest.mark.parametrize("source", ["nowhere", "empty"])
def test_warm_start_bad_source_is_named(tmp_path: Path, source: str) -> None:
    from edgenas.study import warm_start

    (tmp_path / "empty").mkdir()
    path = str(tmp_path / source)
    with pytest.raises(ConfigError, match="--warm-start") as caught:
        warm_start(path, edge_space(), 96)
    assert path in str(caught.value) and "baselines" in str(caught.value)


# -- real searches on synthetic data --------------------------------------------------------
def tiny_space() -> edgenas.SearchSpace:
    return edgenas.edge_space(resolutions="32", max_depth=1)


def _follows_the_halving_rule(
    trained: list[Any], point: Callable[[Any], tuple[float, ...]]
) -> None:
    """Each candidate, ranked at epoch 1 by ``point`` against those trained before it, went
    on to epoch 2 exactly when fewer than max(1, reached // 3) ranked ahead."""
    from edgenas.study import ranked_ahead

    before: list[tuple[float, ...]] = []
    for i, t in enumerate(trained):
        if ranked_ahead(point(t), before) >= max(1, (i + 1) // 3):
            assert t.state == "pruned" and t.epochs == 1 and t.reason is not None
            assert t.reason.startswith("pruned by successive halving at rung 1 (epoch 1): ")
        else:
            assert t.state == "complete" and t.epochs == 2
        before.append(point(t))


def test_successive_halving_search_prunes_at_the_rung(tmp_path: Path) -> None:
    # Pareto: each candidate is ranked at epoch 1 by (accuracy, -latency) against those before
    # it, and goes on only while fewer than max(1, reached // 3) rank ahead. Seed 0 gives both
    # outcomes (the CLI test of the same search sees three of six stopped).
    result = edgenas.search(
        "synthetic", out=tmp_path / "sh", objective="pareto", trials=6, epochs=2,
        space=tiny_space(), strategy="random", fidelity_schedule="sh", seed=0,
    )  # fmt: skip
    trained = [t for t in result.trials if t.trained]
    assert len(trained) == 6
    assert trained[0].state == "complete"  # alone at the rung: nothing ranks ahead
    assert any(t.state == "pruned" for t in trained), "successive halving stopped no candidate"
    _follows_the_halving_rule(trained, lambda t: (t.history[0], -t.costs.latency_ms))
    # The front's hypervolume is recorded after every training and never falls.
    history = result.results["hypervolume"]["history"]
    assert [h["trial"] for h in history] == [t.number for t in trained]
    values = [h["value"] for h in history]
    assert values == sorted(values) and 0 < values[0] <= 1
    assert result.results["hypervolume"]["reference_latency_ms"] > 0
    assert result.results["summary"]["rejected"] == 0


def test_successive_halving_stops_the_candidates_others_beat_at_the_rung(tmp_path: Path) -> None:
    # One objective: a candidate goes on past epoch 1 only if fewer than max(1, reached // 3)
    # of those trained before it were more accurate there. Six random candidates on
    # synthetic data (seeded, so the same every run) give both outcomes.
    result = edgenas.search(
        "synthetic", out=tmp_path / "sh1", objective="accuracy", trials=6, epochs=2,
        space=tiny_space(), strategy="random", fidelity_schedule="sh", seed=1,
    )  # fmt: skip
    trained = [t for t in result.trials if t.trained]
    assert len(trained) == 6
    pruned = [t for t in trained if t.state == "pruned"]
    assert pruned, "successive halving stopped no candidate"
    assert any(t.state == "complete" for t in trained[1:])
    _follows_the_halving_rule(trained, lambda t: (t.history[0],))


def test_training_searched_with_warm_start_and_stable_stop(tmp_path: Path) -> None:
    import json

    space = tiny_space()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    seedling = space.sample(np.random.default_rng(3))
    (earlier / "results.json").write_text(
        json.dumps({"trials": [{"number": 7, "genotype": str(seedling)}], "pareto": [7]})
    )
    options = {
        "out": tmp_path / "joint", "trials": 12, "epochs": 1, "strategy": "random",
        "search_training": True, "warm_start": str(earlier), "stop_when_stable": 2,
        "max_latency": "50ms",
    }  # fmt: skip
    result = edgenas.search("synthetic", space=tiny_space(), **options)
    first = result.trials[0]
    assert first.warm_start == "earlier trial 7" and first.genotype == str(seedling)
    assert first.params["train.optimizer"] == "adamw"  # encoded with the default training
    trained = [t for t in result.trials if t.trained]
    for t in trained:
        assert t.training is not None and set(t.training) == {
            "optimizer", "lr", "batch_size", "weight_decay", "augment_strength"
        }  # fmt: skip
        assert t.training["batch_size"] == t.params["train.batch"]
    assert result.best_details is not None and result.best_details["training"] is not None
    best = next(t for t in result.results["trials"] if t["number"] == result.best.number)
    assert best["training"] == result.best_details["training"]
    frontier = result.results["hypervolume"]
    assert frontier["measure"] == "best accuracy" and len(frontier["history"]) == len(trained)
    # The stop fires: of 12 random candidates trained for one epoch each, two in a row fail to
    # raise the best accuracy (seeded, so the same every run), and the search stops right after
    # the first such pair, not later.
    from edgenas.study import stable_for

    history = [h["value"] for h in frontier["history"]]
    assert len(trained) < 12
    assert result.stopped_because == "the front has not improved for 2 trainings"
    assert frontier["stable_for"] == 2 == stable_for(history)
    assert all(stable_for(history[:n]) < 2 for n in range(1, len(history)))
    # Resumed: the warm start is not enqueued again, and a stable front stays stable.
    again = edgenas.search("synthetic", space=tiny_space(), **options)
    assert sum(t.warm_start is not None for t in again.trials) == 1
    assert len(again.trials) == len(result.trials)
    assert again.stopped_because == result.stopped_because


def test_best_check_reads_what_this_and_older_runs_stored():
    # A run from before image counts were recorded stored fewer keys; show, report and
    # finalize read it through BestCheck.from_json, the missing figures as None.
    older = {
        "trial": 3,
        "genotype": "r64-stem16-ds_k3_c16-head0",
        "accuracy": 0.8,
        "holdout_accuracy": 0.75,
        "latency_ms": 1.2,
        "latency_ms_measured": 1.3,
        "onnx": "best.onnx",
    }
    check = BestCheck.from_json(older)
    assert check is not None
    assert (check.trial, check.holdout_accuracy, check.latency_ms_measured) == (3, 0.75, 1.3)
    assert check.holdout_images is None and check.candidates_checked == ()
    # before --metric, every accuracy was top-1 and no per-class report was kept
    assert check.metric == "accuracy" and check.holdout_report is None
    # what a search writes now reads back unchanged, key for key
    report = {"classes": ["ok", "defect"], "confusion_matrix": [[3, 1], [0, 2]], "images": 6}
    now = {**older, "holdout_images": 400, "validation_images": 380,
           "latency_ms_predicted": None, "onnx_max_abs_diff": 1e-6,
           "candidates_checked": [{"trial": 3, "latency_ms_measured": 1.3}],
           "metric": "recall:defect", "validation_report": report,
           "holdout_report": report}  # fmt: skip
    again = BestCheck.from_json(now)
    assert again is not None and again.to_json() == {k: now[k] for k in again.to_json()}
    assert set(again.to_json()) == set(now)
    assert BestCheck.from_json(None) is None and BestCheck.from_json({"genotype": "x"}) is None
