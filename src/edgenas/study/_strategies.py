"""Search strategies: Optuna samplers built by name through one registry.

A strategy only proposes parameters; it never trains or measures anything. Because they are
Optuna samplers they get storage, resumption and constraint handling from Optuna.

Every strategy is given a :class:`StrategyContext` whose ``check`` tells, before training,
whether an assignment's predicted costs meet the constraints. edgenas's own strategies redraw
what fails it; Optuna's are wrapped so that their proposals are redrawn too. Either way the
runner checks every proposal again and never trains an infeasible one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import optuna

from edgenas.errors import ConfigError
from edgenas.space import SearchSpace
from edgenas.study._guided import GuidedSampler
from edgenas.study._prefilter import PrefilteredSampler
from edgenas.study._samplers import (
    EvolutionSampler,
    GridSampler,
    RandomFeasibleSampler,
    ReinforceSampler,
    StrategyContext,
)

__all__ = [
    "STRATEGIES",
    "Check",
    "Strategy",
    "StrategyContext",
    "make_sampler",
    "register_strategy",
]


class Check(NamedTuple):
    """What is known of an assignment before training it."""

    feasible: bool  # its predicted costs meet every constraint
    latency_ms: float  # predicted or measured; NaN where nothing needed it


Checker = Callable[[Mapping[str, Any]], Check]
SamplerFactory = Callable[[StrategyContext], optuna.samplers.BaseSampler]


@dataclass(frozen=True)
class Strategy:
    name: str
    factory: SamplerFactory
    summary: str  # when to use it, one line (shown in --help)
    prefilter: bool = False  # an Optuna sampler the registry wraps to redraw infeasible proposals


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(
    name: str, summary: str, *, prefilter: bool = False
) -> Callable[[SamplerFactory], SamplerFactory]:
    """Add a sampler factory ``(context) -> sampler`` to the registry.

    ``prefilter=True`` for samplers that do not use ``context.check`` themselves: the registry
    wraps them so that proposals predicted infeasible are redrawn.
    """

    def wrap(factory: SamplerFactory) -> SamplerFactory:
        STRATEGIES[name] = Strategy(name, factory, summary, prefilter)
        return factory

    return wrap


# edgenas's own samplers take the context alone, so each class is its own factory.
register_strategy(
    "random", "uniform draws among feasible, untried candidates; the baseline to beat"
)(RandomFeasibleSampler)
register_strategy(
    "grid", "every combination once, in a seeded order; only for small spaces (such as nb201)"
)(GridSampler)


@register_strategy(
    "tpe",
    "Optuna's multivariate tree-structured Parzen estimator; a robust general default",
    prefilter=True,
)
def _tpe(ctx: StrategyContext) -> optuna.samplers.BaseSampler:
    # multivariate TPE models the joint choices (a stage's depth with its blocks), which matters
    # in a space where most labels interact; startup trials are random.
    return optuna.samplers.TPESampler(seed=ctx.seed, multivariate=True, n_startup_trials=8)


@register_strategy(
    "nsga2",
    "Optuna's NSGA-II genetic search; for --objective pareto with hundreds of trials",
    prefilter=True,
)
def _nsga2(ctx: StrategyContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=ctx.seed, population_size=16)


@register_strategy(
    "gp",
    "Optuna's Gaussian-process Bayesian optimisation; for small budgets (tens of trials)",
    prefilter=True,
)
def _gp(ctx: StrategyContext) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=ctx.seed, n_startup_trials=10)


register_strategy(
    "evolution",
    "regularized evolution (aging population, tournaments, one-choice mutations); "
    "for hundreds of trials",
)(EvolutionSampler)
register_strategy(
    "reinforce",
    "a policy over the choices trained with REINFORCE (soft latency reward with pareto); "
    "for long searches",
)(ReinforceSampler)
register_strategy(
    "guided",
    "edgenas's own: mutations and draws ranked by a surrogate of accuracy, filtered by the "
    "cost model; fewest trainings",
)(GuidedSampler)


def make_sampler(
    name: str,
    space: SearchSpace,
    seed: int,
    multi_objective: bool,
    check: Checker | None = None,
    *,
    cheap_check: bool = False,
    rank_whole: bool = True,
) -> optuna.samplers.BaseSampler:
    """The sampler of a registered strategy, seeded; ``check`` is the cost model's verdict on
    an assignment before training (None: every assignment is taken as feasible),
    ``cheap_check`` says it predicts rather than measures, so many candidates may be checked,
    and ``rank_whole=False`` keeps a strategy from ranking a small space whole."""
    try:
        strategy = STRATEGIES[name]
    except KeyError:
        raise ConfigError(
            f"strategy {name!r} is unknown; choose from {', '.join(sorted(STRATEGIES))}"
        ) from None
    ctx = StrategyContext(
        space, seed, multi_objective, check, cheap_check=cheap_check, rank_whole=rank_whole
    )
    sampler = strategy.factory(ctx)
    if strategy.prefilter and check is not None:
        sampler = PrefilteredSampler(sampler, ctx)
    return sampler
