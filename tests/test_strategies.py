"""The contract every registered strategy keeps, on the edge space and the nb201 space.

- the same seed gives the same proposals (and another seed other ones);
- it never has an infeasible candidate trained: its proposals pass the cost model's check
  whenever feasible ones are common, and the benchmark loop (which, like the runner, checks
  before training) never spends a training on an infeasible one;
- it resumes from storage: a study reopened from SQLite continues where it stopped.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from edgenas.bench import (
    LATENCY_ERROR,
    NB201Table,
    benchmark,
    load_table,
    mean_interval,
    predicted_latency,
    run_strategy,
)
from edgenas.cli import app
from edgenas.errors import ConfigError
from edgenas.space import NB201_OPS, NB201Cell, edge_space, nb201_space
from edgenas.study import STRATEGIES, make_sampler
from edgenas.study._strategies import Check

ALL = sorted(STRATEGIES)


def _unit(text: str) -> float:
    """A deterministic pseudo-random number in [0, 1) for a string."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") / 2**64


def _nb201_rows() -> list[tuple[str, float, float]]:
    """Every cell with a made-up accuracy (convolutions help, with noise) and latency."""
    cost = {"none": 0.0, "skip_connect": 0.2, "avg_pool_3x3": 1.0, "nor_conv_1x1": 1.5,
            "nor_conv_3x3": 4.0}  # fmt: skip
    gain = {"none": 0.0, "skip_connect": 1.0, "avg_pool_3x3": 0.5, "nor_conv_1x1": 2.0,
            "nor_conv_3x3": 3.0}  # fmt: skip
    rows = []
    for ops in itertools.product(NB201_OPS, repeat=6):
        arch = str(NB201Cell(ops))
        accuracy = 70 + sum(gain[o] for o in ops) + 3 * _unit(arch)
        latency = 1 + sum(cost[o] for o in ops) + _unit("l" + arch)
        rows.append((arch, round(accuracy, 3), round(latency, 3)))
    return rows


@pytest.fixture(scope="module")
def table_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb201") / "table.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "accuracy", "latency_ms"])
        for i, (arch, acc, lat) in enumerate(_nb201_rows()):
            w.writerow([i, arch, acc, lat])
    return path


def _edge_check(params: Mapping[str, Any]) -> Check:
    # Feasible when the first stages are narrow: about a third of the space.
    feasible = int(params["s0.width"]) <= 16 and int(params["s1.width"]) <= 24
    return Check(feasible, math.nan)


def _edge_accuracy(params: Mapping[str, Any]) -> float:
    return 0.5 + 0.3 * _unit(str(sorted(params.items())))


def _nb201_check(params: Mapping[str, Any]) -> Check:
    return Check(list(params.values()).count("nor_conv_3x3") <= 2, math.nan)


def _drive(name: str, seed: int, trials: int, storage: Any = None, study_name: str = "s"):
    """Ask and tell ``trials`` trials on a narrowed edge space (nb201 for grid, which needs
    a small space); return the proposals and the study."""
    space: Any = nb201_space() if name == "grid" else edge_space(max_depth=2)
    check = _nb201_check if name == "grid" else _edge_check
    sampler = make_sampler(name, space, seed, False, check=check, cheap_check=True)
    study = optuna.create_study(
        sampler=sampler,
        direction="maximize",
        storage=storage,
        study_name=study_name,
        load_if_exists=True,
    )
    out = []
    for _ in range(trials):
        trial = study.ask(space.distributions())
        feasible = check(trial.params).feasible
        trial.set_constraint("limit", 0.0 if feasible else 1.0)
        study.tell(trial, _edge_accuracy(trial.params) if feasible else 0.0)
        out.append(dict(trial.params))
    return out, study


@pytest.mark.parametrize("name", [n for n in ALL if n != "grid"])
def test_same_seed_same_proposals_on_the_edge_space(name: str) -> None:
    n = 11 if name == "gp" else 12  # gp: ten random, then its model (slow on 93 choices)
    first, _ = _drive(name, 1, n)
    assert first == _drive(name, 1, n)[0]
    assert first != _drive(name, 2, n)[0]


