"""edgenas's own strategies, as Optuna samplers that propose a whole assignment at once.

Each proposal is derived from the study's trials and a random generator seeded with
``(seed, trial number)``, so the same seed gives the same proposals, and a search resumed from
its storage learns from every trial it holds (nothing lives only in memory but caches).

All of them use the strategy context's ``check`` (the cost model's verdict before training):
an assignment whose predicted costs break a constraint, or whose architecture was tried already,
is redrawn, up to ``max_redraws`` times. The runner still checks every proposal, so nothing
infeasible is trained even when the redraws run out.

This module holds what they share (:class:`WholeSampler`) and the strategies that fit on a page
(random, grid, regularized evolution, REINFORCE); the guided strategy is in ``_guided``, and the
wrapper that makes Optuna's own samplers redraw is in ``_prefilter``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from edgenas.errors import ConfigError
from edgenas.study._pareto import non_dominated
from edgenas.study._records import REDRAWN_ATTR
from edgenas.study._trials import set_system_attr

__all__ = [
    "Codec",
    "EvolutionSampler",
    "GridSampler",
    "JointSampler",
    "Params",
    "PastTrial",
    "RandomFeasibleSampler",
    "Redraws",
    "ReinforceSampler",
    "StrategyContext",
    "WholeSampler",
    "learnable",
    "note_redrawn",
    "tried_keys",
]

Params = dict[str, Any]


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy knows before it proposes anything."""

    space: Any  # a SearchSpace
    seed: int
    multi_objective: bool = False
    # The cost model's verdict on an assignment before training: (feasible, latency_ms).
    check: Callable[[Mapping[str, Any]], Any] | None = None
    max_redraws: int = 64  # assignments checked per proposal before proposing anyway
    # Whether a check is cheap (a prediction or a table) rather than a measurement: strategies
    # may then check a hundred times more candidates per proposal.
    cheap_check: bool = False
    # Whether a strategy may rank a small space whole rather than a sample of it (the guided
    # strategy does, up to ``ENUMERATE`` combinations). A benchmark turns it off to judge a
    # strategy as it runs on spaces too large for that, such as ``edge``.
    rank_whole: bool = True

    @property
    def max_checks(self) -> int:
        return self.max_redraws * (100 if self.cheap_check else 1)


@dataclass
class PastTrial:
    """A trial a strategy learns from."""

    number: int
    params: Params
    key: str
    score: float | None  # first objective, higher is better; None: no value (pruned, failed)
    values: tuple[float, ...] | None  # every objective, each oriented so higher is better
    feasible: bool


def _violated(trial: FrozenTrial) -> bool:
    return any(
        float(v) > 0
        for k, v in trial.system_attrs.items()
        if k.startswith("constraints:") and v is not None
    ) or any(float(v) > 0 for v in trial.system_attrs.get("constraints", ()) or ())


