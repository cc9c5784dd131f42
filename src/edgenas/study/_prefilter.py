"""Optuna's own samplers made to redraw proposals the cost model predicts infeasible."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from edgenas.study._samplers import JointSampler, Params, Redraws, StrategyContext

__all__ = ["PrefilteredSampler"]


class PrefilteredSampler(JointSampler):
    """An Optuna sampler whose proposals are redrawn while the cost model predicts them
    infeasible or they repeat an architecture already tried (a few times; then a uniformly
    drawn feasible, untried candidate), then proposed whole.

    Optuna's samplers choose one parameter at a time; this wrapper asks the wrapped sampler
    for its joint proposal (``sample_relative``) and completes it label by label
    (``sample_independent``), exactly as a trial would, checks it, and tries again with the
    sampler's advanced random state when it breaks a limit.
    """

    REDRAWS = 8  # each redraw runs the wrapped sampler's model again

    def __init__(self, inner: BaseSampler, ctx: StrategyContext) -> None:
        super().__init__(ctx, inner)
        self._checks: dict[str, bool] = {}

    def _feasible(self, params: Params) -> bool:
        assert self.ctx.check is not None
        key = self.codec.key(params)
        if key not in self._checks:
            self._checks[key] = bool(self.ctx.check(params)[0])
        return self._checks[key]

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space or self.ctx.check is None:
            return {}
        inner_space = self.delegate.infer_relative_search_space(study, trial)
        tried = {
            self.codec.key(t.params)
            for t in study.get_trials(deepcopy=False)
            if t.params and all(k in t.params for k in self.codec.labels)
        }
        first: Params | None = None
        redraws = Redraws(study, trial)
        for _ in range(min(self.ctx.max_redraws, self.REDRAWS)):
            params = dict(self.delegate.sample_relative(study, trial, inner_space))
            for label, dist in self.codec.dists.items():
                if label not in params:
                    params[label] = self.delegate.sample_independent(study, trial, label, dist)
            first = first or params
            if self.codec.key(params) not in tried:
                if self._feasible(params):
                    redraws.note()
                    return params
                redraws.add()
        # The sampler keeps proposing infeasible or tried candidates: a uniform feasible one
        # instead (the sampler learns from it like from its own).
        rng = np.random.default_rng([self.ctx.seed & 0xFFFFFFFF, trial.number])
        for _ in range(self.ctx.max_checks * 4):
            params = self.codec.random(rng)
            if self.codec.key(params) not in tried:
                if self._feasible(params):
                    redraws.note()
                    return params
                redraws.add()
        redraws.note()
        return first or {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.delegate.before_trial(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.delegate.after_trial(study, trial, state, values)