@pytest.mark.parametrize("name", [n for n in ALL if n != "grid"])
def test_proposals_on_the_edge_space_pass_the_check(name: str) -> None:
    proposals, _ = _drive(name, 0, 12 if name == "gp" else 20)
    assert all(_edge_check(p).feasible for p in proposals)


def test_grid_refuses_a_space_too_large_to_enumerate() -> None:
    with pytest.raises(ConfigError, match="small spaces"):
        make_sampler("grid", edge_space(), 0, False)


@pytest.mark.parametrize("name", ALL)
def test_resumes_from_storage(name: str, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    n = 6 if name == "gp" else 8
    _drive(name, 3, n, storage)
    # A new process: a fresh sampler on the stored study (the runner offsets the seed).
    _, study = _drive(name, 3 + 7919 * n, n, storage)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(2 * n))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)


@pytest.mark.parametrize("name", ALL)
def test_nb201_same_seed_same_trace_and_no_infeasible_training(name: str, table_csv: Path) -> None:
    table = load_table(table_csv)
    cap = float(np.quantile(table.latency_ms, 0.3))
    budget = 13 if name == "gp" else 30  # gp: ten random, then its (slow) model
    a = run_strategy(name, table, cap, budget, seed=4, mode="exact")
    b = run_strategy(name, table, cap, budget, seed=4, mode="exact")
    np.testing.assert_array_equal(a.best, b.best)
    assert a.infeasible[-1] == 0  # an exact check before training: none wasted
    assert np.all(np.diff(a.best[~np.isnan(a.best)]) >= 0)
    assert np.nanmax(a.best) <= table.optimum(cap)


def test_predicted_latency_has_the_error_asked_for(table_csv: Path) -> None:
    table = load_table(table_csv)
    predicted = predicted_latency(table, seed=3, latency_error=0.07)
    log_ratio = np.log(predicted / table.latency_ms)
    assert abs(log_ratio.std() - 0.07) < 0.005 and abs(np.median(log_ratio)) < 0.005
    # One predictor per seed: the same seed, the same errors; another seed, others.
    np.testing.assert_array_equal(predicted, predicted_latency(table, 3, 0.07))
    assert not np.array_equal(predicted, predicted_latency(table, 4, 0.07))
    np.testing.assert_array_equal(predicted_latency(table, 3, 0.0), table.latency_ms)


@pytest.mark.parametrize("name", ["guided", "random-feasible"])
def test_realistic_mode_wastes_trainings_the_prediction_gets_wrong(
    name: str, table_csv: Path
) -> None:
    # A predictor off by a factor of 1.5 either way: near the cap, candidates it calls feasible
    # are often not. Each such training is counted as wasted and never as the best.
    table = load_table(table_csv)
    cap = float(np.quantile(table.latency_ms, 0.3))
    trace = run_strategy(name, table, cap, 40, seed=1, mode="realistic", latency_error=0.4)
    again = run_strategy(name, table, cap, 40, seed=1, mode="realistic", latency_error=0.4)
    np.testing.assert_array_equal(trace.best, again.best)
    assert trace.infeasible[-1] > 0
    feasible = set(table.accuracy[table.latency_ms <= cap].tolist())
    assert all(b in feasible for b in trace.best[~np.isnan(trace.best)])
    assert np.all(np.diff(trace.infeasible) >= 0)
    # With an exact prediction, realistic random-feasible is exact random-feasible.
    if name == "random-feasible":
        exact = run_strategy(name, table, cap, 40, seed=1, mode="exact")
        same = run_strategy(name, table, cap, 40, seed=1, mode="realistic", latency_error=0.0)
        np.testing.assert_array_equal(exact.best, same.best)
        assert exact.infeasible[-1] == 0


