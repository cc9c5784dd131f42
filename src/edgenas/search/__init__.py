"""The search: strategies, objectives, early stopping, the ask/tell loop and its records."""

from __future__ import annotations

from edgenas.search._early_stop import EarlyStopping, EpochCurve
from edgenas.search._objectives import OBJECTIVES, Objective, parse_weights
from edgenas.search._records import TrialRecord, pareto_front, records_from_study, results_dict
from edgenas.search._runner import (
    SearchConfig,
    SearchProgress,
    SearchResult,
    load_result,
    open_study,
    run_search,
)
from edgenas.search._strategies import STRATEGIES, Strategy, make_sampler, register_strategy

__all__ = [
    "OBJECTIVES",
    "STRATEGIES",
    "EarlyStopping",
    "EpochCurve",
    "Objective",
    "SearchConfig",
    "SearchProgress",
    "SearchResult",
    "Strategy",
    "TrialRecord",
    "load_result",
    "make_sampler",
    "open_study",
    "pareto_front",
    "parse_weights",
    "records_from_study",
    "register_strategy",
    "results_dict",
    "run_search",
]
