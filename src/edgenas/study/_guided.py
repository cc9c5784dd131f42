"""edgenas's predictor-guided strategy: a surrogate of accuracy ranks many candidates, the cost
model filters them, and only the most promising feasible one is trained."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.study import Study

from edgenas.study._samplers import (
    Params,
    PastTrial,
    StrategyContext,
    WholeSampler,
    learnable,
    tried_keys,
)
from edgenas.study._surrogate import GaussianProcess, expected_improvement, normal_scores

__all__ = ["ENUMERATE", "GuidedSampler"]

#: Spaces with at most this many combinations are ranked whole by the guided strategy.
ENUMERATE = 20_000


class GuidedSampler(WholeSampler):
    """edgenas's predictor-guided search: many candidates, few trainings.

    After ``startup`` random feasible candidates, each proposal fits a Gaussian-process
    surrogate of accuracy to the completed trials (on the space's feature vectors, with
    rank-normalised targets), generates candidates by mutating the best trials (every one-choice
    neighbour of the top few, and two-choice mutations) plus random draws, ranks them by
    expected improvement, and proposes the first that the cost model predicts feasible and
    that was not tried. Only promising feasible candidates are trained.

    With two objectives (accuracy and latency), each proposal draws a latency budget among
    the trained candidates' latencies and improves the best accuracy within it, so the front
    fills from fast to accurate.
    """

    def __init__(
        self,
        ctx: StrategyContext,
        startup: int = 10,
        parents: int = 5,
        random_candidates: int = 400,
        mutations_per_parent: int = 60,
    ) -> None:
        super().__init__(ctx)
        self.startup = startup
        self.parents = parents
        self.random_candidates = random_candidates
        self.mutations_per_parent = mutations_per_parent
        self._features: dict[str, np.ndarray] = {}
        self._hyper: tuple[int, float, float] | None = None
        self._every: tuple[list[str], dict[str, Params], np.ndarray] | None = None

    def _x(self, params: Mapping[str, Any], key: str) -> np.ndarray:
        x = self._features.get(key)
        if x is None:
            x = np.asarray(self.ctx.space.features(params), dtype=float)
            self._features[key] = x
        return x

    def _fit(self, x: np.ndarray, y: np.ndarray) -> GaussianProcess:
        """The surrogate; its hyperparameters are chosen again when the data grew by a fifth."""
        n, chosen = len(y), self._hyper
        if chosen is None or n >= 1.2 * chosen[0]:
            gp = GaussianProcess().fit(x, y)
            self._hyper = (n, gp.theta, gp.noise)
            return gp
        return GaussianProcess(chosen[1], chosen[2]).fit(x, y, search=False)

    def _candidates(
        self, parents: list[PastTrial], tried: set[str], rng: np.random.Generator
    ) -> tuple[list[str], Mapping[str, Params], np.ndarray]:
        """Untried candidates (keys, assignments by key, feature rows) for the surrogate."""
        if self.ctx.rank_whole and self.codec.categorical and self.codec.combinations <= ENUMERATE:
            # A small space: the surrogate ranks all of it, not a sample.
            if self._every is None:
                every = (self.codec.from_index(np.array(i)) for i in np.ndindex(*self.codec.sizes))
                params = {self.codec.key(p): p for p in every}
                keys = list(params)
                self._every = (keys, params, np.stack([self._x(params[k], k) for k in keys]))
            keys, params, x = self._every
            keep = np.array(
                [k not in tried and self._checks.get(k, (True,))[0] for k in keys], dtype=bool
            )
            return [k for k, kept in zip(keys, keep, strict=True) if kept], params, x[keep]
        candidates: dict[str, Params] = {}
        for parent in parents:
            around = list(self.codec.neighbours(parent.params))
            if len(around) > self.mutations_per_parent:
                picks = rng.choice(len(around), size=self.mutations_per_parent, replace=False)
                around = [around[int(i)] for i in picks]
            around += self.codec.mutate_many(parent.params, rng, self.mutations_per_parent // 2)
            for p in around:
                candidates.setdefault(self.codec.key(p), p)
        for p in self.codec.random_many(rng, self.random_candidates):
            candidates.setdefault(self.codec.key(p), p)
        keys = [k for k in candidates if k not in tried]
        x = np.stack([self._x(candidates[k], k) for k in keys]) if keys else np.zeros((0, 0))
        return keys, candidates, x

    def propose(self, study: Study, history: list[PastTrial], rng: np.random.Generator) -> Params:
        tried = tried_keys(history)
        done = learnable(history)
        if len(done) < self.startup:
            return self.random_feasible(rng, tried)
        budget = math.inf
        pool = done
        if self.ctx.multi_objective and done[0].values is not None and len(done[0].values) > 1:
            costs = sorted({-h.values[1] for h in done if h.values is not None})
            budget = costs[int(rng.integers(len(costs)))] if rng.random() < 0.8 else math.inf
            pool = [h for h in done if h.values is not None and -h.values[1] <= budget] or done
        x = np.stack([self._x(h.params, h.key) for h in done])
        y = np.array([h.score for h in done], dtype=float)
        gp = self._fit(x, normal_scores(y))
        z = dict(zip((h.key for h in done), normal_scores(y), strict=True))
        best = max(z[h.key] for h in pool)

        parents = sorted(pool, key=lambda h: z[h.key], reverse=True)[: self.parents]
        keys, candidates, x_new = self._candidates(parents, tried, rng)
        if not keys:
            return self.random_feasible(rng, tried)
        mean, std = gp.predict(x_new)
        score = expected_improvement(mean, std, best)
        order = np.lexsort((-mean, -score))  # by EI, ties by the mean
        ranked = (candidates[keys[int(i)]] for i in order)

        def within(params: Params, latency: float) -> bool:
            return not latency > budget  # NaN (not known) passes

        chosen = self.first_acceptable(ranked, tried, accept=within)
        return chosen or self.random_feasible(rng, tried)
