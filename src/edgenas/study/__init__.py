"""The study: how a search proposes, judges and records candidates. Strategies, objectives and
Pareto dominance, early stopping and fidelity schedules, warm starts, the ask/tell loop (the
runner, its executors and evaluator) and the records read back from the Optuna study.

(``edgenas.search()`` is the function that runs one; this package is what it runs.)"""

from __future__ import annotations

from edgenas.study._config import SearchConfig, SearchProgress, SearchResult
from edgenas.study._early_stop import EarlyStopping, EpochCurve
from edgenas.study._fidelity import FIDELITY_SCHEDULES, FidelitySchedule, RungEntry, ranked_ahead
from edgenas.study._frontier import hypervolume_2d, stable_for
from edgenas.study._guided import ENUMERATE
from edgenas.study._objectives import OBJECTIVES, Objective, parse_weights
from edgenas.study._options import config_from_options
from edgenas.study._records import (
    REDRAWN_ATTR,
    STUDY_BEST,
    STUDY_FRONT,
    STUDY_HV_REFERENCE,
    STUDY_ONE_SHOT,
    BestCheck,
    TrialRecord,
    pareto_front,
    rank_candidates,
    records_from_study,
    results_dict,
    scoring_from_spec,
)
from edgenas.study._runner import run_search
from edgenas.study._strategies import (
    STRATEGIES,
    Check,
    Strategy,
    StrategyContext,
    make_sampler,
    register_strategy,
)
from edgenas.study._study import FINAL_DIR, RunDir, load_result, open_run_study, open_study
from edgenas.study._training_space import TRAINING_CHOICES, TrainingSpace
from edgenas.study._trials import left_running, study_storage, trial_seed
from edgenas.study._warm import WarmStart, warm_start

__all__ = [
    "ENUMERATE",
    "FIDELITY_SCHEDULES",
    "FINAL_DIR",
    "OBJECTIVES",
    "REDRAWN_ATTR",
    "STRATEGIES",
    "STUDY_BEST",
    "STUDY_FRONT",
    "STUDY_HV_REFERENCE",
    "STUDY_ONE_SHOT",
    "TRAINING_CHOICES",
    "BestCheck",
    "Check",
    "EarlyStopping",
    "EpochCurve",
    "FidelitySchedule",
    "Objective",
    "RunDir",
    "RungEntry",
    "SearchConfig",
    "SearchProgress",
    "SearchResult",
    "Strategy",
    "StrategyContext",
    "TrainingSpace",
    "TrialRecord",
    "WarmStart",
    "config_from_options",
    "hypervolume_2d",
    "left_running",
    "load_result",
    "make_sampler",
    "open_run_study",
    "open_study",
    "pareto_front",
    "parse_weights",
    "rank_candidates",
    "ranked_ahead",
    "records_from_study",
    "register_strategy",
    "results_dict",
    "run_search",
    "scoring_from_spec",
    "stable_for",
    "study_storage",
    "trial_seed",
    "warm_start",
]