def test_a_seed_without_a_feasible_architecture_has_no_regret(table_csv: Path) -> None:
    # Plain Optuna at a cap only 1% of the table meets, two trainings: most seeds train
    # nothing feasible. They are counted in feasible_share, not scored as 0% accuracy.
    table = load_table(table_csv)
    cap = float(np.quantile(table.latency_ms, 0.01))
    result = benchmark(table, cap, 2, 6, ["optuna-tpe"], mode="exact")
    cell = result["strategies"]["optuna-tpe"]["2"]
    found = [b for b in cell["best_per_seed"] if b is not None]
    assert len(cell["best_per_seed"]) == 6 and cell["feasible_share"] == len(found) / 6 < 1
    if found:
        regret = [result["optimum"] - b for b in found]
        assert cell["mean_regret"] == pytest.approx(np.mean(regret), abs=1e-4)
        low, high = cell["ci95"]
        assert low <= cell["mean_regret"] <= high
    else:
        assert cell["mean_regret"] is None and cell["ci95"] is None


def test_mean_interval_is_a_bootstrap_interval_of_the_mean() -> None:
    values = np.array([0.0, 0.5, 1.0, 1.5, 4.0, 0.2, 0.3, 2.0])
    low, high = mean_interval(values)
    assert low < values.mean() < high
    assert high - low < values.max() - values.min()
    assert mean_interval(values) == (low, high)  # seeded
    assert mean_interval(np.array([2.0, 2.0])) == (2.0, 2.0)


def test_plain_optuna_spends_trainings_on_infeasible_candidates(table_csv: Path) -> None:
    table = load_table(table_csv)
    cap = float(np.quantile(table.latency_ms, 0.1))
    trace = run_strategy("optuna-tpe", table, cap, 30, seed=0, mode="exact")
    assert trace.infeasible[-1] > 0


def test_guided_beats_random_on_a_structured_table(table_csv: Path) -> None:
    """Not a benchmark (that is benchmarks/nb201_strategies.py): a sanity check that the
    surrogate learns the table's structure, on three seeds."""
    table = load_table(table_csv)
    cap = float(np.quantile(table.latency_ms, 0.3))
    optimum = table.optimum(cap)

    def regret(name: str) -> float:
        return float(np.mean([optimum - run_strategy(name, table, cap, 40, s, mode="exact").best[-1]
                              for s in range(3)]))  # fmt: skip

    assert regret("guided") < regret("random-feasible")


def _table_with(rows: list[tuple[str, float, float]], path: Path) -> NB201Table:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "arch", "accuracy", "latency_ms"])
        for i, (arch, acc, lat) in enumerate(rows):
            w.writerow([i, arch, acc, lat])
    return load_table(path)


def _advantage(name: str, tables: list[NB201Table], cap: float) -> tuple[float, float]:
    """Mean and standard error of the strategy's best accuracy minus random-feasible's after
    30 trainings, one seed per table; exact mode, where a strategy knows the most."""
    diff = np.array([
        run_strategy(name, t, cap, 30, seed, mode="exact").best[-1]
        - run_strategy("random-feasible", t, cap, 30, seed, mode="exact").best[-1]
        for seed, t in enumerate(tables)
    ])  # fmt: skip
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


@pytest.mark.parametrize("name", ["guided", "tpe"])
def test_a_strategy_on_shuffled_accuracies_does_no_better_than_random(
    name: str, tmp_path: Path
) -> None:
    # Accuracies permuted among the feasible architectures (a new permutation per seed): no
    # feature of an architecture says anything about its accuracy any more. A strategy that
    # learns only from what it trained then finds the best of 30 distinct feasible draws, as
    # random-feasible does; one that read the table would stand out.
    rows = _nb201_rows()
    latency = np.array([lat for _, _, lat in rows])
    cap = float(np.quantile(latency, 0.3))
    feasible = np.flatnonzero(latency <= cap)
    structured = _table_with(rows, tmp_path / "structured.csv")
    shuffled = []
    for seed in range(10):
        accuracy = np.array([acc for _, acc, _ in rows])
        accuracy[feasible] = np.random.default_rng(seed).permutation(accuracy[feasible])
        mixed = [(arch, float(a), lat) for (arch, _, lat), a in zip(rows, accuracy, strict=True)]
        shuffled.append(_table_with(mixed, tmp_path / f"shuffled{seed}.csv"))
    mean, se = _advantage(name, shuffled, cap)
    assert mean < 3 * se, f"{name} beat random by {mean:.2f} ± {se:.2f} on shuffled accuracies"
    if name == "guided":
        # The same measure sees the advantage where there is structure to learn.
        mean, se = _advantage(name, [structured] * 10, cap)
        assert mean > 3 * se


