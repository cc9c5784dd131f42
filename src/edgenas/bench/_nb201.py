"""Search strategies judged on a tabular benchmark: NAS-Bench-201 with device latencies.

The table answers, for every cell architecture, its accuracy after full training (what a
training would cost to learn) and its latency on a device. A run gives a strategy a budget of
trainings under a latency cap and records the best feasible accuracy after each training;
regret is the best feasible accuracy in the table minus that.

edgenas's strategies run the way ``edgenas search`` runs them: the cost model's check comes
before training, so proposals it finds infeasible and repeats cost no training (the infeasible
ones, and those the strategy redrew itself, are counted as rejected). Two modes say what that
check knows:

* ``realistic`` (the default): what a search on the ``edge`` space with a device profile has.
  The check predicts latency with an error: each architecture's predicted latency is its true
  latency times a log-normal factor (``latency_error`` is the standard deviation of the
  log ratio; one draw per architecture and seed, so every strategy of a seed faces the same
  predictor). Feasibility is judged on the true latency: a candidate predicted feasible that
  is not wastes its training, and one predicted infeasible that is not is never trained. No
  strategy ranks the space whole (a real space is far too large for that).
* ``exact``: the check knows every latency exactly, and the guided strategy ranks spaces of
  up to 20,000 combinations whole, as it would on a space that small. A bound on what the
  check can give, not what a search gets.

Three references run beside them, as a user would run them without edgenas:

* ``optuna-tpe`` and ``optuna-nsga2``: Optuna's samplers with their defaults, the latency
  limit passed to Optuna as a constraint; every proposal is trained, repeats and infeasible
  ones included (the constraint, measured, is only known to Optuna after the trial);
* ``random-feasible``: uniform draws without replacement among the architectures the check
  finds feasible (in ``realistic`` mode, those predicted feasible).

A seed that has not yet trained a feasible architecture has no regret: it is counted in
``feasible_share``, not scored as 0% accuracy.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from edgenas.errors import ConfigError
from edgenas.space import NB201_OPS, NB201Cell, NB201Space
from edgenas.study import REDRAWN_ATTR, STRATEGIES, Check, make_sampler

#: Trainings after which regret is reported.
CHECKPOINTS: tuple[int, ...] = (25, 50, 100, 200)
#: Strategies as a user would run them without edgenas.
REFERENCES: tuple[str, ...] = ("optuna-tpe", "optuna-nsga2", "random-feasible")
#: What the check before training knows (see the module's docstring).
MODES: tuple[str, ...] = ("realistic", "exact")
#: Standard deviation of log(predicted / true latency) in ``realistic`` mode: the latency
#: predictor's error on its first check on a fresh seed (2026-12-04: 100 random ``edge``
#: architectures, 1 thread, mean absolute error 12.7%, this shared machine's drift included;
#: BENCHMARKS.md, latency_predictor).
LATENCY_ERROR = 0.108
_COLUMNS = ("index", "arch", "accuracy", "latency_ms")


@dataclass(frozen=True)
class NB201Table:
    """Accuracy (%) and latency (ms) per architecture string."""

    path: str
    archs: tuple[str, ...]
    accuracy: np.ndarray
    latency_ms: np.ndarray
    space: NB201Space

    def __post_init__(self) -> None:
        object.__setattr__(self, "_row", {a: i for i, a in enumerate(self.archs)})

    def row(self, arch: str) -> int | None:
        return self._row.get(arch)  # type: ignore[attr-defined]

    def feasible(self, max_latency_ms: float) -> np.ndarray:
        return np.flatnonzero(self.latency_ms <= max_latency_ms)

    def optimum(self, max_latency_ms: float) -> float:
        rows = self.feasible(max_latency_ms)
        if not len(rows):
            raise ConfigError(
                f"no architecture of {self.path} has latency ≤ {max_latency_ms:g} ms (the "
                f"fastest takes {self.latency_ms.min():.3g} ms); raise --max-latency"
            )
        return float(self.accuracy[rows].max())


def load_table(path: Path | str) -> NB201Table:
    """Read a CSV with the columns ``index,arch,accuracy,latency_ms``.

    The space is derived from the table: its operations are those the architecture strings
    use, so a table of another cell benchmark in the same notation works too. Architectures of
    the space that the table lacks are treated as unknown: never trained, counted as rejected.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"--table {path}: no such file; give a CSV with the columns {','.join(_COLUMNS)}"
        )
    archs: list[str] = []
    accuracy: list[float] = []
    latency: list[float] = []
    ops: list[str] = []
    nodes = None
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise ConfigError(
                f"--table {path}: the column(s) {', '.join(missing)} are missing; it needs "
                f"{','.join(_COLUMNS)} (found {','.join(reader.fieldnames or ()) or 'none'})"
            )
        for line, row in enumerate(reader, start=2):
            try:
                cell = NB201Cell.parse(row["arch"] or "")
                acc = float(row["accuracy"])
                lat = float(row["latency_ms"])
            except (ConfigError, ValueError, TypeError) as exc:
                raise ConfigError(f"--table {path}, line {line}: {exc}") from None
            if not (math.isfinite(acc) and math.isfinite(lat)) or lat < 0:
                raise ConfigError(
                    f"--table {path}, line {line}: accuracy and latency_ms must be finite "
                    "numbers, latency not negative"
                )
            if nodes is None:
                nodes = cell.nodes
            elif cell.nodes != nodes:
                raise ConfigError(
                    f"--table {path}, line {line}: a cell of {cell.nodes} nodes among cells "
                    f"of {nodes}"
                )
            ops.extend(op for op in cell.ops if op not in ops)
            archs.append(str(cell))
            accuracy.append(acc)
            latency.append(lat)
    if not archs:
        raise ConfigError(f"--table {path} has no rows")
    if len(set(archs)) != len(archs):
        raise ConfigError(f"--table {path} lists an architecture twice; keep one row for each")
    order = [op for op in NB201_OPS if op in ops] + [op for op in ops if op not in NB201_OPS]
    space = NB201Space(tuple(order), nodes or 4) if len(order) >= 2 else NB201Space()
    return NB201Table(str(path), tuple(archs), np.array(accuracy), np.array(latency), space)