class Codec:
    """Draws, mutates and names assignments of a space's distributions."""

    def __init__(self, space: Any) -> None:
        self.space = space
        self.dists: dict[str, BaseDistribution] = space.distributions()
        self.labels = list(self.dists)
        # Labels worth mutating: those with more than one value.
        self.mutable = [k for k, d in self.dists.items() if _size(d) != 1]
        self._keys: dict[tuple[Any, ...], str] = {}
        self.categorical = all(isinstance(d, CategoricalDistribution) for d in self.dists.values())
        self.choices = {
            k: list(d.choices)
            for k, d in self.dists.items()
            if isinstance(d, CategoricalDistribution)
        }
        self.sizes = np.array([len(self.choices.get(k, ())) for k in self.labels])
        # How many assignments there are (Python ints: no overflow); inf with numeric choices.
        self.combinations = math.prod(int(n) for n in self.sizes) if self.categorical else math.inf
        self._mutable_idx = np.array([self.labels.index(k) for k in self.mutable], dtype=int)

    def key(self, params: Mapping[str, Any]) -> str:
        """The architecture an assignment describes (equal for assignments that decode alike)."""
        t = tuple(params[k] for k in self.labels)
        key = self._keys.get(t)
        if key is None:
            key = str(self.space.decode(params))
            if len(self._keys) < 200_000:
                self._keys[t] = key
        return key

    def random(self, rng: np.random.Generator) -> Params:
        return {k: _draw(d, rng) for k, d in self.dists.items()}

    def mutate(self, params: Mapping[str, Any], rng: np.random.Generator, genes: int = 1) -> Params:
        child = dict(params)
        if not self.mutable:
            return child
        labels = rng.choice(len(self.mutable), size=min(genes, len(self.mutable)), replace=False)
        for i in labels:
            label = self.mutable[int(i)]
            child[label] = _other(self.dists[label], child[label], rng)
        return child

    def neighbours(self, params: Mapping[str, Any]) -> Iterator[Params]:
        """Every assignment one categorical choice away."""
        for label in self.mutable:
            dist = self.dists[label]
            if not isinstance(dist, CategoricalDistribution):
                continue
            for value in dist.choices:
                if value != params[label]:
                    yield {**params, label: value}

    def random_many(self, rng: np.random.Generator, n: int) -> list[Params]:
        """``n`` uniform draws (vectorised when every choice is categorical)."""
        if not self.categorical:
            return [self.random(rng) for _ in range(n)]
        index = rng.integers(0, self.sizes, size=(n, len(self.labels)))
        return [self.from_index(row) for row in index]

    def mutate_many(
        self, params: Mapping[str, Any], rng: np.random.Generator, n: int, genes: int = 2
    ) -> list[Params]:
        """``n`` mutations of ``genes`` choices each (vectorised when categorical)."""
        if not self.categorical or not self.mutable:
            return [self.mutate(params, rng, genes) for _ in range(n)]
        base = np.array([self.choices[k].index(params[k]) for k in self.labels])
        rows = np.repeat(base[None, :], n, axis=0)
        genes = min(genes, len(self._mutable_idx))
        picks = np.argsort(rng.random((n, len(self._mutable_idx))), axis=1)[:, :genes]
        cols = self._mutable_idx[picks]
        sizes = self.sizes[cols]
        shift = 1 + np.floor(rng.random(cols.shape) * (sizes - 1)).astype(int)
        np.put_along_axis(rows, cols, (np.take_along_axis(rows, cols, 1) + shift) % sizes, 1)
        return [self.from_index(row) for row in rows]

    def from_index(self, row: np.ndarray) -> Params:
        return {k: self.choices[k][int(i)] for k, i in zip(self.labels, row, strict=True)}