def test_nb201_space_round_trips_benchmark_strings() -> None:
    space = nb201_space()
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    params = space.encode(arch)
    assert params["e10"] == "nor_conv_3x3" and params["e32"] == "nor_conv_3x3"
    assert str(space.decode(params)) == arch
    with pytest.raises(ConfigError, match="OPERATION~1"):
        NB201Cell.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~0|")
    with pytest.raises(ConfigError, match="sep_conv"):
        space.encode(arch.replace("none", "sep_conv"))


def test_table_errors_name_the_column_and_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("index,arch,acc,latency_ms\n0,x,1,1\n")
    with pytest.raises(ConfigError, match="accuracy"):
        load_table(bad)
    bad.write_text(
        "index,arch,accuracy,latency_ms\n0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,50,fast\n"
    )
    with pytest.raises(ConfigError, match="line 2"):
        load_table(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_table(tmp_path / "missing.csv")


def test_bench_cli_prints_the_json_figures(table_csv: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "nb201", "--table", str(table_csv), "--max-latency", "12ms", "--budget", "30",
         "--seeds", "2", "--strategies", "guided,optuna-tpe,random-feasible", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["optimum"] == load_table(table_csv).optimum(12.0)
    assert set(figures["strategies"]) == {"guided", "optuna-tpe", "random-feasible"}
    for by_checkpoint in figures["strategies"].values():
        assert set(by_checkpoint) == {"25", "30"}
        for cell in by_checkpoint.values():
            assert set(cell) >= {"mean_regret", "median_regret", "found_optimum",
                                 "infeasible_trainings", "ci95", "feasible_share"}  # fmt: skip
            assert 0 <= cell["found_optimum"] <= cell["feasible_share"] <= 1
            if cell["mean_regret"] is not None:
                low, high = cell["ci95"]
                assert 0 <= low <= cell["mean_regret"] <= high
    assert figures["mode"] == "realistic" and figures["latency_error"] == LATENCY_ERROR


def test_bench_cli_names_an_unknown_strategy(table_csv: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["bench", "nb201", "--table", str(table_csv), "--max-latency", "12", "--seeds", "1",
         "--strategies", "magic"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "magic" in result.output and "guided" in result.output


def test_search_refuses_the_nb201_space_and_says_where_it_belongs() -> None:
    from edgenas.space import load_space

    with pytest.raises(ConfigError, match="edgenas bench nb201"):
        load_space("nb201")


@pytest.mark.parametrize("name", ["guided", "evolution", "reinforce", "random", "tpe", "nsga2"])
def test_two_objectives_accuracy_and_latency(name: str) -> None:
    space = edge_space(max_depth=2)

    def check(params: Mapping[str, Any]) -> Check:
        return Check(_edge_check(params).feasible, _latency(params))

    def _latency(params: Mapping[str, Any]) -> float:
        return float(params["res"]) / 64 + int(params["s5.width"]) / 100

    sampler = make_sampler(name, space, 0, True, check=check, cheap_check=True)
    study = optuna.create_study(sampler=sampler, directions=["maximize", "minimize"])
    seen = []
    for _ in range(25):
        trial = study.ask(space.distributions())
        assert check(trial.params).feasible
        seen.append(str(space.decode(trial.params)))
        study.tell(trial, [_edge_accuracy(trial.params), _latency(trial.params)])
    assert len(set(seen)) == len(seen)  # no architecture trained twice


def test_redrawn_candidates_are_counted_on_the_trials() -> None:
    from edgenas.study._records import REDRAWN_ATTR

    _, study = _drive("random", 0, 15)
    redrawn = sum(t.system_attrs.get(REDRAWN_ATTR, 0) for t in study.get_trials())
    assert redrawn > 0  # two thirds of the edge space fail _edge_check
