"""Search strategies judged on a tabular benchmark: NAS-Bench-201 with device latencies.

The table answers, for every cell architecture, its accuracy after full training (what a
training would cost to learn) and its latency on a device (what a device profile predicts for
free). A run gives a strategy a budget of trainings under a latency cap and records the best
feasible accuracy after each training; regret is the best feasible accuracy in the table minus
that.

edgenas's strategies run the way ``edgenas search`` runs them: the cost model's check comes
before training, so infeasible proposals and repeats cost no training (the infeasible ones,
and those the strategy redrew itself, are counted as rejected). Three references run beside them, as a user would run them without edgenas:

* ``optuna-tpe`` and ``optuna-nsga2``: Optuna's samplers with their defaults, the latency
  limit passed to Optuna as a constraint; every proposal is trained, repeats and infeasible
  ones included (the constraint is only known to Optuna after the trial);
* ``random-feasible``: uniform draws without replacement among the feasible architectures.
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


def run_strategy(
    name: str, table: NB201Table, max_latency_ms: float, budget: int, seed: int
) -> RunTrace:
    """Run one strategy for ``budget`` trainings against the table."""
    started = time.perf_counter()
    if name == "random-feasible":
        rows = table.feasible(max_latency_ms)
        rng = np.random.default_rng(seed)
        picks = rng.permutation(rows)[:budget]
        best = np.maximum.accumulate(table.accuracy[picks])
        best = np.concatenate(
            [best, np.full(budget - len(best), best[-1] if len(best) else np.nan)]
        )
        return RunTrace(best, np.zeros(budget), 0, time.perf_counter() - started)
    plain = name in ("optuna-tpe", "optuna-nsga2")
    space = table.space
    distributions = space.distributions()

    def lookup(params: dict[str, Any]) -> tuple[int | None, float]:
        row = table.row(str(space.decode(params)))
        return row, (math.inf if row is None else float(table.latency_ms[row]))

    def check(params: Any) -> Check:
        row, latency = lookup(params)
        return Check(row is not None and latency <= max_latency_ms, latency)

    if plain:
        sampler: optuna.samplers.BaseSampler = (
            optuna.samplers.TPESampler(seed=seed)
            if name == "optuna-tpe"
            else optuna.samplers.NSGAIISampler(seed=seed)
        )
    else:
        sampler = make_sampler(
            name, space, seed, multi_objective=False, check=check, cheap_check=True
        )
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
        row, latency = lookup(trial.params)
        excess = latency - max_latency_ms
        trial.set_constraint("latency", excess if math.isfinite(excess) else 1e9)
        if row is None:  # the table cannot answer: never trained
            rejected += 1
            study.tell(trial, 0.0)
            continue
        accuracy = float(table.accuracy[row])
        if not plain and (excess > 0 or arch in trained):
            # edgenas checks before training: an infeasible proposal is rejected, a repeat is
            # answered from the record; neither costs a training.
            rejected += excess > 0
            study.tell(trial, trained.get(arch, 0.0) / 100.0)
            continue
        trained[arch] = accuracy
        if excess > 0:
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


def _summary(
    traces: Sequence[RunTrace], optimum: float, checkpoints: Sequence[int]
) -> dict[str, dict[str, float]]:
    out = {}
    for c in checkpoints:
        found = np.array([t.best[c - 1] for t in traces])
        regret = optimum - np.where(np.isnan(found), 0.0, found)
        out[str(c)] = {
            "mean_regret": round(float(regret.mean()), 4),
            "median_regret": round(float(np.median(regret)), 4),
            "found_optimum": round(float(np.mean(np.abs(regret) < 1e-9)), 4),
            "infeasible_trainings": round(float(np.mean([t.infeasible[c - 1] for t in traces])), 3),
        }
    return out


def benchmark(
    table: NB201Table,
    max_latency_ms: float,
    budget: int,
    seeds: int,
    strategies: Sequence[str],
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    """Every strategy for ``seeds`` seeds; the figures ``edgenas bench nb201 --json`` prints."""
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
        "strategies": {},
        "rejected": {},
        "seconds": {},
    }
    for name in strategies:
        traces = []
        for seed in range(seeds):
            traces.append(run_strategy(name, table, max_latency_ms, budget, seed))
            if progress:
                progress(name, seed)
        result["strategies"][name] = _summary(traces, optimum, checkpoints)
        result["rejected"][name] = round(float(np.mean([t.rejected for t in traces])), 2)
        result["seconds"][name] = round(float(np.median([t.seconds for t in traces])), 3)
    return result