def _size(dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step + 1
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        return math.floor((dist.high - dist.low) / dist.step) + 1
    return math.inf


def _draw(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            x = rng.uniform(math.log(dist.low), math.log(dist.high))
            return int(min(dist.high, round(math.exp(x))))
        return int(dist.low + dist.step * rng.integers((dist.high - dist.low) // dist.step + 1))
    if isinstance(dist, FloatDistribution):
        if dist.log:
            return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
        if dist.step is not None:
            n = math.floor((dist.high - dist.low) / dist.step)
            return float(dist.low + dist.step * rng.integers(n + 1))
        return float(rng.uniform(dist.low, dist.high))
    raise ConfigError(f"distribution {dist!r} is not supported by edgenas's strategies")


def _other(dist: BaseDistribution, value: Any, rng: np.random.Generator) -> Any:
    """A different value of the same choice (a categorical's other choice, a numeric step)."""
    if isinstance(dist, CategoricalDistribution):
        others = [c for c in dist.choices if c != value]
        return others[int(rng.integers(len(others)))] if others else value
    if isinstance(dist, (IntDistribution, FloatDistribution)):
        lo, hi = float(dist.low), float(dist.high)
        log = dist.log
        x = math.log(value) if log else float(value)
        a, b = (math.log(lo), math.log(hi)) if log else (lo, hi)
        x = min(b, max(a, x + rng.normal(0.0, 0.2 * (b - a))))
        out = math.exp(x) if log else x
        if isinstance(dist, IntDistribution):
            return int(
                min(dist.high, max(dist.low, dist.low + round((out - lo) / dist.step) * dist.step))
            )
        if dist.step is not None:
            return float(min(hi, lo + round((out - lo) / dist.step) * dist.step))
        return float(out)
    return value


class JointSampler(BaseSampler):
    """Proposes every label of the space at once (``sample_relative``) and leaves the
    single-label draws Optuna may still ask for to ``delegate``."""

    def __init__(self, ctx: StrategyContext, delegate: BaseSampler) -> None:
        self.ctx = ctx
        self.codec = Codec(ctx.space)
        self.delegate = delegate

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return dict(self.codec.dists)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self.delegate.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self.delegate.reseed_rng()


class WholeSampler(JointSampler):
    """edgenas's own strategies: subclasses write :meth:`propose`; single labels are drawn
    uniformly."""

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx, RandomSampler(seed=ctx.seed))
        self._checks: dict[str, tuple[bool, float]] = {}
        self._redraws: Redraws | None = None  # those replaced for the current proposal

    # -- Optuna's sampler interface -----------------------------------------------------------
    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        rng = np.random.default_rng([self.ctx.seed & 0xFFFFFFFF, trial.number])
        history = self._history(study)
        self._redraws = Redraws(study, trial)
        params = self.propose(study, history, rng)
        self._redraws.note()
        return params

    # -- for subclasses -----------------------------------------------------------------------
    def propose(self, study: Study, history: list[PastTrial], rng: np.random.Generator) -> Params:
        raise NotImplementedError

    def _history(self, study: Study) -> list[PastTrial]:
        signs = [1.0 if d == StudyDirection.MAXIMIZE else -1.0 for d in study.directions]
        out = []
        for t in study.get_trials(deepcopy=False):
            if not t.params or any(k not in t.params for k in self.codec.labels):
                continue
            values = None
            if t.state == TrialState.COMPLETE and t.values is not None:
                values = tuple(s * v for s, v in zip(signs, t.values, strict=True))
            out.append(
                PastTrial(
                    t.number,
                    dict(t.params),
                    self.codec.key(t.params),
                    values[0] if values else None,
                    values,
                    not _violated(t),
                )
            )
        return out

    def check(self, params: Mapping[str, Any], key: str | None = None) -> tuple[bool, float]:
        """(feasible, latency_ms) before training, cached per architecture."""
        if self.ctx.check is None:
            return True, math.nan
        key = key or self.codec.key(params)
        verdict = self._checks.get(key)
        if verdict is None:
            result = self.ctx.check(params)
            verdict = (bool(result[0]), float(result[1]))
            self._checks[key] = verdict
        return verdict

    def first_acceptable(
        self,
        candidates: Iterable[Params],
        tried: set[str],
        fallback: Params | None = None,
        accept: Callable[[Params, float], bool] | None = None,
    ) -> Params | None:
        """The first candidate that is new and predicted feasible, within ``max_redraws``."""
        seen: set[str] = set()
        checks = 0
        for params in candidates:
            key = self.codec.key(params)
            if key in tried or key in seen:
                continue
            seen.add(key)
            feasible, latency = self.check(params, key)
            if feasible and (accept is None or accept(params, latency)):
                return params
            if not feasible and self._redraws is not None:
                self._redraws.add()
            checks += 1
            if checks >= self.ctx.max_checks:
                break
        return fallback

    def random_feasible(self, rng: np.random.Generator, tried: set[str]) -> Params:
        draws = (self.codec.random(rng) for _ in range(self.ctx.max_checks * 4))
        first = self.codec.random(rng)
        return self.first_acceptable(draws, tried) or first


def tried_keys(history: Sequence[PastTrial]) -> set[str]:
    """The architectures tried already (never proposed again)."""
    return {h.key for h in history}


def learnable(history: Sequence[PastTrial]) -> list[PastTrial]:
    """Completed, feasible, one per architecture (the first)."""
    out, seen = [], set()
    for h in history:
        if h.score is None or not h.feasible or h.key in seen:
            continue
        seen.add(h.key)
        out.append(h)
    return out


def note_redrawn(study: Study, trial: FrozenTrial, n: int) -> None:
    """Record on the trial how many candidates were replaced as infeasible before it."""
    if n:
        set_system_attr(study, trial, REDRAWN_ATTR, int(n))


class Redraws:
    """The candidates replaced as infeasible before one proposal, recorded on its trial as
    they happen (at most every `EVERY_S` seconds, and at the end), so that ``edgenas show``
    counts them while a proposal takes long (each check may be a latency measurement)."""

    EVERY_S = 2.0

    def __init__(self, study: Study, trial: FrozenTrial) -> None:
        self._study = study
        self._trial = trial
        self.count = 0
        self._noted = 0
        self._at = time.monotonic()

    def add(self) -> None:
        self.count += 1
        if time.monotonic() - self._at >= self.EVERY_S:
            self.note()

    def note(self) -> None:
        """Record the count now (if it changed)."""
        if self.count != self._noted:
            note_redrawn(self._study, self._trial, self.count)
            self._noted = self.count
        self._at = time.monotonic()


class RandomFeasibleSampler(WholeSampler):
    """Uniform draws, redrawn while predicted infeasible or already tried."""

    def propose(self, study: Study, history: list[PastTrial], rng: np.random.Generator) -> Params:
        return self.random_feasible(rng, tried_keys(history))


class GridSampler(WholeSampler):
    """Every combination once, in a seeded random order; skips infeasible and tried ones."""

    LIMIT = 2_000_000

    def __init__(self, ctx: StrategyContext) -> None:
        super().__init__(ctx)
        sizes = []
        for label, dist in self.codec.dists.items():
            if not isinstance(dist, CategoricalDistribution):
                raise ConfigError(
                    f"grid needs every choice categorical; {label} is {type(dist).__name__}. "
                    "Use random, tpe or guided for this space."
                )
            sizes.append(len(dist.choices))
        total = math.prod(sizes)
        if total > self.LIMIT:
            raise ConfigError(
                f"grid would enumerate {total:.3g} combinations of {len(sizes)} choices; it is "
                f"for small spaces (at most {self.LIMIT:,}, such as nb201's 15,625). Narrow the "
                "space (--blocks, --kernels, --max-depth, --resolution) or use another strategy."
            )
        self._sizes = sizes
        self._order = np.random.default_rng(ctx.seed & 0xFFFFFFFF).permutation(total)
        self._cursor = 0  # combinations before it are tried or infeasible

    def _params(self, index: int) -> Params:
        out = {}
        for (label, dist), size in zip(self.codec.dists.items(), self._sizes, strict=True):
            index, i = divmod(index, size)
            out[label] = dist.choices[i]  # type: ignore[attr-defined]
        return out

    def propose(self, study: Study, history: list[PastTrial], rng: np.random.Generator) -> Params:
        tried = tried_keys(history)
        skipped = 0
        while self._cursor < len(self._order):
            params = self._params(int(self._order[self._cursor]))
            key = self.codec.key(params)
            if key not in tried:
                feasible, _ = self.check(params, key)
                if feasible:
                    return params
                skipped += 1
                if skipped > 50 * self.ctx.max_checks:  # bound the checks of one proposal
                    return params
            self._cursor += 1
        return self.codec.random(rng)  # every combination is tried: repeats tell nothing new


class EvolutionSampler(WholeSampler):
    """Regularized evolution (Real et al., 2019): the newest ``population`` trained candidates
    form the population; a tournament of ``tournament`` picks a parent; its child differs in one
    choice. The oldest member ages out, whatever its accuracy, which keeps the search moving.

    With two objectives, the tournament's winner is one that no other entrant dominates.
    """

    def __init__(self, ctx: StrategyContext, population: int = 20, tournament: int = 5) -> None:
        super().__init__(ctx)
        self.population = population
        self.tournament = tournament

    def propose(self, study: Study, history: list[PastTrial], rng: np.random.Generator) -> Params:
        tried = tried_keys(history)
        members = [h for h in history if h.values is not None and h.feasible]
        if len(members) < self.population:
            return self.random_feasible(rng, tried)
        members = members[-self.population :]

        def candidates() -> Iterator[Params]:
            for _ in range(self.ctx.max_checks * 4):
                entrants = rng.choice(len(members), size=self.tournament, replace=False)
                parent = _winner([members[int(i)] for i in entrants], rng)
                yield self.codec.mutate(parent.params, rng)

        # Every child tried or infeasible: a random feasible candidate keeps the search going.
        return self.first_acceptable(candidates(), tried) or self.random_feasible(rng, tried)


def _winner(entrants: list[PastTrial], rng: np.random.Generator) -> PastTrial:
    points = []
    for entrant in entrants:
        assert entrant.values is not None  # the population holds trials with values only
        points.append(entrant.values)
    undominated = [entrants[i] for i in non_dominated(points)]
    best = max(a.values[0] for a in undominated)  # type: ignore[index]
    top = [a for a in undominated if a.values[0] == best]  # type: ignore[index]
    return (
        top[int(rng.integers(len(top)))]
        if len(undominated) == len(top)
        else undominated[int(rng.integers(len(undominated)))]
    )


class ReinforceSampler(WholeSampler):
    """A policy over the choices (independent softmax logits per categorical label), trained
    with REINFORCE (Williams 1992; Zoph & Le 2017) and a moving-average baseline.

    The reward is the first objective. With two objectives (accuracy and latency), it is
    MnasNet's soft latency reward, ``accuracy × (latency / target) ** -0.07``, with the target
    the median latency of the trained candidates. Numeric choices are drawn uniformly.
    The policy is replayed from the study's trials at each proposal, so a resumed search has
    the policy it had.
    """

    def __init__(
        self, ctx: StrategyContext, lr: float = 0.3, decay: float = 0.9, warmup: int = 5
    ) -> None:
        super().__init__(ctx)
        self.lr, self.decay, self.warmup = lr, decay, warmup
        self._cats = {
            k: list(d.choices)
            for k, d in self.codec.dists.items()
            if isinstance(d, CategoricalDistribution)
        }

    def _policy(self, done: list[PastTrial]) -> dict[str, np.ndarray]:
        logits = {k: np.zeros(len(c)) for k, c in self._cats.items()}
        rewards = [self._reward(h, done) for h in done]
        if not rewards:
            return logits
        baseline = rewards[0]
        spread = 0.0
        for i, (h, r) in enumerate(zip(done, rewards, strict=True)):
            advantage = r - baseline
            spread = self.decay * spread + (1 - self.decay) * advantage * advantage
            baseline = self.decay * baseline + (1 - self.decay) * r
            if i < self.warmup:
                continue  # the baseline and spread settle first
            step = self.lr * advantage / (math.sqrt(spread) + 1e-8)
            for label, choices in self._cats.items():
                z = logits[label]
                p = np.exp(z - z.max())
                p /= p.sum()
                grad = -p
                grad[choices.index(h.params[label])] += 1.0
                z += step * grad
        return logits

    def _reward(self, h: PastTrial, done: list[PastTrial]) -> float:
        assert h.values is not None
        if len(h.values) < 2:
            return h.values[0]
        latencies = sorted(-d.values[1] for d in done if d.values is not None)
        target = latencies[len(latencies) // 2] or 1.0
        latency = max(-h.values[1], 1e-9)
        return h.values[0] * (latency / target) ** -0.07

    def propose(self, study: Study, history: list[PastTrial], rng: np.random.Generator) -> Params:
        done = learnable(history)  # a repeated architecture teaches nothing new
        logits = self._policy(done)

        cdfs = {}
        for label, z in logits.items():
            p = np.exp(z - z.max())
            cdfs[label] = np.cumsum(p / p.sum())

        def draws() -> Iterator[Params]:
            for _ in range(0, self.ctx.max_checks * 4, 256):  # in batches of 256
                picks = {
                    label: np.minimum(np.searchsorted(cdf, rng.random(256)), len(cdf) - 1)
                    for label, cdf in cdfs.items()
                }
                for i in range(256):
                    params = (
                        self.codec.random(rng) if len(self._cats) < len(self.codec.dists) else {}
                    )
                    for label, choices in self._cats.items():
                        params[label] = choices[int(picks[label][i])]
                    yield params

        tried = tried_keys(history)
        # A policy that has settled on tried architectures: a random feasible one instead.
        return self.first_acceptable(draws(), tried) or self.random_feasible(rng, tried)
