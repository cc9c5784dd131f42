"""Search strategies: Optuna samplers built by name through one registry.

A strategy only proposes parameters; it never trains or measures anything. Because they are
Optuna samplers they get storage, resumption and constraint handling from Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import optuna

from edgenas.errors import ConfigError
from edgenas.space import SearchSpace

__all__ = ["STRATEGIES", "Check", "Strategy", "make_sampler", "register_strategy"]


class Check(NamedTuple):
    """What is known of an assignment before training it."""

    feasible: bool  # its predicted costs meet every constraint
    latency_ms: float  # predicted or measured; NaN where nothing needed it


Checker = Callable[[Mapping[str, Any]], Check]

SamplerFactory = Callable[[SearchSpace, int, bool], optuna.samplers.BaseSampler]


@dataclass(frozen=True)
class Strategy:
    name: str
    factory: SamplerFactory
    summary: str  # when to use it, one line (shown in --help)


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, summary: str) -> Callable[[SamplerFactory], SamplerFactory]:
    """Add a sampler factory ``(space, seed, multi_objective) -> sampler`` to the registry."""

    def wrap(factory: SamplerFactory) -> SamplerFactory:
        STRATEGIES[name] = Strategy(name, factory, summary)
        return factory

    return wrap


@register_strategy("random", "uniform sampling; a baseline that any strategy should beat")
def _random(space: SearchSpace, seed: int, multi: bool) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@register_strategy(
    "tpe", "tree-structured Parzen estimator; a strong default for accuracy under constraints"
)
def _tpe(space: SearchSpace, seed: int, multi: bool) -> optuna.samplers.BaseSampler:
    # multivariate TPE models the joint choices (a stage's depth with its blocks), which matters
    # in a space where most labels interact; startup trials are random.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)


@register_strategy(
    "nsga2", "genetic multi-objective search; for --objective pareto with many trials"
)
def _nsga2(space: SearchSpace, seed: int, multi: bool) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=16)


def make_sampler(
    name: str,
    space: SearchSpace,
    seed: int,
    multi_objective: bool,
    check: Checker | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler of a registered strategy, seeded."""
    try:
        strategy = STRATEGIES[name]
    except KeyError:
        raise ConfigError(
            f"strategy {name!r} is unknown; choose from {', '.join(sorted(STRATEGIES))}"
        ) from None
    return strategy.factory(space, seed, multi_objective)