@dataclass(frozen=True)
class RunTrace:
    """One strategy, one seed: the best feasible accuracy after each training."""

    best: np.ndarray  # length budget; NaN until a feasible architecture was trained
    infeasible: np.ndarray  # cumulative trainings spent on infeasible candidates
    rejected: int  # proposals the check turned away before training (not trainings)
    seconds: float


def predicted_latency(table: NB201Table, seed: int, latency_error: float) -> np.ndarray:
    """What a latency predictor with a log-normal error says of every architecture of the
    table, for one seed: the same draw for every strategy run with that seed."""
    if latency_error == 0:
        return table.latency_ms
    noise = np.random.default_rng([seed, 201]).standard_normal(len(table.archs))
    return table.latency_ms * np.exp(latency_error * noise)


def _check_mode(mode: str, latency_error: float) -> None:
    if mode not in MODES:
        raise ConfigError(f"--mode {mode!r} is unknown; choose {' or '.join(MODES)}")
    if not (math.isfinite(latency_error) and 0 <= latency_error <= 2):
        raise ConfigError(
            f"--latency-error must be between 0 and 2 (the standard deviation of the log of "
            f"predicted over true latency), got {latency_error:g}; {LATENCY_ERROR} is the "
            "predictor's measured error"
        )


def run_strategy(
    name: str,
    table: NB201Table,
    max_latency_ms: float,
    budget: int,
    seed: int,
    *,
    mode: str = "realistic",
    latency_error: float = LATENCY_ERROR,
) -> RunTrace:
    """Run one strategy for ``budget`` trainings against the table, in ``mode``."""
    _check_mode(mode, latency_error)
    started = time.perf_counter()
    realistic = mode == "realistic"
    known = predicted_latency(table, seed, latency_error) if realistic else table.latency_ms
    if name == "random-feasible":
        rows = np.flatnonzero(known <= max_latency_ms)
        rng = np.random.default_rng(seed)
        picks = rng.permutation(rows)[:budget]
        truly = table.latency_ms[picks] <= max_latency_ms
        found = np.where(truly, table.accuracy[picks], -np.inf)
        best = np.maximum.accumulate(found) if len(picks) else np.array([])
        best = np.where(np.isfinite(best), best, np.nan)
        spent_on_infeasible = np.cumsum(~truly).astype(float)
        pad = budget - len(picks)
        last = spent_on_infeasible[-1] if len(picks) else 0.0
        best = np.concatenate([best, np.full(pad, best[-1] if len(best) else np.nan)])
        spent_on_infeasible = np.concatenate([spent_on_infeasible, np.full(pad, last)])
        return RunTrace(best, spent_on_infeasible, 0, time.perf_counter() - started)
    plain = name in ("optuna-tpe", "optuna-nsga2")
    space = table.space
    distributions = space.distributions()

    def lookup(params: dict[str, Any]) -> int | None:
        return table.row(str(space.decode(params)))

    def check(params: Any) -> Check:
        row = lookup(params)
        latency = math.inf if row is None else float(known[row])
        return Check(row is not None and latency <= max_latency_ms, latency)

    if plain:
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.TPESampler(seed=seed)
            if name == "optuna-tpe"
            else optuna.samplers.NSGAIISampler(seed=seed)
        )
    else:
        sampler = make_sampler(
            name, space, seed, multi_objective=False, check=check, cheap_check=True,
            rank_whole=not realistic,
        )  # fmt: skip
    study = optuna.create_study(direction="maximize", sampler=sampler)
    best = np.full(budget, np.nan)
    infeasible = np.zeros(budget)
    trained: dict[str, float] = {}
    current, spent, wasted, rejected = -math.inf, 0, 0, 0
    asks_left = 50 * budget + 200  # the runner's bound on proposals in a row that train nothing
    while spent < budget and asks_left > 0:
        asks_left -= 1
        trial = study.ask(distributions)
        arch = str(space.decode(trial.params))
        row = lookup(trial.params)
        if row is None:  # the table cannot answer: never trained
            trial.set_constraint("latency", 1e9)
            rejected += 1
            study.tell(trial, 0.0)
            continue
        true_excess = float(table.latency_ms[row]) - max_latency_ms
        # What the study is told of latency: plain Optuna measures it after training; edgenas's
        # check knows the prediction (exact, in exact mode).
        excess = true_excess if plain else float(known[row]) - max_latency_ms
        trial.set_constraint("latency", excess)
        accuracy = float(table.accuracy[row])
        if not plain and (excess > 0 or arch in trained):
            # edgenas checks before training: a proposal predicted infeasible is rejected, a
            # repeat is answered from the record; neither costs a training.
            rejected += excess > 0
            study.tell(trial, trained.get(arch, 0.0) / 100.0)
            continue
        trained[arch] = accuracy
        if true_excess > 0:
            wasted += 1
        elif accuracy > current:
            current = accuracy
        best[spent] = current if math.isfinite(current) else np.nan
        infeasible[spent] = wasted
        spent += 1
        study.tell(trial, accuracy / 100.0)
    # Candidates the strategy itself redrew because the check rejected them count too.
    rejected += sum(
        int(t.system_attrs.get(REDRAWN_ATTR, 0)) for t in study.get_trials(deepcopy=False)
    )
    if spent < budget:  # the strategy gave up proposing: its best stays
        best[spent:] = best[spent - 1] if spent else np.nan
        infeasible[spent:] = wasted
    return RunTrace(best, infeasible, rejected, time.perf_counter() - started)


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean (2,000 resamples, seeded): the same values
    give the same interval."""
    from scipy import stats

    if len(values) < 2 or np.ptp(values) == 0:
        return float(np.mean(values)), float(np.mean(values))
    result = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=2000,
        method="percentile", rng=np.random.default_rng(0),
    )  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _summary(
    traces: Sequence[RunTrace], optimum: float, checkpoints: Sequence[int]
) -> dict[str, dict[str, Any]]:
    out = {}
    for c in checkpoints:
        found = np.array([t.best[c - 1] for t in traces])
        some = ~np.isnan(found)
        regret = optimum - found[some]  # seeds with no feasible architecture yet have none
        scored = bool(some.any())
        interval = [round(v, 4) for v in mean_interval(regret)] if scored else None
        out[str(c)] = {
            "mean_regret": round(float(regret.mean()), 4) if scored else None,
            "median_regret": round(float(np.median(regret)), 4) if scored else None,
            "ci95": interval,
            "feasible_share": round(float(some.mean()), 4),
            "found_optimum": round(float(np.mean(some & (np.abs(optimum - found) < 1e-9))), 4),
            "infeasible_trainings": round(float(np.mean([t.infeasible[c - 1] for t in traces])), 3),
            # Per seed, in seed order: the best feasible accuracy trained (None: none yet), for
            # paired comparisons between strategies.
            "best_per_seed": [None if np.isnan(f) else round(float(f), 4) for f in found],
        }
    return out


def benchmark(
    table: NB201Table,
    max_latency_ms: float,
    budget: int,
    seeds: int,
    strategies: Sequence[str],
    progress: Callable[[str, int], None] | None = None,
    *,
    mode: str = "realistic",
    latency_error: float = LATENCY_ERROR,
) -> dict[str, Any]:
    """Every strategy for ``seeds`` seeds; the figures ``edgenas bench nb201 --json`` prints."""
    _check_mode(mode, latency_error)
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1 training, got {budget}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    unknown = [s for s in strategies if s not in STRATEGIES and s not in REFERENCES]
    if unknown:
        raise ConfigError(
            f"strategy {', '.join(unknown)} unknown; choose from "
            f"{', '.join([*sorted(STRATEGIES), *REFERENCES])}"
        )
    optimum = table.optimum(max_latency_ms)
    checkpoints = sorted({c for c in CHECKPOINTS if c <= budget} | {budget})
    result: dict[str, Any] = {
        "optimum": optimum,
        "table": table.path,
        "max_latency_ms": max_latency_ms,
        "feasible_architectures": len(table.feasible(max_latency_ms)),
        "architectures": len(table.archs),
        "budget": budget,
        "seeds": seeds,
        "mode": mode,
        "latency_error": latency_error if mode == "realistic" else 0.0,
        "strategies": {},
        "rejected": {},
        "seconds": {},
    }
    for name in strategies:
        traces = []
        for seed in range(seeds):
            trace = run_strategy(
                name, table, max_latency_ms, budget, seed, mode=mode, latency_error=latency_error
            )
            traces.append(trace)
            if progress:
                progress(name, seed)
        result["strategies"][name] = _summary(traces, optimum, checkpoints)
        result["rejected"][name] = round(float(np.mean([t.rejected for t in traces])), 2)
        result["seconds"][name] = round(float(np.median([t.seconds for t in traces])), 3)
    return result
